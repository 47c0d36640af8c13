"""The claim verdicts on fixed inputs: each of holds / holds partly / does not hold, and the rule's edges."""

import pytest

from e2u.claims import DOES_NOT_HOLD, HOLDS, PARTLY, compare, judge
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
