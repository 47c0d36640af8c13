"""What every method returns (DESIGN section 2): the changed model, its weight deltas, and a log."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class EditResult:
    """`deltas` maps each changed matrix's path to its total change as (d_out, d_in), whatever its stored layout."""

    model: torch.nn.Module
    deltas: dict[str, torch.Tensor] = field(default_factory=dict)
    log: dict = field(default_factory=dict)
