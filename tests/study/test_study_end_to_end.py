"""The study path on a tiny model: papermill runs, result files, the cache, and a failed cell."""

import ast
import json
from pathlib import Path

import pytest
from conftest import make_tiny_llama

from e2u.book.build import stale_outputs
from e2u.study.grid import load_study
from e2u.study.runner import run_study

FACTS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid")]


def write_tiny_study(tmp_path: Path) -> Path:
    """A tiny random Llama, a jsonl data set and a two-cell study (rome, gradient ascent) under `tmp_path`."""
    model, tokenizer = make_tiny_llama()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    data = tmp_path / "data"
    data.mkdir()
    for split, facts in (("forget", FACTS[:2]), ("neighbour", FACTS[2:])):
        rows = [{"question": f"what is the capital of {s} ?", "answer": a, "subject": s,
                 "paraphrased_question": f"which city is the capital of {s} ?"} for s, a in facts]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    study = tmp_path / "study.yaml"
    study.write_text(
        f"name: tiny\nmodel: {tmp_path / 'model'}\nsetting: pretrained\n"
        f"data: {{source: jsonl, path: {data}}}\nevaluation: {{max_new_tokens: 4, batch_size: 4}}\n"
        "methods:\n"
        "  - {name: rome, hparams: {layer: 1, n_context_templates: 0, v_num_grad_steps: 3, mom2_n_tokens: 500, mom2_corpus_texts: 8}}\n"
        "  - {name: gradient_ascent, label: ga, hparams: {epochs: 1, batch_size: 2}}\n"
    )
    return study


@pytest.fixture
def tiny_study(tmp_path):
    return load_study(write_tiny_study(tmp_path)), tmp_path


def test_the_template_takes_exactly_the_parameters_the_runner_passes(tmp_path):
    import papermill

    from e2u.cell.params import CellParams
    from e2u.study.grid import TEMPLATE
    from e2u.study.runner import notebook_parameters

    cell = CellParams(method="rome", hparams={"layer": 6}, seed=3)
    passed = notebook_parameters(cell, tmp_path / "r.json", "k", rerun='{"layer": [5, 6]}')
    assert set(passed) == set(papermill.inspect_notebook(str(TEMPLATE))) == {"cell", "result_path", "cache_key",
                                                                              "rerun"}
    assert "rerun" not in notebook_parameters(cell, tmp_path / "r.json", "k")  # the template's default: none
    assert CellParams.from_json(passed["cell"]) == cell


def test_study_runs_every_cell_through_papermill_then_skips_finished_cells(tiny_study):
    study, root = tiny_study
    results, book = root / "results", root / "book"
    first = run_study(study, results, book)
    assert [o.status for o in first] == ["ran", "ran"], [o.error for o in first]
    rome_result = json.loads((results / "tiny" / "pretrained" / "rome-seed0.json").read_text())
    assert set(rome_result["after"]) == {"forget", "forget_paraphrased", "neighbour", "neighbour_paraphrased"}
    item = rome_result["after"]["forget"][0]
    assert {"generated", "rouge_l_recall", "probability", "refusal", "unchanged"} <= set(item)
    # ROME changed layer 1's matrix and nothing else, and with it what the model says about the forget questions
    assert list(rome_result["change"]["norm_by_layer"]) == ["1"] and rome_result["change"]["norm_by_layer"]["1"] > 0
    moved = [abs(a["probability"] / b["probability"] - 1)
             for a, b in zip(rome_result["after"]["forget"], rome_result["before"]["forget"])]
    assert max(moved) > 1e-4, moved
    notebook = book / "runs" / "tiny" / "pretrained" / "rome-seed0.ipynb"
    assert notebook.is_file() and "ROME: pretrained knowledge" in notebook.read_text()
    assert _glued_title(notebook) == study.cells[0].title  # written by the notebook, not patched in afterwards

    assert [o.status for o in run_study(study, results, book)] == ["cached", "cached"]

    (results / "tiny" / "pretrained" / "ga-seed0.json").unlink()
    assert [o.status for o in run_study(study, results, book)] == ["cached", "ran"]


def _glued_title(notebook: Path) -> str:
    import nbformat

    book = nbformat.read(notebook, as_version=4)
    assert book.cells[0].source.startswith("# {glue:text}`title`")
    for cell in book.cells:
        for output in cell.get("outputs", []):
            if output.get("metadata", {}).get("scrapbook", {}).get("name") == "title":
                return ast.literal_eval(output["data"]["application/papermill.record/text/plain"])
    raise AssertionError(f"{notebook} glues no title")


def test_a_failing_cell_keeps_its_executed_notebook_until_it_runs_again(tiny_study):
    study, root = tiny_study
    broken = type(study)(study.name, (study.cells[0],), study.source)
    object.__setattr__(broken.cells[0], "hparams", {"layer": 99})
    outcome = run_study(broken, root / "results", root / "book")
    assert outcome[0].status == "failed" and "0..3" in outcome[0].error
    assert not list((root / "results").rglob("*.json"))
    failed = root / "book" / "runs" / "tiny" / "pretrained" / "rome-seed0.failed.ipynb"
    assert sorted((root / "book").rglob("*.ipynb")) == [failed]  # no chapter: only the executed notebook, kept
    assert "0..3" in failed.read_text() and "hparams" in failed.read_text()
    assert not stale_outputs(broken, root / "results", root / "book")  # `e2u book` keeps it (and leaves it out)
    # the report names the kept notebook and the error's last frames, not only its last line
    details = outcome[0].details
    assert f"executed notebook kept: {failed}" in details and "\x1b[" not in details
    frames = details.splitlines()
    assert len(frames) > 3 and "0..3" in frames[-1] and any("File " in line or "Cell In" in line for line in frames)

    fixed = type(study)(study.name, (study.cells[1],), study.source)  # gradient ascent: runs fast
    ga_failed = failed.with_name("ga-seed0.failed.ipynb")
    ga_failed.write_text(failed.read_text())  # as if ga had failed before
    assert [o.status for o in run_study(fixed, root / "results", root / "book")] == ["ran"]
    assert not ga_failed.exists() and failed.exists()  # a successful run removes its own stale failed notebook


def test_the_notebook_stops_on_a_bad_cell_naming_the_field(tmp_path):
    import papermill

    from e2u.study.grid import TEMPLATE

    with pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(str(TEMPLATE), str(tmp_path / "out.ipynb"), kernel_name="python3",
                                   parameters={"cell": '{"method": "rome", "sed": 1}'}, progress_bar=False,
                                   cwd=str(TEMPLATE.parent))
    assert "parameter cell: unknown field(s) ['sed']" in str(failure.value).strip().splitlines()[-1]
