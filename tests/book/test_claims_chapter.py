"""The claims chapter runs top to bottom on a small folder of result files shaped as the default study's."""

import json

import pytest
from claim_results import run_chapter_on_default_like_study


@pytest.mark.slow
def test_the_claims_chapter_runs_on_result_files_and_shows_each_claims_interval_and_robustness(tmp_path):
    cells = run_chapter_on_default_like_study("claims", tmp_path)
    text = "\n".join(json.dumps(c.get("outputs", [])) for c in cells)  # outputs only
    assert text.count("Verdict: **") == 4 and text.count("Verdict under the chosen reading") == 4
    assert "failed edits left out" in text and "(changed)" in text  # WISE's finetuned edits are flagged failed
    assert "the self-improvement recipe produced no self-written targets here: 10 of 10 fell back" in text
    assert "identical answers, counted once: gradient_ascent = kl" in text
    assert "GRADIENT_ASCENT and KL (finetuned, plain, seeds 0, 1, 2)" in text
    assert "not meaningful (forgot" in text and "questions of seed 0 only" in text
    assert text.count('"image/png"') >= 4 + 3  # a forest plot per claim, the alignment, sequence and merging figures
