"""What every method returns (DESIGN section 2): the changed model, its weight deltas, and a log."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class EditResult:
    model: torch.nn.Module
    deltas: dict[str, torch.Tensor] = field(default_factory=dict)
    log: dict = field(default_factory=dict)
