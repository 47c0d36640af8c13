"""The paper's four claims, each tested by comparisons computed from result files under a reading (`readings`),
each comparison with its bootstrap interval (`bootstrap`), each claim with its verdict (`claims`). Ours: the paper
states the claims in words; which numbers test each one, and the margin a difference must clear, are our reading,
stated in `CLAIMS` and printed in the book.

Cells enter by recipe kind (`claim_cells`): claims 1 and 3 and claim 2's first comparison read plain cells, claim
2's second the self-written targets, claim 4 merged queries against plain ones; cells run in chunks enter none (the
sequence figure shows them). A comparison uses the seeds both sides have (`claim_cells.shared_seeds`); with one
seed its interval is over that seed's questions only.

*Best of the baselines* (claim 1): the baseline with the highest mean score over its own seeds in the setting is
chosen once, on the point estimates, and the editor is compared with it, the bootstrap resampling the difference
against that one baseline. Taking the best inside each replicate would let the baselines' noise pick their best
draw every time and bias the difference toward them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from e2u.book import claim_cells
from e2u.book.bootstrap import N_RESAMPLES, Block, paired_interval
from e2u.book.claim_cells import ALIGNED, MERGED, PLAIN, SELF_WRITTEN, Part
from e2u.book.claims import NOT_MEASURED, Comparison, check_margin, verdict
from e2u.book.readings import CHOSEN, EDITORS, PAPER_BASELINES, Reading

__all__ = ["CLAIMS", "EDITORS", "PAPER_BASELINES", "Claim", "ClaimVerdict", "best_baseline", "claim_comparisons",
           "editor_comparisons", "judge_claims", "paired_settings"]  # EDITORS, PAPER_BASELINES: `readings`' names
BOOTSTRAP_SEED = 0  # each comparison's generator: numpy.random.default_rng([BOOTSTRAP_SEED, crc32(its name)])
ROBUST, FRAGILE = ("alphaedit", "wise"), ("gradient_ascent", "kl", "rome", "memit")
MEANINGFUL_DROP = 0.25  # claim 3's table: the forgetting kept under rephrasing is a ratio to the forget Rouge1
#                         drop, shown only where the drop is at least this (a quarter of Rouge1's range)


@dataclass(frozen=True)
class Claim:
    number: int
    statement: str  # the paper's claim, in our words
    test: str  # the comparisons that test it
    margin: float  # a comparison supports the claim when its interval's lower bound is above this (claims.state)


CLAIMS = (
    Claim(1, "WISE and AlphaEdit are strong unlearning baselines, especially on pretrained knowledge.",
          "per setting, for WISE and for AlphaEdit: its combined score minus that of the best of the paper's four "
          "baselines (GA, GD, KL, DPO; chosen once per setting on the mean score); and that gap on pretrained "
          "knowledge minus the gap on finetuned knowledge", 0.05),
    Claim(2, "Editing gives human-aligned refusals.",
          "per setting: the human-aligned rate on forget questions, the editors' mean (ROME, MEMIT, AlphaEdit, "
          "GRACE, WISE) minus the paper's baselines' mean (GA, GD, KL, DPO); once with the template targets, once "
          "with the targets the model wrote (self-improvement, where the study runs it)", 0.1),
    Claim(3, "AlphaEdit and WISE hold up under rephrasing, while GA, KL, ROME and MEMIT can break the model.",
          "per setting, AlphaEdit and WISE's mean minus GA, KL, ROME and MEMIT's mean (methods that gave identical "
          "answers counted once): 1 - Rouge1 on the rephrased forget questions after unlearning (the paper's rephrase "
          "attack), and Rouge1 on the kept questions after unlearning", 0.05),
    Claim(4, "Query merging rescues ROME and MEMIT on long forget sequences.",
          "per setting, for ROME and for MEMIT: the combined score with merged queries minus one edit per query",
          0.05),
)


def combined(reading: Reading, kept: str) -> list[Part]:
    """1 - Rouge(forget) + Rouge(kept): the paper's combined score (its rephrased form under that reading)."""
    return [Part(reading.forget, reading.rouge, complement=True), Part(kept, reading.rouge)]


