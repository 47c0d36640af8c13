"""Every cell's hyper-parameters checked before the first cell of a study starts (`e2u study run`).

A cell builds its hyper-parameters only after loading its model, so a wrong type (`v_lr: "fast"`) or a layer
beyond the model's depth used to surface minutes into the study. Here each cell's hyper-parameters are built
exactly as the cell will build them (the family defaults, then the cell's own) on a *skeleton* of its model:
the architecture from its `config.json`, instantiated on PyTorch's meta device, so no weight is read or
allocated. Then the names and types (`hparams.build_hparams`), the ranges (each class's `check`) and the
layer indices (`methods.checked_layers`, against the skeleton's blocks) are checked, and every faulty cell is
named in one error.
"""

from __future__ import annotations

from typing import Iterable

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from e2u.cell.params import CellParams
from e2u.errors import E2UError
from e2u.methods import checked_layers, method_hparams
from e2u.model.load import embedded_model_dir, resolve_model


def model_skeleton(name: str) -> torch.nn.Module:
    """The model `name` (embedded, a local directory or a hub id) on the meta device: its modules and
    config, no weights. Remote code is never trusted."""


    source = resolve_model(name)
    location = str(embedded_model_dir()) if source.kind == "embedded" else source.location
    try:
        config = AutoConfig.from_pretrained(location, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        hint = " (no hub access? download it and pass the local directory)" if source.kind == "hub" else ""
        raise E2UError(f"model {name!r}: could not read its config from {source.kind} {location}{hint}: "
                       f"{str(exc).splitlines()[0]}") from None
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=False)


def check_cell(cell: CellParams, skeleton: torch.nn.Module) -> None:
    """Raise an `E2UError` when the cell's hyper-parameters would fail inside it: an unknown name, a wrong type,
    a value out of range, or a layer index the model does not have."""
    hp = method_hparams(cell.method, skeleton, cell.model, cell.hparams)
    check = getattr(hp, "check", None)
    if check is not None:
        check()
    checked_layers(cell.method, skeleton, hp)


def check_cells(cells: Iterable[CellParams]) -> None:
    """`check_cell` for every cell (one skeleton per model); one error naming each faulty cell."""
    skeletons: dict[str, torch.nn.Module] = {}
    faults = []
    for cell in cells:
        try:
            if cell.model not in skeletons:
                skeletons[cell.model] = model_skeleton(cell.model)
            check_cell(cell, skeletons[cell.model])
        except E2UError as exc:
            faults.append(f"{cell.setting}/{cell.cell_id}: {exc}")
    if faults:
        raise E2UError(f"{len(faults)} cell(s) would fail on their hyper-parameters; nothing was run:\n  "
                       + "\n  ".join(faults))
