"""Values: the MLP output v* that makes the model emit the target (ROME section 3.1, `compute_v`).

`optimise_value` is the plain one-request loop, the definition. The editors run
`batched_values.optimise_values`, which computes the same thing for several requests in one forward
pass and reuses the tokens before each key site (tests/editing/test_values.py proves the two equal).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from e2u.editing.requests import EditRequest, Site, key_site
from e2u.hparams import CheckedHParams, real_number, whole_number
from e2u.model.hooks import trace
from e2u.model.load import input_device
from e2u.model.prompts import encode_answer


@dataclass
class ValueHParams(CheckedHParams):
    """Value-optimisation settings (names as in the ROME/MEMIT reference code)."""
    v_lr: float = 0.5
    v_num_grad_steps: int = 25
    v_weight_decay: float = 1e-3
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    early_stop_loss: float = 5e-2

    def rules(self) -> dict:
        return {"v_lr": (real_number(self.v_lr) and self.v_lr > 0, "a number > 0"),
                "v_num_grad_steps": (whole_number(self.v_num_grad_steps) and self.v_num_grad_steps >= 1,
                                     "an integer >= 1"),
                "v_weight_decay": (real_number(self.v_weight_decay) and self.v_weight_decay >= 0, "a number >= 0"),
                "clamp_norm_factor": (real_number(self.clamp_norm_factor) and self.clamp_norm_factor > 0,
                                      "a number > 0"),
                "kl_factor": (real_number(self.kl_factor) and self.kl_factor >= 0, "a number >= 0"),
                "early_stop_loss": (real_number(self.early_stop_loss) and self.early_stop_loss >= 0, "a number >= 0"),
                **self.extra_rules()}

    def extra_rules(self) -> dict:
        """A subclass's own fields: {name: (holds, what is expected)}."""
        return {}


@contextmanager
def frozen_parameters(model):
    """Turn off weight gradients for the block (value optimisation needs only delta's)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def essence_site(tokenizer, request: EditRequest) -> Site:
    """ROME's "essence" prompt `{subject} is a`, keyed at the subject's last token (the KL term's prompt)."""
    if not request.subject:
        return key_site(tokenizer, request)
    ids = tokenizer(f"{request.subject} is a")["input_ids"]
    prefix = tokenizer(request.subject)["input_ids"]
    return Site(ids, min(len(prefix), len(ids)) - 1, True)


def optimise_value(model, tokenizer, request: EditRequest, templates: list[str], site_path: str,
                   hp: ValueHParams) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """v* = v0 + delta at `site_path`'s output on the key token, found by Adam on (ROME eq. 4)

        L(delta) = mean_j NLL(target | template_j(prompt))  +  kl_factor * KL(P0(.|essence) || P(.|essence))
                   + v_weight_decay * |delta| / |v0|^2,

    |delta| clamped to clamp_norm_factor * |v0| after each step; stops once L < early_stop_loss.
    delta, v0 and the loss are float32 whatever the model's dtype. Returns (v*, v0, log).
    """
    target = encode_answer(tokenizer, request.target, with_eos=request.eos)
    prompts = [key_site(tokenizer, request, template) for template in templates]
    essence = essence_site(tokenizer, request)
    device = input_device(model)
    delta = torch.zeros(model.get_input_embeddings().weight.shape[1], device=device, dtype=torch.float32,
                        requires_grad=True)
    found: dict[str, torch.Tensor] = {}

    def log_probs(ids: list[int], index: int) -> torch.Tensor:
        """Next-token log-probabilities at every position, with v0 + delta written at `index`."""
        def add_delta(path, output):
            found.setdefault("v0", output[0, index].detach().float().to(device))
            output = output.clone()
            output[0, index] += delta.to(output.device, output.dtype)
            return output

        with trace(model, [site_path], edit_output=add_delta):
            return model(input_ids=torch.tensor([ids], device=device)).logits[0].float().log_softmax(-1).to(device)

    def target_nll(site: Site) -> torch.Tensor:
        first = len(site.ids) - 1  # the last prompt position predicts the first target token
        rows = log_probs(site.ids + target[:-1], site.index)[first : first + len(target)]
        return -rows.gather(1, torch.tensor(target, device=device)[:, None]).mean()

    optimiser = torch.optim.Adam([delta], lr=hp.v_lr)
    history: list[float] = []
    with frozen_parameters(model), torch.enable_grad():
        for _ in range(hp.v_num_grad_steps):
            optimiser.zero_grad()
            nll = torch.stack([target_nll(site) for site in prompts]).mean()
            essence_now = log_probs(essence.ids, essence.index)[essence.index : essence.index + 1]
            essence_before = found.setdefault("essence", essence_now.detach().clone())
            kl = F.kl_div(essence_now, essence_before, log_target=True, reduction="batchmean")
            loss = nll + hp.kl_factor * kl + hp.v_weight_decay * delta.norm() / found["v0"].norm() ** 2  # ROME eq. 4
            history.append(round(loss.item(), 4))
            if loss.item() < hp.early_stop_loss:
                break
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                limit = hp.clamp_norm_factor * found["v0"].norm()
                if delta.norm() > limit:
                    delta.mul_(limit / delta.norm())
    v0 = found["v0"]
    return v0 + delta.detach(), v0, {"loss": history, "steps": len(history), "final_nll": round(nll.item(), 4)}
