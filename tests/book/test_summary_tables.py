"""The pages' tables from hand-built result files: the summary's per-method rows (means and spreads over seeds,
recipes never pooled, links to the cells' pages), the results page's heading and its paper's-metrics tables, and
the claims tables' marks (never True or False)."""

from __future__ import annotations

import json
import math
import re
from statistics import mean, stdev

import pytest
from claim_results import cell

from e2u.book import claims_figures, paper_tables, report, summary_tables
from e2u.book.bootstrap import Interval
from e2u.book.claims import CONTRADICTS, NOT_MEASURED, STRADDLES, SUPPORTS, Comparison
from e2u.files import SOURCE_ROOT as ROOT

FORGET = {0: [0.2, 0.4], 1: [0.0, 0.2], 2: [0.6, 0.6]}  # ROME's per-item forget Rouge1 at each seed
KEPT = {0: [0.9, 0.7, 0.8], 1: [0.5, 0.5, 0.5], 2: [1.0, 0.9, 0.8]}
REPHRASED = {0: [0.4, 0.4], 1: [0.2, 0.2], 2: [0.6, 1.0]}


def study() -> list[dict]:
    """ROME plain on three seeds, and on seed 0 three recipes under ROME's own label (merged queries, self-written
    targets, chunks); GA plain on two seeds, its seed 1 a flagged failed edit; WISE in another setting."""
    results = [cell("pretrained", "rome", s, FORGET[s], KEPT[s], rephrased=REPHRASED[s], kept_split="neighbour")
               for s in (0, 1, 2)]
    results += [cell("pretrained", "rome", 0, [0.9, 0.9], [0.1, 0.1, 0.1], kept_split="neighbour", merge_group=2),
                cell("pretrained", "rome", 0, [0.5, 0.5], [0.5, 0.5, 0.5], kept_split="neighbour", refusal="self"),
                cell("pretrained", "rome", 0, [0.3, 0.3], [0.2, 0.2, 0.2], kept_split="neighbour", chunks=3)]
    results += [cell("pretrained", "gradient_ascent", s, [0.1, 0.1], [0.2, 0.2, 0.2], kept_split="neighbour",
                     failed=s == 1, label="ga") for s in (0, 1)]
    results += [cell("finetuned", "wise", 0, [0.3, 0.1], [0.6, 0.8])]
    for r in results:
        r["params"].update(model="smollm2-135m-instruct",
                           data_source="factual" if r["params"]["setting"] == "pretrained" else "pistol")
    return results


def test_the_summary_has_one_row_per_method_and_recipe_with_means_and_spreads_over_seeds():
    table = summary_tables.method_table(study(), "pretrained")
    assert list(zip(table["method"], table["recipe"])) == [
        ("ROME", "plain"), ("GRADIENT_ASCENT", "plain"),  # plain rows first, best combined score first
        ("ROME", "self-written targets"), ("ROME", "in 3 chunks"), ("ROME", "merged queries (2 per request)")]
    rome = table[(table["method"] == "ROME") & (table["recipe"] == "plain")].iloc[0]
    assert rome["seeds"] == (0, 1, 2) and rome["cells"] == ("rome-seed0", "rome-seed1", "rome-seed2")
    by_hand = {"combined": [1 - mean(FORGET[s]) + mean(KEPT[s]) for s in (0, 1, 2)],
               "forget Rouge1": [mean(FORGET[s]) for s in (0, 1, 2)],
               "kept Rouge1": [mean(KEPT[s]) for s in (0, 1, 2)],
               "combined (rephrased)": [1 - mean(REPHRASED[s]) + mean(KEPT[s]) for s in (0, 1, 2)]}
    for measure, values in by_hand.items():  # e.g. combined: 1.5, 1.4, 1.3 -> mean 1.4, sd 0.1
        assert rome[measure] == pytest.approx(mean(values)) and rome[f"{measure} sd"] == pytest.approx(stdev(values))
    merged = table[table["recipe"] == "merged queries (2 per request)"].iloc[0]
    assert merged["seeds"] == (0,) and merged["combined"] == pytest.approx(1 - 0.9 + 0.1)
    assert math.isnan(merged["combined sd"])  # one seed: no spread
    ga = table[table["method"] == "GRADIENT_ASCENT"].iloc[0]  # the failed edit's title mark is not a method
    assert ga["failed"] == (1,) and ga["combined"] == pytest.approx(1 - 0.1 + 0.2)


def test_the_summary_table_links_each_seed_to_its_cells_page_and_shows_mean_and_spread():
    text = summary_tables.summary_markdown(study(), "default")
    assert "**Setting `pretrained`** ([its results page](results/pretrained.ipynb))" in text
    assert "| method | recipe | combined | forget Rouge1 | neighbour Rouge1 | combined (rephrased) |" in text
    assert "| method | recipe | combined | forget Rouge1 | retain Rouge1 | combined (rephrased) |" in text  # finetuned
    combined = [1 - mean(FORGET[s]) + mean(KEPT[s]) for s in (0, 1, 2)]
    row = next(line for line in text.splitlines() if line.startswith("| ROME | plain |"))
    assert f"| {mean(combined):.3f} ± {stdev(combined):.3f} |" in row
    assert row.endswith("[0](runs/default/pretrained/rome-seed0.ipynb) · [1](runs/default/pretrained/rome-seed1.ipynb)"
                        " · [2](runs/default/pretrained/rome-seed2.ipynb) |")
    assert "[1](runs/default/pretrained/ga-seed1.ipynb) (failed edit)" in text
    merged = next(line for line in text.splitlines() if "merged queries" in line)
    assert "| 0.200 |" in merged and "±" not in merged


