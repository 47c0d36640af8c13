"""Where things are inside a decoder-only transformer, found from the module tree, never from a name.

Every locate-then-edit method needs the same four facts: the decoder blocks, each block's MLP,
the MLP's output projection (the matrix ROME, MEMIT and AlphaEdit rewrite; its input is the "key"),
and the final norm.
The rules below hold for Llama, Qwen2, Mistral, Gemma, GPT-2, GPT-J and GPT-NeoX:

* blocks: the shallowest `nn.ModuleList` whose entries share one class and hold parameters;
* MLP: the block child named like an MLP (`mlp`, `ffn`, `feed_forward`), else the child whose
  projections leave the hidden size;
* output projection: the MLP projection that maps a non-hidden width back to the hidden size;
* final norm: the last normalisation module registered beside the blocks;
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from e2u.errors import E2UError

_MLP_NAMES = ("mlp", "ffn", "feed_forward", "feedforward")


def projection_shape(module: nn.Module) -> tuple[int, int] | None:
    """(in_features, out_features) of a Linear or a GPT-2 style Conv1D (weight stored as in x out)."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return module.weight.shape[0], module.nf
    return None


def is_conv1d(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D"


@dataclass(frozen=True)
class Arch:
    """Module paths (with `{}` for the layer index) and sizes of one model."""
    layers: str
    n_layers: int
    hidden_size: int
    mlp: str
    mlp_out: str
    key_size: int
    final_norm: str

    def layer_path(self, index: int) -> str:
        self.check_layer(index)
        return f"{self.layers}.{index}"

    def mlp_path(self, index: int) -> str:
        self.check_layer(index)
        return self.mlp.format(index)

    def mlp_out_path(self, index: int) -> str:
        self.check_layer(index)
        return self.mlp_out.format(index)

    def check_layer(self, index: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.n_layers:
            raise E2UError(f"layer index {index!r} out of range: this model has layers 0..{self.n_layers - 1}")


def find_arch(model: nn.Module) -> Arch:
    """Discover the architecture of `model` from its modules (see the module docstring)."""
    hidden = model.get_input_embeddings().weight.shape[1]
    layers_path, layers = _find_layer_list(model)
    block = layers[0]
    mlp_name = _find_mlp_child(block, hidden)
    mlp = block.get_submodule(mlp_name)
    out_name, key_size = _find_projections(mlp, hidden, f"{layers_path}.0.{mlp_name}")
    final_norm = _find_final_norm(model, layers_path)
    head = model.get_output_embeddings()
    if head is None:
        raise E2UError(f"{type(model).__name__} has no output embeddings: expected a causal LM with an LM head")
    mlp_template = f"{layers_path}.{{}}.{mlp_name}"
    return Arch(
        layers=layers_path,
        n_layers=len(layers),
        hidden_size=hidden,
        mlp=mlp_template,
        mlp_out=f"{mlp_template}.{out_name}",
        key_size=key_size,
        final_norm=final_norm,
    )


def _find_layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    candidates = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        classes = {type(child) for child in module}
        holds_blocks = all(sum(1 for c in child.children() if any(True for _ in c.parameters())) >= 2 for child in module)
        if len(classes) == 1 and holds_blocks:
            candidates.append((name.count("."), -len(module), name, module))
    if not candidates:
        raise E2UError(f"{type(model).__name__}: found no list of decoder blocks (an nn.ModuleList of identical blocks)")
    _, _, name, module = min(candidates, key=lambda c: (c[0], c[1]))
    return name, module


def _find_mlp_child(block: nn.Module, hidden: int) -> str:
    for name, _ in block.named_children():
        if name.lower() in _MLP_NAMES:
            return name
    for name, child in block.named_children():
        shapes = [projection_shape(m) for m in child.modules()]
        if any(s and s[0] != hidden and s[1] == hidden for s in shapes) and any(
            s and s[0] == hidden and s[1] != hidden for s in shapes
        ):
            return name
    raise E2UError(f"{type(block).__name__}: found no MLP child (expected one named {_MLP_NAMES} or one that widens the hidden size)")


def _find_projections(mlp: nn.Module, hidden: int, where: str) -> tuple[str, int]:
    """The MLP's output projection (a non-hidden width back to the hidden size) and that width."""
    outs = [(name, shape[0]) for name, module in mlp.named_modules()
            if (shape := projection_shape(module)) is not None and shape[1] == hidden and shape[0] != hidden]
    if len(outs) != 1:
        raise E2UError(f"{where}: expected exactly one projection back to the hidden size {hidden}, found {[n for n, _ in outs]}")
    return outs[0]


def _find_final_norm(model: nn.Module, layers_path: str) -> str:
    parent_path = layers_path.rpartition(".")[0]
    parent = model.get_submodule(parent_path) if parent_path else model
    norms = [name for name, child in parent.named_children() if "norm" in type(child).__name__.lower() or "ln" in name.lower()]
    if not norms:
        raise E2UError(f"{type(model).__name__}: found no final norm beside {layers_path}")
    return f"{parent_path}.{norms[-1]}" if parent_path else norms[-1]
