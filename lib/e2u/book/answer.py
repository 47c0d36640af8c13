"""The book's answer, first: one sentence per claim the claims chapter judges, in the paper's own qualified words,
with the verdict `claim_tests.judge_claims` reached here and each comparison's 95% interval.

Nothing here judges anything: the verdicts and intervals are the claims chapter's, computed from the result files,
so the answer changes when they do. The paper's words are its abstract's where the abstract states the claim; the
rephrasing claim is not in the abstract, and its words are those of two third-party, AI-written summaries of the
paper's experiments (the paper's body was not available to us; the protocol chapter says what is known and from
where).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from e2u.book.claim_tests import CLAIMS, ClaimVerdict
from e2u.book.claims import DOES_NOT_HOLD, HOLDS, PARTLY, VERDICTS, Comparison
from e2u.errors import E2UError


@dataclass(frozen=True)
class PaperClaim:
    """A claim as the paper words it, and where those words are from."""

    number: int  # the claim's number in `claim_tests.CLAIMS`
    words: str
    source: str


ABSTRACT, REVIEWS = "the paper's abstract", "the paper's experiments, as two third-party AI-written summaries report them"
PAPER_CLAIMS = (
    PaperClaim(1, "certain editing methods, notably WISE and AlphaEdit, are effective unlearning baselines, "
                  "especially for pretrained knowledge", ABSTRACT),
    PaperClaim(2, "certain editing methods, notably WISE and AlphaEdit, excel in generating human-aligned refusal "
                  "answers", ABSTRACT),
    PaperClaim(3, "WISE and AlphaEdit are more robust to rephrased questions, while GA, KL, ROME and MEMIT can break "
                  "the model", REVIEWS),
    PaperClaim(4, "query merging enables ROME and MEMIT to perform well in unlearning longer sample sequences",
               ABSTRACT),
)
if [c.number for c in PAPER_CLAIMS] != [c.number for c in CLAIMS]:  # one wording per judged claim, same order
    raise E2UError(f"answer: PAPER_CLAIMS numbers {[c.number for c in PAPER_CLAIMS]} are not the claims chapter's "
                   f"{[c.number for c in CLAIMS]}")
WORDS = {c.number: c for c in PAPER_CLAIMS}


def interval_text(comparison: Comparison) -> str:
    """One comparison as the answer shows it: its name, difference and 95% interval, and what that says."""
    i = comparison.interval
    if i is None:
        return f"{comparison.name}: not measured" + (f" ({comparison.note})" if comparison.note else "")
    drawn = f"{len(i.seeds)} seeds" if len(i.seeds) > 1 else i.resampled  # one seed: its questions only
    return f"{comparison.name}: {i.point:+.3f} [{i.low:+.3f}, {i.high:+.3f}], {comparison.state} ({drawn})"


def claim_sentence(verdict: ClaimVerdict) -> str:
    """The paper's words for the claim and the verdict here."""
    paper = WORDS[verdict.claim.number]
    return (f"**Claim {paper.number}.** The paper ({paper.source}): “{paper.words}”. In this study: **{verdict.verdict}**"
            + ("" if verdict.comparisons else " (no cell of this study tests it)") + ".")


def answer_markdown(verdicts: Sequence[ClaimVerdict]) -> str:
    """The answer block: a sentence per claim, in the claims chapter's order, each followed by its
    comparisons' differences (positive favours the claim) and 95% intervals."""
    numbers = [v.claim.number for v in verdicts]
    if sorted(numbers) != sorted(WORDS):
        raise E2UError(f"answer: expected a verdict for each of claims {sorted(WORDS)}, got {numbers}")
    lines = []
    for v in verdicts:
        lines.append(f"- {claim_sentence(v)}")
        lines += [f"  - {interval_text(c)}" for c in v.comparisons]
    return "\n".join(lines)


def verdict_counts(verdicts: Sequence[ClaimVerdict]) -> str:
    """How many claims got each verdict, in `claims.VERDICTS`' order: "1 holds, 2 do not hold, 1 not measured"."""
    plural = {HOLDS: "hold", PARTLY: "hold partly", DOES_NOT_HOLD: "do not hold"}
    counts = [(verdict, sum(v.verdict == verdict for v in verdicts)) for verdict in VERDICTS]
    return ", ".join(f"{n} {plural.get(verdict, verdict) if n > 1 else verdict}" for verdict, n in counts if n)
