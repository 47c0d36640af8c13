"""External validity: do the pretrained-knowledge findings on e2u's embedded factual set hold on TOFU's own?

The default study unlearns pretrained knowledge from a factual set written for this project in the form of
TOFU's real-author and world-fact questions; the paper unlearns TOFU's own 217 (reference/paper-protocol.md).
`studies/external-factual.yaml` reruns the same cells (the pretrained setting, the paper's nine methods, the
same labels, seeds and draw sizes) on TOFU's file, where a user has it. `external_validity` sets the two
result folders side by side, from the result files only:

* `methods`: per method, the combined score 1 - Rouge1(forget) + Rouge1(retain) and retain Rouge1 after
  unlearning (means over seeds, with the seed counts) on the embedded set and on TOFU's file;
* `claims`: the claims' comparisons that the pretrained setting has (`claim_tests.claim_comparisons` under the
  chosen reading: claim 1, WISE and AlphaEdit against the best paper baseline; claim 2, human-aligned refusals;
  claim 3, rephrased forgetting and kept Rouge1), each comparison's point estimate, 95% interval and state
  (supports / contradicts / straddles / not measured: `claims.state`), on each data set; a comparison is matched
  across the two by its name with the best baseline's name left out (each data set picks its own, named in
  the note);
* `sentence`: where the external numbers come from (questions known of those asked, how the rephrased
  questions were made), or, with no external results, "not run here: ..." and the command that runs them.

Only plain cells enter `methods` (`claim_cells.recipe_kind`: no query merging, self-written targets or chunks),
so a method is its plain cell, as in the paper's main table; the claims' own filters apply in `claims`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from e2u.book.bootstrap import N_RESAMPLES
from e2u.book.claim_cells import PLAIN, recipe_kind
from e2u.book.claim_tests import CLAIMS, claim_comparisons
from e2u.book.claims import shown_state
from e2u.book.readings import EDITORS, PAPER_BASELINES
from e2u.errors import E2UError
from e2u.evaluation.paper_metrics import retain_split
from e2u.methods import get_method
from e2u.study.result_files import read_results

STUDY_FILE = "studies/external-factual.yaml"
SETTING = "pretrained"
EMBEDDED, EXTERNAL = "embedded set", "TOFU's file"
RUN_COMMAND = (f"put PISTOL's factual_data.json (or a directory of TOFU's real_authors_perturbed / "
               f"world_facts_perturbed files) at data/factual_data.json, or set hub: true in {STUDY_FILE}, then "
               f"`e2u study run {STUDY_FILE}`")
_BEST = re.compile(r"best baseline \([^)]*\)")  # "best baseline (kl)": each data set picks its own
NOT_RUN = ("not run here: no copy of TOFU's factual file on this machine (no results of {study} in {where}); "
           "to run it: " + RUN_COMMAND)


@dataclass(frozen=True)
class ExternalValidity:
    methods: pd.DataFrame  # per method: combined score and retain Rouge1 on both data sets
    claims: pd.DataFrame  # per claim comparison: estimate, 95% interval, state and note, on both data sets
    sentence: str  # where the external numbers come from, or why there are none and how to get them
    ran: bool  # whether external results were found


def _plain(result: dict, setting: str) -> bool:
    return result["params"]["setting"] == setting and recipe_kind(result["params"]) == PLAIN


def _combined(result: dict) -> float | None:
    """1 - Rouge1(forget) + Rouge1(retain) after unlearning, as the cell recorded it."""
    return (result.get("aggregates", {}).get("after", {}).get("combined_score") or {}).get("value")


def _retain(result: dict) -> float | None:
    after = result["summary"]["after"]
    split = retain_split(after)
    return after[split].get("rouge1_recall") if split else None


def _cells(directory: str | Path | None, setting: str) -> list[dict]:
    if directory is None or not Path(directory).is_dir():
        return []
    return [r for r in read_results(directory) if r["params"]["setting"] == setting]


def _title(method: str) -> str:
    try:
        return get_method(method).title
    except E2UError:  # a result of a method this version no longer knows: its registry name
        return method


def _per_method(results: Sequence[dict], setting: str, label: str) -> pd.DataFrame:
    rows = []
    for r in (r for r in results if _plain(r, setting)):
        rows.append({"method": r["params"]["method"], "seed": r["params"]["seed"], "combined": _combined(r),
                     "retain": _retain(r)})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).groupby("method").agg(combined=("combined", "mean"), retain=("retain", "mean"),
                                                     seeds=("seed", "nunique"))
    return frame.rename(columns={"combined": f"combined ({label})", "retain": f"retain Rouge1 ({label})",
                                 "seeds": f"seeds ({label})"})


def methods_table(embedded: Sequence[dict], external: Sequence[dict], setting: str = SETTING) -> pd.DataFrame:
    """Per method (the paper's nine first, editors then baselines): combined score and retain Rouge1 after
    unlearning, means over seeds, on the embedded set and on TOFU's file, with the difference of the combined
    scores (TOFU's file minus embedded) and the seed counts."""
    parts = [_per_method(embedded, setting, EMBEDDED), _per_method(external, setting, EXTERNAL)]
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, axis=1)
    for label in (EMBEDDED, EXTERNAL):
        for column in (f"combined ({label})", f"retain Rouge1 ({label})", f"seeds ({label})"):
            if column not in table:
                table[column] = float("nan")
    table["combined: TOFU's file - embedded"] = table[f"combined ({EXTERNAL})"] - table[f"combined ({EMBEDDED})"]
    order = [m for m in (*EDITORS, *PAPER_BASELINES) if m in table.index] + sorted(
        m for m in table.index if m not in EDITORS + PAPER_BASELINES)
    columns = [f"combined ({EMBEDDED})", f"combined ({EXTERNAL})", "combined: TOFU's file - embedded",
               f"retain Rouge1 ({EMBEDDED})", f"retain Rouge1 ({EXTERNAL})", f"seeds ({EMBEDDED})",
               f"seeds ({EXTERNAL})"]
    table = table.loc[order, columns]
    for label in (EMBEDDED, EXTERNAL):
        table[f"seeds ({label})"] = table[f"seeds ({label})"].astype("Int64")  # a count, blank where none ran
    table.index = [_title(m) for m in order]
    table.index.name = "method"
    return table.round(3)


def claims_table(embedded: Sequence[dict], external: Sequence[dict], setting: str = SETTING,
                 n_resamples: int = N_RESAMPLES) -> pd.DataFrame:
    """Per comparison of the claims that the setting has (under the chosen reading): on each data set the point
    estimate (larger favours the claim), the 95% interval and the state against the claim's margin, with the
    note (the best baseline taken, why one is not measured)."""
    rows: dict[tuple[int, str], dict] = {}
    for label, results in ((EMBEDDED, embedded), (EXTERNAL, external)):
        for claim in CLAIMS:
            for comparison in claim_comparisons(claim, results, [setting], n_resamples=n_resamples):
                row = rows.setdefault((claim.number, _BEST.sub("best baseline", comparison.name)), {})
                interval = comparison.interval
                row[f"estimate ({label})"] = round(interval.point, 3) if interval else None
                row[f"95% interval ({label})"] = f"[{interval.low:.3f}, {interval.high:.3f}]" if interval else None
                row[f"state ({label})"] = shown_state(comparison.state)
                row[f"note ({label})"] = comparison.note
    if not rows:
        return pd.DataFrame()
    columns = [f"{what} ({label})" for label in (EMBEDDED, EXTERNAL)
               for what in ("estimate", "95% interval", "state", "note")]
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=columns)
    table.index = pd.MultiIndex.from_tuples(list(rows), names=["claim", "comparison"])
    return table.sort_index(level="claim", sort_remaining=False)


