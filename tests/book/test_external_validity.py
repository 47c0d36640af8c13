"""External validity: the embedded factual set's numbers beside TOFU's file's, and the study that makes them."""

import json
import re
from pathlib import Path

import pytest
from claim_results import cell
from conftest import saved_tiny_model

from e2u.book import external_validity as ev
from e2u.cell.run import run_cell
from e2u.data import factual
from e2u.study.grid import load_study, result_path

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "studies" / "external-factual.yaml"
FIXTURE = ROOT / "tests" / "data" / "fixtures" / "tofu_style_factual.json"
NINE = ("rome", "memit", "alphaedit", "grace", "wise", "gradient_ascent", "gradient_difference", "kl", "dpo")


def fake_result(method, seed, forget, retain, aligned=0.5, report=None):
    """A pretrained cell (`claim_results.cell`: five forget and five retain questions, each at the given Rouge1)."""
    result = cell("pretrained", method, seed, [forget] * 5, [retain] * 5, rephrased=[min(1.0, forget + 0.1)] * 5,
                  aligned=[i < 5 * aligned for i in range(5)])
    result["data_report"] = report or {}
    return result


def write_results(folder: Path, results) -> Path:
    for result in results:
        path = folder / result["params"]["setting"] / f"{result['cell_id']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result))
    return folder


EXTERNAL_REPORT = {"known": {"known": 31, "asked": 40, "source": "/x/factual_data.json"},
                   "paraphrases": {"forget": 10, "with_paraphrase": 9, "without_paraphrase": 1,
                                   "by_source": {"data": 0, "model": 4, "rules": 5},
                                   "note": "1 of 10 forget questions have no paraphrase (model: identical, rules: "
                                           "no_rule); the rephrase attack is measured on the other 9"}}


def two_folders(tmp_path):
    """Embedded: WISE forgets well and keeps (0.1, 0.9); GA breaks retain. External: WISE forgets less."""
    embedded, external = [], []
    for seed in (0, 1):
        embedded += [fake_result("wise", seed, 0.1, 0.9), fake_result("gradient_ascent", seed, 0.0, 0.2 + 0.1 * seed),
                     fake_result("kl", seed, 0.5, 0.8)]
        external += [fake_result("wise", seed, 0.6, 0.8, report=EXTERNAL_REPORT),
                     fake_result("gradient_ascent", seed, 0.0, 0.3, report=EXTERNAL_REPORT)]
    # cells the plain comparison leaves out: query merging, chunks
    merged = fake_result("wise", 0, 0.9, 0.1)
    merged["params"]["merge_group"], merged["cell_id"] = 2, "wise-merged-seed0"
    return write_results(tmp_path / "default", embedded + [merged]), write_results(tmp_path / "external", external)


def test_each_method_has_its_combined_score_and_retain_rouge1_on_both_data_sets(tmp_path):
    embedded, external = two_folders(tmp_path)
    out = ev.external_validity(external, embedded, n_resamples=50)
    assert out.ran
    table = out.methods
    assert list(table.index) == ["WISE", "GA", "KL"]  # editors first, then the paper's baselines
    wise, ga, kl = (table.loc[m] for m in ("WISE", "GA", "KL"))
    assert wise["combined (embedded set)"] == pytest.approx(1.8)  # 1 - 0.1 + 0.9 (the merged cell left out)
    assert wise["combined (TOFU's file)"] == pytest.approx(1.2)
    assert wise["combined: TOFU's file - embedded"] == pytest.approx(-0.6)
    assert ga["retain Rouge1 (embedded set)"] == pytest.approx(0.25) and ga["retain Rouge1 (TOFU's file)"] == 0.3
    assert wise["seeds (embedded set)"] == 2 == wise["seeds (TOFU's file)"]
    assert kl["combined (embedded set)"] == pytest.approx(1.3) and kl.isna()["combined (TOFU's file)"]


def test_the_claims_comparisons_are_judged_on_each_data_set(tmp_path):
    embedded, external = two_folders(tmp_path)
    claims = ev.external_validity(external, embedded, n_resamples=200).claims
    row = claims.loc[(1, "pretrained: wise - best baseline, combined")]
    # embedded: WISE 1.8 against the best baseline on the mean, KL (1.3; GA 1.2 and 1.3 by seed); TOFU's file:
    # WISE 1.2 against GA 1.3. Every question alike: the interval is the point.
    assert row["estimate (embedded set)"] == pytest.approx(0.5) and row["state (embedded set)"] == "✓ supports"
    assert row["95% interval (embedded set)"] == "[0.500, 0.500]" and "kl" in row["note (embedded set)"]
    assert row["estimate (TOFU's file)"] == pytest.approx(-0.1) and row["state (TOFU's file)"] == "✗ contradicts"
    assert "gradient_ascent" in row["note (TOFU's file)"]
    kept = claims.loc[(3, "pretrained: AlphaEdit, WISE - GA, KL, ROME, MEMIT (Rouge1 on kept questions)")]
    assert kept["estimate (TOFU's file)"] == pytest.approx(0.5)  # WISE 0.8 - GA 0.3
    assert kept["estimate (embedded set)"] == pytest.approx(0.9 - (0.25 + 0.8) / 2)  # GA's two seeds, KL
    assert not any("alphaedit - best" in name for _, name in claims.index)  # no AlphaEdit cell: no comparison


