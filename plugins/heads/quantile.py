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
        # quantile i = the median + (gaps @ steps)[i]: the gaps of the levels between the median and level i, added
        # above the median, subtracted below (one matrix product instead of cumulative sums both ways)
        level = torch.arange(len(self.levels))
        gap, to = level[:, None], level[None, :]
        above = (self.median < gap) & (gap <= to)
        below = (to <= gap) & (gap < self.median)
        self.register_buffer("steps", above.float() - below.float(), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, n, _ = features.shape
        raw = self.linear(features).reshape(b, n, self.horizon, len(self.levels))
        quantiles = raw[..., self.median : self.median + 1] + nn.functional.softplus(raw) @ self.steps.to(raw.dtype)
        return quantiles.transpose(1, 2)  # [B, H, N, L]

    def raw_quantiles(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The pinball loss, averaged over the levels: ``[B, H, N]``."""
        error = target[..., None] - output
        return (error * (self.level_values.to(output.dtype) - (error < 0).to(output.dtype))).mean(-1)


@hookimpl
def register_plugins(register):
    register(QuantileHead)
