"""The embedded model's unlearning learning rates are the ones the held-out sweep chose, each inside its grid."""

import json

import pytest

from e2u.files import SOURCE_ROOT
from e2u.hparams import family_defaults
from e2u.methods import METHODS

SWEEP = SOURCE_ROOT / "bench" / "results" / "lr_sweep.json"
BASELINES = sorted(n for n, m in METHODS.items() if m.kind == "unlearning")


def sweep_choice() -> dict:
    return json.loads(SWEEP.read_text())["values"]["choice"]


@pytest.mark.parametrize("method", BASELINES)
def test_each_baseline_trains_at_the_learning_rate_the_held_out_sweep_chose_inside_its_grid(method):
    choice = sweep_choice()[method]
    rows = [r for r in json.loads(SWEEP.read_text())["values"]["rows"] if r["method"] == method]
    assert {r["seed"] for r in rows} == {3}, "chosen on the held-out draw, not on a seed the book reports"
    assert choice["settings"] == ["finetuned", "pretrained"], "chosen on both settings"
    assert choice["inside"], f"{method}: lr {choice['lr']} lies at the edge of {choice['grid']}"
    tuned = {**family_defaults("unlearning", "llama", "smollm2-135m-instruct"),
             **family_defaults(method, "llama", "smollm2-135m-instruct")}
    assert tuned["lr"] == pytest.approx(choice["lr"]), (method, tuned["lr"], choice["lr"])