def test_the_sentence_says_where_the_external_numbers_come_from(tmp_path):
    embedded, external = two_folders(tmp_path)
    sentence = ev.external_validity(external, embedded, n_resamples=50).sentence
    assert sentence.startswith("4 cells on TOFU's factual file (factual_data.json: the model answers 31 of 40")
    assert "0 from the data, 16 written by the model, 20 by rules, 4 of 40 without one" in sentence
    assert "1 of 10 forget questions have no paraphrase" in sentence
    missing = ev.external_validity(external, tmp_path / "nothing", n_resamples=50)
    assert "The embedded twin has no pretrained cells in " + f"{tmp_path.name}/nothing:" in missing.sentence
    assert str(tmp_path) not in missing.sentence + sentence  # the page shows no path of the build machine
    not_run = ev.external_validity(tmp_path / "results" / "external-factual", embedded, n_resamples=50)
    assert "in results/external-factual)" in not_run.sentence and str(tmp_path) not in not_run.sentence
    assert missing.methods["seeds (TOFU's file)"].eq(2).all()


@pytest.mark.parametrize("folder", [None, "absent"])
def test_without_external_results_the_sentence_says_not_run_here_and_how_to_run_it(tmp_path, folder):
    embedded, _ = two_folders(tmp_path)
    out = ev.external_validity(None if folder is None else tmp_path / folder, embedded, n_resamples=50)
    assert not out.ran
    assert out.sentence.startswith("not run here: no copy of TOFU's factual file on this machine")
    assert "to run it: " in out.sentence and "`e2u study run studies/external-factual.yaml`" in out.sentence
    assert out.methods["combined (TOFU's file)"].isna().all() and out.methods.loc["WISE", "combined (embedded set)"] > 0
    assert not ev.external_validity(None, None).ran and ev.external_validity(None, None).methods.empty


def test_the_study_file_is_the_default_pretrained_setting_with_the_papers_nine_methods():
    study = load_study(STUDY)
    default = {(c.method, c.label, c.seed): c for c in load_study(ROOT / "studies" / "default.yaml").cells
               if c.setting == "pretrained" and c.chunks == 1 and c.refusal == "fixed" and not c.merge_group}
    assert len(study.cells) == 27 and {c.method for c in study.cells} == set(NINE)
    for cell in study.cells:
        twin = default[cell.method, cell.label, cell.seed]  # same label, hyper-parameters, draw: only the data differs
        assert cell.cell_id == twin.cell_id and cell.hparams == twin.hparams and cell.data_options == twin.data_options
        assert cell.data_source == "factual" and cell.data_path == str(ROOT / "data" / "factual_data.json")
    header = STUDY.read_text().split("\nname:")[0]
    assert "e2u study run studies/external-factual.yaml" in header and "hub: true" in header
    assert ev.STUDY_FILE in ev.RUN_COMMAND


def edited_study(tmp_path, data: Path, model: Path) -> Path:
    """The study file as a user edits it: `path` naming their file (here the TOFU-style fixture), and, for a test,
    a tiny model, two cheap baselines and small draws."""
    text = STUDY.read_text()
    text = re.sub(r"path: \S+,", f"path: {data},", text)
    text = text.replace("model: smollm2-135m-instruct", f"model: {model}")
    text = text.replace("n_forget: 10, n_retain: 20", "n_forget: 4, n_retain: 4, max_new_tokens: 4")
    text = text.replace("max_new_tokens: 32, batch_size: 32", "max_new_tokens: 4, batch_size: 8")
    text = text.split("methods:")[0] + ("methods:\n  - {name: gradient_ascent, hparams: {epochs: 1, batch_size: 4}}\n"
                                        "  - {name: gradient_difference, hparams: {epochs: 1, batch_size: 4}}\n")
    text = text.replace("seeds: [0, 1, 2]", "seeds: [0]")
    path = tmp_path / "external-factual.yaml"
    path.write_text(text)
    return path


def test_the_whole_path_on_a_tofu_style_file_without_paraphrases(tmp_path, monkeypatch):
    """Study file -> cells on a PISTOL-style factual array (no paraphrases, no subjects) -> result files -> table.
    A tiny random model knows nothing, so every question is taken as known here; everything else is the real path."""
    monkeypatch.setattr(factual, "is_known", lambda answer, question, questions: True)
    data = tmp_path / "factual_data.json"
    data.write_text(FIXTURE.read_text())
    study = load_study(edited_study(tmp_path, data, saved_tiny_model(tmp_path)))
    assert [c.data_path for c in study.cells] == [str(data)] * 2
    results = tmp_path / "results"
    for cell in study.cells:
        run_cell(cell, result_path(results, study, cell))
    cells = sorted((results / "external-factual" / "pretrained").glob("*.json"))
    assert [p.name for p in cells] == ["gradient_ascent-seed0.json", "gradient_difference-seed0.json"]
    result = json.loads(cells[0].read_text())
    paraphrases = result["data_report"]["paraphrases"]
    assert paraphrases["forget"] == 4 == paraphrases["with_paraphrase"]  # the rules fill in what the model missed
    assert paraphrases["by_source"]["data"] == 0 and sum(paraphrases["by_source"].values()) == 4
    assert "note" not in paraphrases and result["summary"]["after"]["forget_paraphrased"]["n"] == 4
    assert result["data_report"]["known"] == {"known": 40, "asked": 40, "source": str(data)}

    embedded, _ = two_folders(tmp_path)
    out = ev.external_validity(results / "external-factual", embedded, n_resamples=50)
    assert out.ran and list(out.methods.index) == ["WISE", "GA", "GD", "KL"]
    combined = out.methods.loc["GA", "combined (TOFU's file)"]
    forget, retain = (result["summary"]["after"][s]["rouge1_recall"] for s in ("forget", "retain"))
    assert combined == pytest.approx(round(1 - forget + retain, 3))
    assert out.sentence.startswith(f"2 cells on TOFU's factual file ({data.name}: the model answers 40 of 40")
    assert "0 from the data" in out.sentence and "0 of 8 without one" in out.sentence