def _shown(folder: str | Path | None) -> str:
    """A result folder as a reader can use it: its last two parts (`results/external-factual`), never the build
    machine's absolute path, which the published page must not carry."""
    if folder is None:
        return "no folder given"
    return "/".join(Path(folder).parts[-2:])


def data_sentence(external: Sequence[dict]) -> str:
    """Where the external numbers come from: the questions the model knew of those asked, the source, and how
    the rephrased forget questions were made (summed over cells), with any cell's note about missing ones."""
    reports = [r.get("data_report") or {} for r in external]
    known = next((rep["known"] for rep in reports if (rep.get("known") or {}).get("asked")), None)
    text = f"{len(external)} cells on TOFU's factual file"
    if known:
        source = known.get("source", "a local file")
        source = Path(source).name if Path(source).is_absolute() else source  # a hub name as is; a file by its name
        text += (f" ({source}: the model answers {known['known']} of "
                 f"{known['asked']} questions correctly; only those are unlearned or kept)")
    paraphrases = [rep["paraphrases"] for rep in reports if rep.get("paraphrases")]
    if paraphrases:
        sources: Counter = Counter()
        for p in paraphrases:
            sources.update(p.get("by_source") or {"data": p.get("from_data", 0),
                                                   "model": (p.get("written_by_model") or {}).get("written", 0)})
        asked = sum(p.get("forget", 0) for p in paraphrases)
        left = sum(p.get("without_paraphrase", 0) for p in paraphrases)
        text += (f"; rephrased forget questions: {sources['data']} from the data, {sources['model']} written by the "
                 f"model, {sources['rules']} by rules, {left} of {asked} without one")
        notes = sorted({p["note"] for p in paraphrases if p.get("note")})
        if notes:
            text += " (" + "; ".join(notes) + ")"
    return text + "."


def external_validity(external: str | Path | None = "results/external-factual",
                      embedded: str | Path | None = "results/default", setting: str = SETTING,
                      n_resamples: int = N_RESAMPLES) -> ExternalValidity:
    """The embedded set's and TOFU's file's numbers side by side, from the result folders of the default study
    (`embedded`) and of `studies/external-factual.yaml` (`external`; None or a folder without its cells: not
    run, and the sentence says how to run it). Either table is empty where its side has no cells; `n_resamples`:
    the claims' bootstrap replicates (`bootstrap.paired_interval`)."""
    outside = _cells(external, setting)
    inside = _cells(embedded, setting)
    if not outside:
        return ExternalValidity(methods_table(inside, [], setting), claims_table(inside, [], setting, n_resamples),
                                NOT_RUN.format(study=STUDY_FILE, where=_shown(external)), False)
    sentence = data_sentence(outside)
    if not inside:
        sentence += (f" The embedded twin has no {setting} cells in {_shown(embedded)}: run "
                     "`e2u study run studies/default.yaml`.")
    return ExternalValidity(methods_table(inside, outside, setting),
                            claims_table(inside, outside, setting, n_resamples), sentence, True)
