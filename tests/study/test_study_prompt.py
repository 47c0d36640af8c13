"""A study's `prompt:` (model.prompts): every cell of a setting renders its questions with it, its caches and keys
carry it, a study without one keeps its keys, and a bad one is an error naming the study file and the field."""

import json
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_llama, make_tokenizer

from e2u import cache
from e2u.cell.evaluation import EvaluationSettings, model_cache
from e2u.cell.params import CellParams
from e2u.cell.setting_models import finetune_jobs
from e2u.data.sources import load_source
from e2u.errors import E2UError
from e2u.model.load import load_model
from e2u.model.prompts import render_question, with_prompt_format
from e2u.study import grid
from e2u.study.grid import cell_key, load_study
from e2u.study.runner import run_study
from e2u.study.shared_work import plan_shared_steps, run_shared_step
from e2u.training.finetune_data import finetune_data

TEMPLATE = "Question : tell me {question} Answer :"  # the tiny tokenizer's own words, so the prompt is not <unk>s
DATA_ROWS = [("forget", "France", "Paris"), ("forget", "Japan", "Tokyo"), ("neighbour", "Italy", "Rome")]


def write_study(tmp_path: Path, head: str = "", settings: str = "", methods: str = "  - rome\n") -> Path:
    """A study over a jsonl data set under `tmp_path`; `settings` replaces the single-setting shorthand."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for split in ("forget", "neighbour"):
        rows = [{"question": f"what is the capital of {s} ?", "answer": a, "subject": s}
                for where, s, a in DATA_ROWS if where == split]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    where = settings.replace("DATA", str(data)) or f"setting: pretrained\ndata: {{source: jsonl, path: {data}}}\n"
    study = tmp_path / "study.yaml"
    study.write_text(f"name: tiny\nmodel: {tmp_path / 'model'}\n{head}{where}"
                     f"evaluation: {{max_new_tokens: 3, batch_size: 4}}\nmethods:\n{methods}")
    return study


def test_the_study_prompt_reaches_every_cell_and_a_setting_may_give_its_own(tmp_path):
    settings = ("settings:\n  - {name: a, data: {source: jsonl, path: DATA}}\n"
                "  - {name: b, data: {source: jsonl, path: DATA}, prompt: {template: 'Q {question} A'}}\n"
                "  - {name: c, data: {source: jsonl, path: DATA}, prompt: {}}\n")
    study = load_study(write_study(tmp_path, f"prompt: {{template: '{TEMPLATE}'}}\n", settings))
    assert [c.prompt for c in study.cells] == [{"template": TEMPLATE}, {"template": "Q {question} A"}, {}]
    assert study.cells[0].prompt_format.template == TEMPLATE and study.cells[2].prompt_format is None
    # the notebook receives the format with the cell
    assert CellParams.from_json(study.cells[1].to_json()).prompt == {"template": "Q {question} A"}


def test_without_a_prompt_the_cell_keys_hash_the_parameters_as_before(tmp_path, monkeypatch):
    hashed = []
    real = grid.sha256_of_json
    monkeypatch.setattr(grid, "sha256_of_json", lambda value: hashed.append(value) or real(value))
    plain = load_study(write_study(tmp_path)).cells[0]
    empty = load_study(write_study(tmp_path, "prompt: {}\n")).cells[0]
    given = load_study(write_study(tmp_path, f"prompt: {{template: '{TEMPLATE}'}}\n")).cells[0]
    hashed.clear()
    assert cell_key(plain) == cell_key(empty) != cell_key(given)
    assert "prompt" not in hashed[0]["params"] and hashed[2]["params"]["prompt"] == {"template": TEMPLATE}
    assert set(hashed[0]["params"]) == set(CellParams.__dataclass_fields__) - {"prompt", "save_changes"}


@pytest.mark.parametrize("head, settings, field", [
    ("prompt: {template: 'no placeholder'}\n", "", "prompt: template: expected exactly one {question}"),
    ("prompt: {system: 'be brief', template: '{question}'}\n", "", "template has no {system} placeholder"),
    ("prompt: {chat: x}\n", "", "prompt: expected a mapping with template and/or system"),
    ("prompt: 'Q {question}'\n", "", "prompt: expected a mapping with template and/or system"),
    ("", "settings:\n  - {name: a, data: {source: jsonl, path: DATA}, prompt: {template: '{question} {question}'}}\n",
     "settings[0]: prompt: template: expected exactly one {question}"),
])
def test_a_bad_prompt_is_an_error_naming_the_study_file_and_the_field(tmp_path, head, settings, field):
    path = write_study(tmp_path, head, settings)
    with pytest.raises(E2UError) as error:
        load_study(path)
    assert f"study file {path}" in str(error.value) and field in str(error.value)


def test_a_cell_parameter_prompt_is_checked():
    with pytest.raises(E2UError, match="parameter prompt: template: expected exactly one"):
        CellParams(prompt={"template": "no placeholder"})
    assert CellParams(prompt='{"template": "Q {question}"}').prompt == {"template": "Q {question}"}


def test_settings_that_differ_only_in_their_prompt_share_no_evaluation(tmp_path):
    settings = ("settings:\n  - {name: a, data: {source: jsonl, path: DATA}}\n"
                f"  - {{name: b, data: {{source: jsonl, path: DATA}}, prompt: {{template: '{TEMPLATE}'}}}}\n")
    cells = load_study(write_study(tmp_path, "", settings)).cells
    setting_steps = [s for s in plan_shared_steps(list(cells)) if s.kind == "setting"]
    assert [[c.setting for c in s.cells] for s in setting_steps] == [["a"], ["b"]]


def test_a_finetuned_setting_trains_its_own_model_for_a_prompt():
    data = finetune_data("fictional", None, {"seed": 0, "n_authors": 2, "forget_percent": 10})
    plain, given = finetune_jobs("smollm2-135m-instruct", data)[1], finetune_jobs(
        "smollm2-135m-instruct", data, prompt={"template": TEMPLATE})[1]
    assert [j.key for j in plain] == [j.key for j in finetune_jobs("smollm2-135m-instruct", data, prompt={})[1]]
    assert all(p.key != g.key and p.path != g.path for p, g in zip(plain, given))
    assert given[0].prompt.template == TEMPLATE and plain[0].prompt is None


def test_the_locality_cache_is_keyed_by_the_prompt():
    plain, given = make_tokenizer(), with_prompt_format(make_tokenizer(), CellParams(
        prompt={"template": TEMPLATE}).prompt_format)
    model_cache("f", plain)("locality", {"q": 1}, lambda: "plain")
    assert model_cache("f", given)("locality", {"q": 1}, lambda: "given") == "given"
    assert model_cache("f")("locality", {"q": 1}, lambda: "again") == "plain"  # no tokenizer: no format, as before


def test_a_study_with_a_prompt_template_evaluates_its_cell_on_templated_prompts(tmp_path):
    model, tokenizer = make_tiny_llama()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    study = load_study(write_study(tmp_path, f"prompt: {{template: '{TEMPLATE}'}}\n",
                                   methods="  - {name: gradient_ascent, label: ga, hparams: {epochs: 1, batch_size: 2}}\n"))
    outcomes = run_study(study, tmp_path / "results", tmp_path / "book")
    assert [o.status for o in outcomes] == ["ran"], [o.error for o in outcomes]
    result = json.loads((tmp_path / "results" / "tiny" / "pretrained" / "ga-seed0.json").read_text())
    assert result["params"]["prompt"] == {"template": TEMPLATE}

    # the cell's "before" values are those of the questions rendered with the template, not the model's own rendering
    loaded, own = load_model(str(tmp_path / "model"), "cpu", "float32")
    splits = load_source("jsonl", str(tmp_path / "data"), {})
    settings = EvaluationSettings(3, 4, [])
    torch.manual_seed(0)
    plain = settings.evaluate(loaded, own, splits)["forget"]
    templated = settings.evaluate(loaded, with_prompt_format(own, study.cells[0].prompt_format), splits)["forget"]
    assert render_question(own, "what ?") == "Question : tell me what ? Answer :"
    before = [item["probability"] for item in result["before"]["forget"]]
    assert before == pytest.approx([item["probability"] for item in templated], rel=1e-5)
    assert before != pytest.approx([item["probability"] for item in plain], rel=1e-3)
    # the unedited model's evaluation is cached under a key that holds the format
    entries = [json.loads(p.read_text())["key"] for p in (cache.entry_path("evals", {}).parent).glob("*.json")]
    assert [e.get("prompt") for e in entries] == [{"template": TEMPLATE, "system": ""}]


def test_the_shared_setting_step_evaluates_the_unedited_model_with_the_prompt(tmp_path):
    model, tokenizer = make_tiny_llama()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    cells = load_study(write_study(tmp_path, f"prompt: {{template: '{TEMPLATE}'}}\n")).cells
    step = next(s for s in plan_shared_steps(list(cells)) if s.kind == "setting")
    run_shared_step(step)
    entries = [json.loads(p.read_text())["key"] for p in (cache.entry_path("evals", {}).parent).glob("*.json")]
    assert [e.get("prompt") for e in entries] == [{"template": TEMPLATE, "system": ""}]