def kept_rouge(reading: Reading, kept: str) -> list[Part]:
    """Rouge on the kept questions after unlearning: whether the model still answers what it should."""
    return [Part(kept, reading.rouge)]


def rephrased_forgetting(reading: Reading, kept: str) -> list[Part]:
    """1 - Rouge on the rephrased forget questions after unlearning: what the rephrase attack leaves forgotten."""
    return [Part("forget_paraphrased", reading.rouge, complement=True)]


def aligned(reading: Reading, kept: str) -> list[Part]:
    """The human-aligned rate on the forget questions (`human_aligned`)."""
    return [Part("forget", ALIGNED)]


Measure = Callable[[Reading, str], list[Part]]


def _missing(side: dict, part: Part) -> str:
    """Why a side cannot be measured on `part` (a cell without the split's per-item values or without
    human-aligned checks), or ""."""
    for by_method in side.values():
        for method_cells in by_method.values():
            for cell in method_cells:
                name = cell.get("cell_id", cell["params"]["method"])
                if part.split not in cell.get("after", {}):
                    return f"{name} has no '{part.split}' questions"
                if part.metric == ALIGNED and not (cell.get("human_aligned") or {}).get("per_item"):
                    return f"{name} has no human-aligned checks"
    return ""


def _kept(side: dict, reading: Reading) -> str:
    """The kept questions' split of a side's cells (`claim_cells.kept_split`)."""
    first = next(iter(next(iter(side.values())).values()))[0]
    return claim_cells.kept_split(first.get("after", {}), reading) or "retain"


def _seed_blocks(claimed: dict, other: dict, measure: Measure, reading: Reading,
                 where: str) -> tuple[dict[int, list], str]:
    """({seed: blocks} over the seeds both sides have, ""), or ({}, why not)."""
    seeds = claim_cells.shared_seeds(claimed, other)
    if not seeds:
        return {}, f"no seed has every method of both sides (seeds {sorted(claimed)} and {sorted(other)})"
    parts = measure(reading, _kept(claimed, reading))
    why = next(filter(None, (_missing(side, p) for side in (claimed, other) for p in parts)), "")
    if why:
        return {}, why
    return {s: claim_cells.blocks(claimed[s], other[s], parts, f"{where} (seed {s})") for s in seeds}, ""


def _compare(name: str, claimed: dict, other: dict, measure: Measure, reading: Reading, margin: float,
             n_resamples: int, note: str = "") -> Comparison:
    """The comparison's interval over the seeds both sides have, or not measured with the reason."""
    per_seed, why = _seed_blocks(claimed, other, measure, reading, name)
    return _interval(name, per_seed, margin, n_resamples, "; ".join(filter(None, [note, why])))


def _interval(name: str, per_seed: dict, margin: float, n_resamples: int, note: str) -> Comparison:
    rng = np.random.default_rng([BOOTSTRAP_SEED, zlib.crc32(name.encode())])
    return Comparison(name, paired_interval(per_seed, rng, n_resamples) if per_seed else None, margin, note)


def best_baseline(results, setting: str, reading: Reading, measure: Measure = combined) -> str | None:
    """The baseline of the reading with the highest mean `measure` over its own seeds in `setting` (plain cells),
    chosen once on the point estimates; None where none ran."""
    means = {}
    for method in reading.baselines:
        side = claim_cells.cells(results, setting, [method], PLAIN, reading)
        parts = measure(reading, _kept(side, reading)) if side else []
        if side and not any(_missing(side, p) for p in parts):
            means[method] = np.mean([claim_cells.statistic(side[s], parts, setting) for s in sorted(side)])
    return max(means, key=means.get) if means else None


