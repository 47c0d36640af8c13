"""Trace and edit activations: one context manager over forward hooks (after ROME's `nethook`).

    with trace(model, ["model.layers.4.mlp.down_proj"], retain_input=True, stop=True) as t:
        model(**batch)
    keys = t.inputs["model.layers.4.mlp.down_proj"]

`stop=True` raises inside the deepest traced module's hook, so the layers above it never run: the
second-moment statistics use this to pay for only the layers they need.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
from torch import nn


class StopForward(Exception):
    """Raised by a hook to end the forward pass early; swallowed by `trace`."""


class Traced:
    """What a `trace` block recorded: module inputs and outputs by module path."""

    def __init__(self) -> None:
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}


def _first(value):
    return value[0] if isinstance(value, tuple) else value


@contextmanager
def trace(
    model: nn.Module,
    paths: Sequence[str],
    *,
    retain_input: bool = False,
    retain_output: bool = False,
    edit_output: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
    stop: bool = False,
    detach: bool = True,
) -> Iterator[Traced]:
    """Record (and optionally replace) the first input/output tensor of each module in `paths`.

    `edit_output(path, output)` returns the tensor to use instead of the module's output.
    With `stop`, the forward pass ends after the last of `paths` to run.
    """
    traced = Traced()
    remaining = set(paths)
    handles = []

    def make_hook(path: str):
        def hook(module, args, output):
            if retain_input:
                tensor = _first(args)
                traced.inputs[path] = tensor.detach() if detach else tensor
            if edit_output is not None:
                new = edit_output(path, _first(output))
                output = (new, *output[1:]) if isinstance(output, tuple) else new
            if retain_output:
                tensor = _first(output)
                traced.outputs[path] = tensor.detach() if detach else tensor
            remaining.discard(path)
            if stop and not remaining:
                raise StopForward
            return output

        return hook

    try:
        for path in dict.fromkeys(paths):
            handles.append(model.get_submodule(path).register_forward_hook(make_hook(path)))
        yield traced
    except StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