def test_a_results_page_names_the_model_the_questions_per_seed_and_the_seeds():
    cells = report.cells_of(study(), "pretrained")
    heading = report.setting_heading(cells)
    assert heading == ("Model smollm2-135m-instruct, data `factual`: 2 forget and 3 neighbour questions per seed; "
                       "seeds 0, 1 and 2; 8 cells.")
    assert "protocol" not in heading
    wise = report.cells_of(study(), "finetuned")
    assert report.setting_heading(wise).endswith("2 forget and 2 retain questions per seed; seed 0; 1 cell.")


def test_the_papers_table_comes_in_parts_that_fit_with_plain_text_captions():
    results = [cell("pretrained", "rome", 0, [0.2, 0.4], [0.9, 0.7], kept_split="neighbour")]
    for r in results:
        r["summary"]["after"]["forget"].update(answer_probability=0.01, probability=0.2, mrr=0.5, top_hit=1.0)
        r["summary"]["after"]["forget"]["refusal_rate"] = 0.5
    whole = paper_tables.paper_table(results, "pretrained")
    parts = paper_tables.paper_table_parts(results, "pretrained")
    assert [len(part.columns) for _, part in parts] == [5, 1, 1, 3]  # forget, rephrased, neighbour, score
    assert sum(len(part.columns) for _, part in parts) == len(whole.columns)
    captions = [caption for caption, _ in parts]
    assert captions[2] == "The neighbour questions: what should be kept."
    assert "1 − Rouge1(forget) + Rouge1(neighbour)" in captions[3]
    for caption in captions:
        assert not re.search(r"\\[A-Za-z]|\$|\\\(", caption), caption


def test_the_claims_tables_show_marks_never_true_or_false():
    def interval(low, high):
        return Interval((low + high) / 2, low, high, (0,), (0.0,), (2,))

    comparisons = [Comparison("a", interval(0.2, 0.4), 0.05), Comparison("b", interval(-0.4, -0.2), 0.05),
                   Comparison("c", interval(-0.1, 0.1), 0.05), Comparison("d", None, 0.05, "no cells")]
    assert [c.state for c in comparisons] == [SUPPORTS, CONTRADICTS, STRADDLES, NOT_MEASURED]
    shown = claims_figures.comparison_table(comparisons)
    assert list(shown["state"]) == ["✓ supports", "✗ contradicts", "straddles", "not measured"]
    results = [cell("pretrained", "rome", 0, [0.2, 0.4], [0.9, 0.7], aligned=[1, 0])]
    examples = claims_figures.alignment_examples(results)
    assert list(examples["aligned"]) == ["✓", "✗"]
    assert list(examples["fails"]) == ["-", "refusal, on_topic"]
    assert "True" not in examples.to_html() and "False" not in examples.to_html()


def markdown_of(template: str) -> list[str]:
    return ["".join(c["source"]) for c in json.loads((ROOT / "notebooks" / template).read_text())["cells"]
            if c["cell_type"] == "markdown"]


@pytest.mark.parametrize("template", ["setting.ipynb", "summary.ipynb"])
def test_the_results_templates_prose_has_no_tex_no_dates_or_issue_numbers_and_short_sentences(template):
    for text in markdown_of(template):
        assert not re.search(r"\$|\\[A-Za-z]+\{|\\\(", text), text
        assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b|\bissue \d+|#\d+\b|\b[0-9a-f]{7,40}\b", text), text
        prose = re.sub(r"^#.*$", "", text, flags=re.MULTILINE)
        for sentence in re.split(r"(?<=[.!?])\s+", prose):
            assert len(sentence.split()) <= 40, sentence


def test_the_checks_judge_locality_as_a_share_of_the_unedited_models_kept_rouge1():
    kept = cell("pretrained", "rome", 0, [0.0, 0.0], [0.8, 0.8, 0.8], kept_split="neighbour")
    nothing_kept = cell("pretrained", "memit", 0, [0.0, 0.0], [0.0, 0.0, 0.0], kept_split="neighbour")
    for r, refused in ((kept, 0.9), (nothing_kept, 0.9)):
        r["summary"]["after"]["forget"]["refusal_rate"] = refused
        r["summary"]["unchanged"] = {"neighbour": 1.0}
    kept["summary"]["before"]["neighbour"]["rouge1_recall"] = 1.0  # after 0.8: a share of 80%, at the floor
    rows = report.checks_markdown([kept, nothing_kept]).splitlines()[2:]
    assert rows[0] == "| pretrained/rome-seed0 | 90% (floor 80%) | 80% (floor 80%) | 100% | holds |"
    assert rows[1] == "| pretrained/memit-seed0 | 90% (floor 80%) | – (unedited: 0) (floor 80%) | 100% | not judged |"
    nothing_kept["summary"]["after"]["forget"]["refusal_rate"] = 0.5
    assert report.checks_markdown([nothing_kept]).endswith("| does not hold |")