def editor_comparisons(results, settings: Sequence[str], editors: Sequence[str], reading: Reading = CHOSEN,
                       margin: float = 0.05, n_resamples: int = N_RESAMPLES) -> dict[tuple[str, str], Comparison]:
    """{(setting, editor): its combined score minus the best baseline's (`best_baseline`), on the seeds both
    have}."""
    out = {}
    for setting in settings:
        best = best_baseline(results, setting, reading)
        theirs = claim_cells.cells(results, setting, [best], PLAIN, reading) if best else {}
        for editor in editors:
            mine = claim_cells.cells(results, setting, [editor], PLAIN, reading)
            if mine and theirs:
                out[setting, editor] = _compare(f"{setting}: {editor} - best baseline ({best}), combined", mine,
                                                theirs, combined, reading, margin, n_resamples,
                                                f"best of {len(reading.baselines)} baselines: {best}")
    return out


def _gap_differences(results, settings, reading, margin, n_resamples) -> list[Comparison]:
    """For WISE and AlphaEdit: (editor - best baseline) on pretrained knowledge minus the same on finetuned,
    per seed (the finetuned blocks enter with their sides swapped)."""
    out = []
    for pretrained, finetuned in paired_settings(settings):
        best = {s: best_baseline(results, s, reading) for s in (pretrained, finetuned)}
        for editor in ("wise", "alphaedit"):
            sides = {s: (claim_cells.cells(results, s, [editor], PLAIN, reading),
                         claim_cells.cells(results, s, [best[s]], PLAIN, reading) if best[s] else {})
                     for s in (pretrained, finetuned)}
            if not all(mine and theirs for mine, theirs in sides.values()):
                continue
            name = f"{editor}: gap {pretrained} - gap {finetuned}"
            halves = [_seed_blocks(*sides[s], combined, reading, f"{name}, {s}") for s in (pretrained, finetuned)]
            seeds = sorted(set(halves[0][0]) & set(halves[1][0]))
            per_seed = {s: halves[0][0][s] + [_flip(b) for b in halves[1][0][s]] for s in seeds}
            why = halves[0][1] or halves[1][1] or ("" if seeds else "no seed in both settings")
            out.append(_interval(name, per_seed, margin, n_resamples, "; ".join(filter(None, [
                f"best baselines: {best[pretrained]} ({pretrained}), {best[finetuned]} ({finetuned})", why]))))
    return out


def _flip(block: Block) -> Block:
    """The block subtracted instead of added: its sides swapped."""
    return Block(f"minus {block.name}", block.other, block.claimed)


def _groups(results, setting, kind, reading, claimed_methods, other_methods, measure, name, margin, n_resamples,
            note="") -> Comparison | None:
    """A group of methods (cells of `kind`) against another (plain cells), each group's methods with identical
    answers counted once (named in the note); None where either group has no cell in `setting`."""
    claimed = claim_cells.cells(results, setting, claimed_methods, kind, reading)
    other = claim_cells.cells(results, setting, other_methods, PLAIN, reading)
    if not claimed or not other:
        return None
    same = sorted({" = ".join(g) for side in (claimed, other) for by_method in side.values()
                   for g in claim_cells.coinciding(by_method)})
    note = "; ".join(filter(None, [note] + [f"identical answers, counted once: {g}" for g in same]))
    return _compare(name, claimed, other, measure, reading, margin, n_resamples, note)


