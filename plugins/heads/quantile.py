"""Head ``quantile``: the forecast's quantiles at ``levels``, trained by the pinball loss, non-crossing by
construction (the median plus positive gaps, added upwards and subtracted downwards)."""

from __future__ import annotations

import torch
from torch import nn

from social_xlstm import DistributionHead, hookimpl


class QuantileHead(DistributionHead):
    name = "quantile"

    def __init__(self, config, spec, dim):
        super().__init__(config, spec, dim)
        self.median = self.levels.index(0.5)
        self.linear = nn.Linear(dim, spec.horizon * len(self.levels))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, n, _ = features.shape
        raw = self.linear(features).reshape(b, n, self.horizon, len(self.levels)).transpose(1, 2)  # [B, H, N, L]
        gaps = nn.functional.softplus(raw)
        centre = raw[..., self.median : self.median + 1]
        above = centre + gaps[..., self.median + 1 :].cumsum(-1)
        below = centre - gaps[..., : self.median].flip(-1).cumsum(-1).flip(-1)
        return torch.cat([below, centre, above], -1)

    def raw_quantiles(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The pinball loss, averaged over the levels: ``[B, H, N]``."""
        error = target[..., None] - output
        levels = self.level_values.to(output.dtype)
        return torch.maximum(levels * error, (levels - 1) * error).mean(-1)


@hookimpl
def register_plugins(register):
    register(QuantileHead)
