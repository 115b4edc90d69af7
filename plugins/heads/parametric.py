"""Heads ``gaussian`` and ``laplace``: a location and a scale per VD and horizon step, trained by the negative
log-likelihood; their quantiles are the distribution's, the point forecast its median (the location)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import distributions, nn

from social_xlstm import DistributionHead, hookimpl

MIN_SCALE = 1e-3  # z units: a scale that cannot collapse to 0 (an infinite likelihood)


class ParametricHead(DistributionHead):
    family: ClassVar[type[distributions.Distribution]]

    def __init__(self, config, spec, dim):
        super().__init__(config, spec, dim)
        self.linear = nn.Linear(dim, spec.horizon * 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, H, N, 2]``: location and scale."""
        b, n, _ = features.shape
        loc, scale = self.linear(features).reshape(b, n, self.horizon, 2).transpose(1, 2).unbind(-1)
        return torch.stack([loc, nn.functional.softplus(scale) + MIN_SCALE], -1)

    def distribution_of(self, output: torch.Tensor) -> distributions.Distribution:
        return self.family(output[..., 0], output[..., 1], validate_args=False)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -self.distribution_of(output).log_prob(target)

    def raw_quantiles(self, output: torch.Tensor) -> torch.Tensor:
        levels = self.level_values.to(output.dtype)
        return self.family(output[..., :1], output[..., 1:], validate_args=False).icdf(levels)


class GaussianHead(ParametricHead):
    """Head ``gaussian``: a normal distribution (mean, standard deviation) per VD and horizon step, trained by its
    negative log-likelihood."""

    name = "gaussian"
    family = distributions.Normal


class LaplaceHead(ParametricHead):
    """Head ``laplace``: a Laplace distribution (median, scale) per VD and horizon step, trained by its negative
    log-likelihood (the absolute error, weighted by the scale); heavier tails than ``gaussian``."""

    name = "laplace"
    family = distributions.Laplace


@hookimpl
def register_plugins(register):
    register(GaussianHead)
    register(LaplaceHead)