def _self_written(results, setting, reading, margin, n_resamples) -> Comparison | None:
    """Claim 2's second comparison; not measured where every self-written target fell back to the template, and
    a cell whose every target fell back left out of it (it is a second template run)."""
    name = f"{setting}: editors with self-written targets - baselines (human-aligned rate)"
    own = [r for by_method in claim_cells.cells(results, setting, EDITORS, SELF_WRITTEN, reading).values()
           for method_cells in by_method.values() for r in method_cells]
    counts = [(r, claim_cells.fallbacks(r)) for r in own]
    recorded = [(r, c) for r, c in counts if c]
    fell, total = sum(c[0] for _, c in recorded), sum(c[1] for _, c in recorded)
    if recorded and fell == total:
        return Comparison(name, None, margin, "the self-improvement recipe produced no self-written targets here: "
                          f"{fell} of {total} fell back to the template")
    empty = [r for r, c in recorded if c[0] == c[1]]
    note = "; ".join(f"{r.get('cell_id', r['params']['method'])}: {c[0]} of {c[1]} targets fell back to the "
                     "template" + (" (left out)" if c[0] == c[1] else "") for r, c in recorded if c[0])
    kept = [r for r in results if not any(r is e for e in empty)]
    return _groups(kept, setting, SELF_WRITTEN, reading, EDITORS, reading.baselines, aligned, name, margin,
                   n_resamples, note)


def paired_settings(settings: Sequence[str]) -> list[tuple[str, str]]:
    """(pretrained…, finetuned…) setting names that differ only in that word: "pretrained" and "finetuned",
    "pretrained-llama2" and "finetuned-llama2"."""
    return [(name, "finetuned" + name[len("pretrained"):]) for name in settings
            if name.startswith("pretrained") and "finetuned" + name[len("pretrained"):] in settings]


def claim_comparisons(claim: Claim, results: Sequence[dict], settings: Sequence[str], reading: Reading = CHOSEN,
                      n_resamples: int = N_RESAMPLES) -> list[Comparison]:
    """The comparisons that test `claim` (its `test`), each with its interval, or not measured and why; a
    comparison with no cell on either side is left out."""
    margin = check_margin(claim.margin if reading.margin is None else reading.margin, f"claim {claim.number}")
    out: list[Comparison | None] = []
    if claim.number == 1:
        out += editor_comparisons(results, settings, ("wise", "alphaedit"), reading, margin, n_resamples).values()
        out += _gap_differences(results, settings, reading, margin, n_resamples)
    elif claim.number == 2:
        for setting in settings:
            out.append(_groups(results, setting, PLAIN, reading, EDITORS, reading.baselines, aligned,
                               f"{setting}: editors - baselines (human-aligned rate)", margin, n_resamples))
            out.append(_self_written(results, setting, reading, margin, n_resamples))
    elif claim.number == 3:
        for setting in settings:
            for measure, what in ((rephrased_forgetting, f"1 - {reading.rouge_name} on rephrased forget questions"),
                                  (kept_rouge, f"{reading.rouge_name} on kept questions")):
                out.append(_groups(results, setting, PLAIN, reading, ROBUST, FRAGILE, measure,
                                   f"{setting}: AlphaEdit, WISE - GA, KL, ROME, MEMIT ({what})", margin, n_resamples))
    elif claim.number == 4:
        for setting in settings:
            for method in ("rome", "memit"):
                out.append(_groups(results, setting, MERGED, reading, [method], [method], combined,
                                   f"{setting}: {method} merged - one per query (combined)", margin, n_resamples))
    return [c for c in out if c is not None]


@dataclass(frozen=True)
class ClaimVerdict:
    claim: Claim
    verdict: str  # claims.HOLDS / PARTLY / DOES_NOT_HOLD / INCONCLUSIVE / NOT_MEASURED
    comparisons: tuple[Comparison, ...]
    reading: Reading = CHOSEN


def judge_claims(results: Sequence[dict], settings: Sequence[str], reading: Reading = CHOSEN,
                 n_resamples: int = N_RESAMPLES) -> list[ClaimVerdict]:
    """Every claim's verdict from the results under `reading` (`claims.verdict`); a claim with no comparison
    measured is "not measured"."""
    verdicts = []
    for claim in CLAIMS:
        comparisons = tuple(claim_comparisons(claim, results, settings, reading, n_resamples))
        verdicts.append(ClaimVerdict(claim, verdict(comparisons) if comparisons else NOT_MEASURED, comparisons,
                                     reading))
    return verdicts
