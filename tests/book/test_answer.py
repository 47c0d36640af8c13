"""The book's answer first (the intro): its answer block follows the claims' verdicts, its headline figure draws a
dot per seed of each method, and its caveat's numbers are the result files'."""

import json
import re
from collections import Counter

import pytest
import yaml
from claim_results import cell, run_chapter_on_default_like_study

from e2u.book import answer, claim_tests, headline, scope
from e2u.book.build import GENERATED_CHAPTERS
from e2u.book.claims import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, NOT_MEASURED
from e2u.files import SOURCE_ROOT as ROOT

N_RESAMPLES = 200
PAPER = ("gradient_ascent", "gradient_difference", "kl", "dpo")
EDITORS = ("rome", "memit", "alphaedit", "grace", "wise")


def values(level, seed, n):
    """`n` per-item Rouge1 values around `level`, different per question and seed."""
    return [round(min(1.0, max(0.0, level + 0.04 * ((3 * i + seed) % 5 - 2))), 3) for i in range(n)]


def result_set(editors_win: bool, n_forget=8, n_kept=12, seeds=(0, 1, 2), model="smollm2-135m-instruct"):
    """Plain cells of the paper's nine methods in two settings (NPO on the first seed only): the editors forget
    far more and keep more than the baselines when `editors_win`, far less otherwise, the gap larger on
    pretrained knowledge either way."""
    levels = {True: {"pretrained": ((0.1, 0.9), (0.6, 0.6)), "finetuned": ((0.3, 0.8), (0.6, 0.6))},
              False: {"pretrained": ((0.7, 0.4), (0.2, 0.8)), "finetuned": ((0.6, 0.5), (0.3, 0.8))}}[editors_win]
    results = []
    for setting, (editor, baseline) in levels.items():
        for method in (*EDITORS, *PAPER, "npo"):
            forget, kept = editor if method in EDITORS else baseline
            for seed in seeds[:1] if method == "npo" else seeds:
                r = cell(setting, method, seed, values(forget, seed, n_forget), values(kept, seed + 1, n_kept),
                         rephrased=values(min(1.0, forget + 0.1), seed + 2, n_forget),
                         aligned=[(i + seed) % 2 for i in range(n_forget)])
                r["params"]["model"] = model
                results.append(r)
    return results


def judged(results):
    return claim_tests.judge_claims(results, ["pretrained", "finetuned"], n_resamples=N_RESAMPLES)


def test_the_answer_block_changes_with_the_verdicts_and_shows_each_comparisons_interval():
    won, lost = judged(result_set(editors_win=True)), judged(result_set(editors_win=False))
    assert won[0].verdict == HOLDS and lost[0].verdict == DOES_NOT_HOLD  # claim 1: WISE and AlphaEdit
    assert won[3].verdict == lost[3].verdict == NOT_MEASURED and not won[3].comparisons  # no merged queries here
    blocks = {True: answer.answer_markdown(won), False: answer.answer_markdown(lost)}
    assert blocks[True] != blocks[False]
    for editors_win, verdicts in ((True, won), (False, lost)):
        lines = blocks[editors_win].splitlines()
        heads = [line for line in lines if line.startswith("- **Claim")]
        assert [h.split("**")[1] for h in heads] == [f"Claim {n}." for n in (1, 2, 3, 4)]
        for head, v in zip(heads, verdicts):  # the paper's own qualified words, then this study's verdict
            assert f"“{answer.WORDS[v.claim.number].words}”" in head and f"In this study: **{v.verdict}**" in head
        assert "notably WISE and AlphaEdit" in heads[0] and "especially for pretrained knowledge" in heads[0]
        assert heads[3].endswith("**not measured** (no cell of this study tests it).")
        claim_1 = lines[lines.index(heads[0]) + 1:lines.index(heads[1])]
        assert len(claim_1) == len(verdicts[0].comparisons) == 6  # 2 settings x 2 editors, and 2 gap differences
        for line, c in zip(claim_1, verdicts[0].comparisons):
            i = c.interval
            assert line == f"  - {c.name}: {i.point:+.3f} [{i.low:+.3f}, {i.high:+.3f}], {c.state} (3 seeds)"
    assert "In this study: **holds**" in blocks[True].splitlines()[0]
    assert "In this study: **does not hold**" in blocks[False].splitlines()[0]
    assert [v.verdict for v in won] == [HOLDS, INCONCLUSIVE, HOLDS, NOT_MEASURED]  # claim 2: equal rates
    assert answer.verdict_counts(won) == "2 hold, 1 inconclusive, 1 not measured"
    assert answer.verdict_counts(lost) == "1 inconclusive, 2 do not hold, 1 not measured"


