"""Pooling ``none``: no social context (zeros), for baselines and spatial-by-design encoders."""

from __future__ import annotations

import torch

from social_xlstm import Pooling, hookimpl


class NoPooling(Pooling):
    name = "none"
    uses_positions = False

    def forward(self, hidden: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(hidden)


@hookimpl
def register_plugins(register):
    register(NoPooling)
