"""Each result file records its environment; a rerun of a cell on the same CPU machine reproduces its per-item
values exactly."""

from __future__ import annotations

import pytest
from conftest import tiny_tofu_cells

from e2u.cell.record import cells_table, environment_table


@pytest.mark.parametrize("entry", ["{name: gradient_ascent, hparams: {epochs: 1, batch_size: 2}}",
                                   "{name: rome, hparams: {layer: 1, n_context_templates: 0, v_num_grad_steps: 3, "
                                   "mom2_n_tokens: 500, mom2_corpus_texts: 8}}"])
def test_a_rerun_of_a_cell_reproduces_every_per_item_value_and_its_record(tmp_path, entry):
    from e2u.cell.run import run_cell

    (cell,) = tiny_tofu_cells(tmp_path, f"  - {entry}\n")
    first, second = run_cell(cell), run_cell(cell)
    assert first["after"] == second["after"] and first["before"] == second["before"]
    record = first["reproducibility"]
    assert set(record) == {"packages", "python", "platform", "threads", "model_fingerprint", "data_files", "seed",
                           "device", "wall_s"}
    assert record["packages"]["torch"].startswith("2.") and record["packages"]["e2u"]
    assert record["model_fingerprint"] == second["reproducibility"]["model_fingerprint"] and record["data_files"]
    assert all(len(digest) == 64 for digest in record["data_files"].values())
    assert record["seed"] == cell.seed and record["wall_s"] > 0
    table = cells_table([first])
    assert table.iloc[0]["model fingerprint"] == record["model_fingerprint"]
    versions = environment_table([first, second])
    assert versions.loc["torch", "cells"] == 2
