"""Pooling ``none``: no social context (zeros), for baselines and spatial-by-design encoders."""

from __future__ import annotations

import attrs
import torch

from core.api import Pooling
from core.hookspecs import hookimpl


@attrs.frozen
class NoPoolingConfig:
    pass


class NoPooling(Pooling):
    name = "none"
    Config = NoPoolingConfig
    uses_positions = False

    def forward(self, hidden: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(hidden)


@hookimpl
def register_plugins(register):
    register(NoPooling)
