"""What every unlearning baseline's training shares: `UnlearnHParams`.

The dataclass defaults are the paper's harness (PISTOL; reference/paper-protocol.md) for 7B models: a LoRA
adapter (r 8, alpha 32, dropout 0.05) on every block's projections, AdamW at lr 1e-5 with weight decay 0.01,
batches of 4 forget items (each paired with one retain item), 20 epochs, a linear warm-up over a tenth of the
steps. Values tuned for the embedded model live in `hparams/unlearning.yaml` (shared by every baseline) and
`hparams/<method>.yaml` (one method's), each with the measurement that chose it.
"""

from __future__ import annotations

from dataclasses import dataclass

from e2u.hparams import real_number, whole_number
from e2u.training.trainable import TrainableHParams

MAX_LR = 0.1  # beyond it AdamW steps change a weight by more than a tenth per step: surely a typo
MAX_EPOCHS = 1000


@dataclass
class UnlearnHParams(TrainableHParams):
    """Loss L = forget_coeff * forget term + retain_coeff * retain term (gamma and alpha in open-unlearning)."""
    lr: float = 1e-5
    epochs: int = 20
    batch_size: int = 4  # forget items per micro-batch, each with one retain item
    grad_accumulation: int = 1  # micro-batches per optimiser step
    adapter: str = "lora"
    forget_coeff: float = 1.0
    retain_coeff: float = 1.0
    curve_points: int = 8  # forget/retain NLL measured this many times during training (and at the start); 0: off
    curve_items: int = 8  # forget and retain items the curve measures

    ALIASES = {**TrainableHParams.ALIASES, "gradient_accumulation_steps": "grad_accumulation",
               "gamma": "forget_coeff", "alpha": "retain_coeff"}

    def extra_rules(self) -> dict:
        return {**super().extra_rules(),
                "lr": (lambda v: real_number(v) and 0 < v <= MAX_LR, f"a learning rate in (0, {MAX_LR}]"),
                "epochs": (lambda v: whole_number(v) and 1 <= v <= MAX_EPOCHS, f"an integer in [1, {MAX_EPOCHS}]"),
                "grad_accumulation": (lambda v: whole_number(v) and v >= 1, "an integer >= 1"),
                "forget_coeff": (lambda v: real_number(v) and v >= 0, "a number >= 0"),
                "retain_coeff": (lambda v: real_number(v) and v >= 0, "a number >= 0"),
                "curve_points": (lambda v: whole_number(v) and v >= 0, "an integer >= 0 (0: no curve)"),
                "curve_items": (lambda v: whole_number(v) and v >= 1, "an integer >= 1")}
