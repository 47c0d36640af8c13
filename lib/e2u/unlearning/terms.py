"""The pieces every unlearning loss is made of (reference/unlearning.md, "Loss definitions").

`batch` is a right-padded prompt + answer batch whose labels cover the answer (`batches.py`). NLL sums run over
the answer tokens; the LM head runs only at the positions that predict one (`training.shortcuts.answer_logits`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from e2u.model.hooks import trace
from e2u.training.shortcuts import answer_logits


def token_nll(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(NLL of each answer token, the row it belongs to): -log p(y_t | x, y_<t), flattened row by row."""
    logits, targets = answer_logits(model, batch)
    labels = batch["labels"]
    rows = (labels[:, 1:] != -100).nonzero()[:, 0]
    return F.cross_entropy(logits.float(), targets, reduction="none"), rows


def mean_nll(model, batch) -> torch.Tensor:
    """Mean NLL over every answer token of the batch: HF's `outputs.loss`."""
    nll, _ = token_nll(model, batch)
    return nll.mean()


def ascent(model, forget) -> dict[str, torch.Tensor]:
    """Gradient ascent's forget term, -NLL(forget), with the NLL itself logged beside it (GA, GD, KL)."""
    nll = mean_nll(model, forget.answer)
    return {"forget": -nll, "forget_nll": nll.detach()}


def sequence_nll(model, batch, normalise: bool = False) -> torch.Tensor:
    """Per row, the summed answer NLL  L(y | x) = -sum_t log p(y_t | x, y_<t)  (divided by |y| if `normalise`)."""
    nll, rows = token_nll(model, batch)
    n_rows = batch["labels"].shape[0]
    total = torch.zeros(n_rows, dtype=nll.dtype, device=nll.device).index_add_(0, rows, nll)
    if not normalise:
        return total
    return total / torch.bincount(rows, minlength=n_rows).clamp(min=1).to(total.dtype)


def kl_to_reference(model, reference, batch) -> torch.Tensor:
    """KL(p_ref || p_theta) at every position of the batch, padding included, summed over the vocabulary and
    averaged over positions: `kl_div(log p_theta, log p_ref, log_target=True, reduction="batchmean")` on the
    flattened logits, as TOFU's and PISTOL's KL term. `reference()` gives the frozen model (`reference.py`)."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False}
    current = F.log_softmax(model(**inputs).logits.float(), dim=-1).flatten(0, 1)
    with reference() as frozen:
        target = F.log_softmax(frozen(**inputs).logits.float(), dim=-1).flatten(0, 1)
    return F.kl_div(current, target, reduction="batchmean", log_target=True)


def reference_sequence_nll(reference, batch, normalise: bool = False) -> torch.Tensor:
    """`sequence_nll` under the frozen reference model, without gradients."""
    with reference() as frozen:
        return sequence_nll(frozen, batch, normalise)


def block_output(model, batch, path: str, grad: bool = True) -> torch.Tensor:
    """The hidden states leaving module `path` (a decoder block), the forward pass stopped there."""
    with torch.set_grad_enabled(grad), trace(model, [path], retain_output=True, stop=True, detach=not grad) as seen:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    return seen.outputs[path]


def answer_token_mask(batch) -> torch.Tensor:
    """(B, T) True at the answer tokens themselves (not the positions predicting them)."""
    return batch["labels"] != -100


def masked_mse(hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over hidden dimensions of (h - target)^2, summed over the masked tokens, divided by their count."""
    per_token = (hidden.float() - target.float()).pow(2).mean(dim=-1)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)
