"""Which layers an editor rewrites: one rule for every editor.

`auto` is MEMIT's critical window: `count` consecutive layers from 0.13 of the depth (Llama-7B: 4..8
of 32; GPT-J: 3..7 of 28); ROME edits one layer, the window's first. Per-family YAML files pin the
layers where they are known (hparams/*.yaml); an index or a list names them directly.
"""

from __future__ import annotations

from e2u.errors import E2UError

WINDOW_START = 0.13


def edited_layers(value, n_layers: int, count: int, name: str = "layers") -> list[int]:
    """The sorted layer indices `value` names ('auto', an index or a list), each checked against the model."""
    if value == "auto":
        start = max(1, round(WINDOW_START * n_layers))
        return list(range(start, min(n_layers, start + count)))
    layers = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(layers, list) or not layers or not all(
            isinstance(layer, int) and not isinstance(layer, bool) for layer in layers):
        raise E2UError(f"hyper-parameter {name}: expected 'auto', a layer index or a list of indices, got {value!r}")
    for layer in layers:
        if not 0 <= layer < n_layers:
            raise E2UError(f"hyper-parameter {name}: layer index {layer} out of range: this model has layers "
                           f"0..{n_layers - 1}")
    return sorted(set(layers))