def test_the_answer_needs_a_verdict_for_every_claim_the_claims_chapter_judges():
    assert [c.number for c in answer.PAPER_CLAIMS] == [c.number for c in claim_tests.CLAIMS]
    with pytest.raises(Exception, match="expected a verdict for each of claims"):
        answer.answer_markdown(judged(result_set(True))[:3])


def _dots(figure):
    """{(panel title, form, method title): dots drawn}, the method read from the row a dot sits in."""
    axes = figure.axes
    methods = [t.get_text() for t in axes[0].get_yticklabels()]
    counts = Counter()
    for ax in axes:
        for collection in ax.collections:
            form = collection.get_label()
            offset = headline.MARKERS[form][2]
            for _, y in collection.get_offsets():
                counts[ax.get_title(), form, methods[round(y - offset)]] += 1
    return counts


def test_the_headline_figure_draws_one_dot_per_seed_of_each_method_written_and_rephrased():
    results = result_set(editors_win=True)
    results.append(cell("finetuned", "rome", 0, [0.1] * 8, [0.9] * 12, merge_group=2, label="rome-merged"))
    results.append(cell("finetuned-n20", "rome", 0, [0.1] * 8, [0.9] * 12))  # no baseline there: not drawn
    figure = headline.headline_figure(results)
    assert [ax.get_title() for ax in figure.axes] == ["pretrained", "finetuned"]
    titles = {m: m.upper() for m in (*EDITORS, *PAPER, "npo")}  # the fixture's method titles
    expected = Counter({(s, form, titles[m]): 1 if m == "npo" else 3 for s in ("pretrained", "finetuned")
                        for form in (headline.AS_WRITTEN, headline.REPHRASED) for m in titles})
    assert _dots(figure) == expected  # the merged cell is not plain: ROME keeps its three dots
    rows = headline.headline_rows(results)
    wise = rows[(rows.setting == "pretrained") & (rows.method == "wise") & (rows.form == headline.AS_WRITTEN)]
    scores = sorted(r["aggregates"]["after"]["combined_score"]["value"] for r in results
                    if r["params"]["setting"] == "pretrained" and r["params"]["method"] == "wise")
    assert sorted(wise["combined"]) == pytest.approx(scores)
    editors_first = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert editors_first[:5] == [titles[m] for m in EDITORS] and editors_first[-1] == "NPO"
    assert headline.headline_figure([r for r in results if r["params"]["method"] in EDITORS]) is None


def test_the_caveat_reads_the_model_the_questions_per_seed_and_the_seeds_from_the_results():
    embedded = scope.caveat_markdown(result_set(True, n_forget=8, n_kept=12, seeds=(0, 1, 2)))
    other = scope.caveat_markdown(result_set(True, n_forget=7, n_kept=13, seeds=(4, 9),
                                             model="HuggingFaceTB/SmolLM2-360M-Instruct"))
    assert "one model, SmolLM2-135M-Instruct, the embedded default" in embedded
    assert "pretrained: 8 forget and 12 kept questions per seed, 3 seeds" in embedded
    assert "one model, HuggingFaceTB/SmolLM2-360M-Instruct" in other
    assert "finetuned: 7 forget and 13 kept questions per seed, 2 seeds" in other
    assert "protocol reconstructed" in embedded and "{doc}`the protocol chapter <protocol>`" in embedded
    assert "no plain cell" in scope.caveat_markdown([])


def test_the_intro_is_generated_and_the_claims_chapter_follows_the_protocol():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc["root"] == "book/intro" and "intro" in GENERATED_CHAPTERS
    assert not (ROOT / "book" / "intro.md").exists()  # one root page: the executed notebooks/intro.ipynb
    files = [entry.get("file") for entry in toc["chapters"]]
    assert files[:2] == ["book/protocol", "book/claims"] and files.count("book/claims") == 1


@pytest.mark.slow
def test_the_intro_runs_on_result_files_and_opens_with_the_answer(tmp_path):
    cells = run_chapter_on_default_like_study("intro", tmp_path)
    outputs = [json.dumps(c.get("outputs", [])) for c in cells]
    first = next(k for k, text in enumerate(outputs) if "Claim 1." in text)
    assert first < next(k for k, c in enumerate(cells) if "What this book is" in "".join(c["source"]))
    text = "\n".join(outputs)
    assert len(re.findall(r"- \*\*Claim \d\.\*\*", text)) == 4 and "Of the paper's 4 claims" in text
    assert text.count('"image/png"') == 1 and "10 forget and 20 kept questions per seed, 3 seeds" in text


def test_a_comparison_on_one_seed_says_its_interval_is_over_that_seeds_questions_only():
    one = judged(result_set(editors_win=True, seeds=(5,)))
    line = answer.interval_text(one[0].comparisons[0])
    assert line.endswith(", supports (questions of seed 5 only)"), line
