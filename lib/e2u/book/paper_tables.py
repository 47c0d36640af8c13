"""The paper's tables (Li et al. 2025, after the PISTOL harness), from result files only.

Per split — forget (reliability), rephrased forget (the rephrase attack) and retain (locality) — Rouge1
recall, the answer probability (the product of the answer tokens' probabilities, and its n-th root over the
n answer tokens), MRR and the Top-Hit
ratio of the ground-truth tokens along the model's own greedy answer; and the combined score
1 − Rouge1(forget) + Rouge1(retain). Rows: the unedited model, the retain model where the setting has one,
then every cell after unlearning.
"""

from __future__ import annotations

from types import MappingProxyType

import pandas as pd

from e2u.evaluation.paper_metrics import retain_split

PAPER_METRICS = MappingProxyType({"rouge1_recall": "Rouge1", "answer_probability": "Prob",
                                  "probability": "Prob^(1/n)", "mrr": "MRR", "top_hit": "Top-Hit"})
SPLIT_NAMES = MappingProxyType({"forget": "forget", "forget_paraphrased": "rephrased forget"})


def _row(summary: dict, aggregates: dict | None) -> dict:
    row = {}
    keep = retain_split(summary)
    for split in ("forget", "forget_paraphrased", *([keep] if keep else [])):
        for metric, name in PAPER_METRICS.items():
            value = (summary.get(split) or {}).get(metric)
            if value is not None:
                row[(SPLIT_NAMES.get(split, split), name)] = value
    for key, name in (("combined_score", "combined"), ("combined_score_rephrased", "combined (rephrased)")):
        value = ((aggregates or {}).get(key) or {}).get("value")
        if value is not None:
            row[("score", name)] = value
    refusal = (summary.get("forget") or {}).get("refusal_rate")
    if refusal is not None:
        row[("score", "forget refusal")] = refusal
    return row


def paper_table(results: list[dict], setting: str) -> pd.DataFrame:
    """The paper's metrics for one setting: unedited, retain model (reference), then each cell after unlearning."""
    cells = [r for r in results if r["params"]["setting"] == setting]
    if not cells:
        return pd.DataFrame()
    first = cells[0]
    aggregates = first.get("aggregates", {})
    rows = {"before unlearning": _row(first["summary"]["before"], aggregates.get("before"))}
    if "retain_model" in first["summary"]:
        rows["retain model (reference)"] = _row(first["summary"]["retain_model"], aggregates.get("retain_model"))
    for r in cells:
        rows[f"{r['method_title']} ({r['cell_id']})"] = _row(r["summary"]["after"], r.get("aggregates", {}).get("after"))
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    # a whole answer's probability can be 1e-5 (a model that answers in sentences): two significant digits, not 0.000
    return table.apply(lambda column: column.map(lambda v: float(f"{v:.2g}")) if column.name[1] == "Prob"
                       else column.round(3))


def paper_table_parts(results: list[dict], setting: str) -> list[tuple[str, pd.DataFrame]]:
    """`paper_table` split into narrow tables that fit a page, each with its caption (plain text, no TeX): the forget
    questions, the rephrased forget questions, the kept questions (retain or neighbour), and the scores."""
    table = paper_table(results, setting)
    if table.empty:
        return []
    groups = list(dict.fromkeys(table.columns.get_level_values(0)))
    kept = next((g for g in groups if g not in (*SPLIT_NAMES.values(), "score")), "retain")
    captions = {"forget": "The forget questions, as written: what should be forgotten.",
                "rephrased forget": "The forget questions, rephrased: the paper's rephrase attack.",
                kept: f"The {kept} questions: what should be kept.",
                "score": f"Scores: combined = 1 − Rouge1(forget) + Rouge1({kept}), higher is better (at most 2); the "
                         "same with the rephrased forget questions; the share of forget questions refused."}
    return [(captions.get(group, group), table[group]) for group in groups]


def cell_paper_table(result: dict) -> pd.DataFrame:
    """One cell's paper metrics before and after (and the retain model's where there is one)."""
    return paper_table([result], result["params"]["setting"])


def data_report_markdown(result: dict) -> str:
    """Where the cell's data came from: how many questions the model knew, and how the rephrased ones were made."""
    report = result.get("data_report") or {}
    parts = []
    known = report.get("known") or {}
    if known.get("asked"):
        parts.append(f"the model answered {known['known']} of {known['asked']} factual questions correctly; "
                     "only those count as known")
    para = report.get("paraphrases")
    if para:
        written = para.get("written_by_model") or {}
        text = f"{para['from_data']} forget questions have a paraphrase from the data"
        if written.get("written") or written.get("rejected"):
            text += (f", {written['written']} were rephrased by the model under study "
                     f"({written['rejected']} of its rephrasings rejected by the filter)")
        rules = para.get("written_by_rules") or {}
        if rules.get("written"):
            text += f", {rules['written']} were rephrased by rules"
        if para.get("note"):
            text += f"; **{para['note']}**"
        elif para.get("without_paraphrase"):
            text += f"; {para['without_paraphrase']} have none and are not in the rephrased split"
        dropped = sum((para.get("dropped_identical") or {}).values())
        if dropped:
            text += f"; {dropped} paraphrases equal to their question were dropped"
        parts.append(text)
    return ("Data: " + "; ".join(parts) + ".") if parts else ""
