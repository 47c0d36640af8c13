"""The claim verdicts on fixed inputs: each of holds / holds partly / does not hold, and the rule's edges."""

import pytest

from e2u.book.claims import DOES_NOT_HOLD, HOLDS, PARTLY, compare, judge
from e2u.errors import E2UError


def test_each_verdict_on_fixed_inputs():
    assert judge({"pretrained": [0.3, 0.2, 0.4], "finetuned": [0.1, 0.15, 0.2]}, margin=0.05)[0] == HOLDS
    assert judge({"pretrained": [0.3, 0.2, 0.4], "finetuned": [0.1, -0.2, 0.2]}, margin=0.05)[0] == PARTLY
    assert judge({"pretrained": [-0.3, 0.2, -0.1], "finetuned": [0.01, 0.02, 0.03]}, margin=0.05)[0] == DOES_NOT_HOLD


def test_a_comparison_needs_its_mean_above_the_margin_and_no_seed_against_it():
    assert not compare("x", [0.5, 0.5, -0.01], 0.05).supports  # one seed against
    assert not compare("x", [0.04, 0.05, 0.06], 0.05).supports  # mean not above the margin
    c = compare("x", [0.1, 0.2, 0.3], 0.05)
    assert c.supports and c.mean == pytest.approx(0.2) and c.spread == pytest.approx(0.1)
    assert compare("one seed", [0.2], 0.05).spread == 0.0


def test_bad_inputs_are_named():
    with pytest.raises(E2UError, match="claim comparison 'finetuned'"):
        judge({"finetuned": []}, 0.05)
    with pytest.raises(E2UError, match="claim comparison 'pretrained'"):
        judge({"pretrained": [float("nan")]}, 0.05)
    with pytest.raises(E2UError, match="at least one comparison"):
        judge({}, 0.05)


def fake_result(setting, method, seed, combined=1.0, retain=0.9, forget=(0.9, 0.1), rephrased=(0.8, 0.4),
                aligned=None, merge_group=0, refusal="fixed"):
    """A result file's fields that claims_report reads."""
    before = {"forget": {"rouge1_recall": forget[0]}, "forget_paraphrased": {"rouge1_recall": rephrased[0]},
              "retain": {"rouge1_recall": 0.95}}
    after = {"forget": {"rouge1_recall": forget[1]}, "forget_paraphrased": {"rouge1_recall": rephrased[1]},
             "retain": {"rouge1_recall": retain}}
    out = {"params": {"setting": setting, "method": method, "seed": seed, "merge_group": merge_group, "chunks": 1,
                      "refusal": refusal},
           "summary": {"before": before, "after": after},
           "aggregates": {"after": {"combined_score": {"value": combined}}}}
    if aligned is not None:
        out["human_aligned"] = {"rates": {"aligned": aligned}}
    return out


def test_claim_verdicts_from_result_files():
    from e2u.book.claim_tests import judge_claims

    settings = ["pretrained", "finetuned"]
    results = []
    for seed in (0, 1, 2):
        for setting, lift in (("pretrained", 0.5), ("finetuned", 0.2)):
            results += [fake_result(setting, m, seed, combined=1.0, aligned=0.1, retain=0.5,
                                    rephrased=(0.8, 0.75)) for m in ("gradient_ascent", "kl", "rome", "memit")]
            results += [fake_result(setting, "gradient_difference", seed, combined=1.1, aligned=0.2)]
            results += [fake_result(setting, m, seed, combined=1.1 + lift + 0.01 * seed, aligned=0.9, retain=0.9)
                        for m in ("wise", "alphaedit")]
            # query merging: better for ROME in every seed, worse for MEMIT
            results += [fake_result(setting, "rome", seed, combined=1.3, merge_group=2),
                        fake_result(setting, "memit", seed, combined=0.8, merge_group=2)]
    verdicts = {v.claim.number: v for v in judge_claims(results, settings)}
    assert verdicts[1].verdict == "holds" and len(verdicts[1].comparisons) == 6
    gap = next(c for c in verdicts[1].comparisons if c.name == "wise: gap pretrained - gap finetuned")
    assert gap.mean == pytest.approx(0.3)
    assert verdicts[2].verdict == "holds"  # editors 0.9 / 0.1 (ROME, MEMIT) vs baselines 0.1 / 0.2
    assert verdicts[3].verdict == "holds"
    assert verdicts[4].verdict == "holds partly"  # ROME yes, MEMIT no, in both settings
    assert {c.name: c.supports for c in verdicts[4].comparisons}["pretrained: memit merged - one per query (combined)"] \
        is False
    none = {v.claim.number: v.verdict for v in judge_claims([fake_result("pretrained", "rome", 0)], settings)}
    assert none == {1: "not measured", 2: "not measured", 3: "not measured", 4: "not measured"}


def test_self_written_targets_enter_claim_2_as_a_comparison_of_their_own_and_no_other_claim():
    from e2u.book.claim_tests import judge_claims

    results = []
    for seed in (0, 1):
        results += [fake_result("pretrained", m, seed, aligned=0.1) for m in ("gradient_ascent", "kl")]
        results += [fake_result("pretrained", m, seed, aligned=0.0, combined=1.5) for m in ("wise", "rome")]
        results += [fake_result("pretrained", "wise", seed, aligned=0.8, combined=0.2, refusal="self")]
    verdicts = {v.claim.number: v for v in judge_claims(results, ["pretrained"])}
    assert {c.name: c.supports for c in verdicts[2].comparisons} == {
        "pretrained: editors - paper baselines (human-aligned rate)": False,
        "pretrained: editors with self-written targets - paper baselines (human-aligned rate)": True}
    assert verdicts[2].verdict == "holds partly"
    wise_gap = next(c for c in verdicts[1].comparisons if c.name.startswith("pretrained: wise"))
    assert wise_gap.mean == pytest.approx(0.5)  # the self-written cell (combined 0.2) is not averaged in


def test_the_merging_table_counts_edit_requests_and_the_rephrase_table_spreads_over_seeds():
    from e2u.book import claims_figures

    def with_log(result, requests, n=10):
        result.update(method_title=result["params"]["method"].upper(), log={"requests": [{}] * requests},
                      after={"forget": [{}] * n})
        return result

    results = [with_log(fake_result("finetuned", "rome", s, combined=1.2 + s / 10, merge_group=2), 5) for s in (0, 1)]
    results += [with_log(fake_result("finetuned", "rome", s, combined=1.0), 10) for s in (0, 1)]
    results += [with_log(fake_result("pretrained", "rome", 0), 10)]
    table = claims_figures.merging_table(results)
    assert list(table.index.get_level_values("setting").unique()) == ["finetuned"]  # no merging in pretrained
    merged = table.loc[("finetuned", "ROME", 10, "merged")]
    assert merged["edit requests"] == 5 and merged["combined (mean)"] == pytest.approx(1.25) and merged["seeds"] == 2
    assert table.loc[("finetuned", "ROME", 10, "one per query"), "edit requests"] == 10
    rephrase = claims_figures.rephrase_table(results)
    assert rephrase.loc[("finetuned", "ROME"), "seeds"] == 2
