"""Rephrase robustness: how much of a method's forgetting survives when the forget questions are rephrased
(the paper's rephrase attack; the score is ours).

Every forget metric m here (Rouge1, probability, MRR, Top-Hit) is larger when the model still knows the
answer. With m0 the unedited model's value and m1 the unlearned one's, on the original questions (f) and
their paraphrases (p):

    gap  = m1(p) - m1(f)                              > 0: rephrasing brings the answer back
    held = (m0(p) - m1(p)) / (m0(f) - m1(f))          the share of the forgetting that the paraphrases show

held = 1 is fully robust, 0 is forgetting that only the exact wording sees. It is undefined (None, with
the reason) when the method forgot less than `min_forgetting` on the original questions: there is
nothing to hold.
"""

from __future__ import annotations

from typing import Mapping

METRICS = ("rouge1_recall", "probability", "mrr", "top_hit")


def robustness(before: Mapping[str, Mapping], after: Mapping[str, Mapping], split: str = "forget",
               min_forgetting: float = 0.05) -> dict:
    """Per metric {gap, held, reason}; `before`/`after` are a result's `summary` entries (split -> metrics)."""
    rephrased = f"{split}_paraphrased"
    if rephrased not in after or split not in after:
        return {"reason": f"no '{rephrased}' split: none of the {split} questions has a paraphrase (the result's "
                          "data_report says why)"}
    out = {}
    for metric in METRICS:
        values = [source.get(part, {}).get(metric) for source in (before, after) for part in (split, rephrased)]
        if any(v is None for v in values):
            out[metric] = {"gap": None, "held": None, "reason": f"{metric} not measured"}
            continue
        m0_f, m0_p, m1_f, m1_p = values
        forgot = m0_f - m1_f
        entry = {"gap": round(m1_p - m1_f, 4), "held": None, "reason": ""}
        if forgot < min_forgetting:
            entry["reason"] = f"forgot {forgot:.3f} < {min_forgetting} on the original questions"
        else:
            entry["held"] = round((m0_p - m1_p) / forgot, 4)
        out[metric] = entry
    return out
