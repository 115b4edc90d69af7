"""Pooling ``learnable_radius``: a soft neighbourhood whose radius R (metres) is learned.

Each candidate within the hard outer bound ``radius_m`` gets weight w = σ((R − d) / τ); the context is
Σ w·h / max(Σ w, 1): a weighted mean, fading out when the soft neighbourhood holds less than one VD. R is
kept positive as exp(log R), starts at ``initial_radius_m``, and is logged to TensorBoard every epoch.
"""

from __future__ import annotations

import math

import attrs
import torch
from attrs.validators import gt
from torch import nn

from social_xlstm import NeighbourhoodConfig, NeighbourPooling, hookimpl, weighted_mean


def _inside_bound(instance, attribute, value) -> None:
    if value > instance.radius_m:
        raise ValueError(
            f"'initial_radius_m' ({value}) must not exceed the outer bound 'radius_m' ({instance.radius_m})"
        )


@attrs.frozen
class LearnableRadiusConfig(NeighbourhoodConfig):
    radius_m: float = attrs.field(default=3000.0, validator=gt(0.0))  # hard outer bound on candidates
    initial_radius_m: float = attrs.field(default=1500.0, validator=[gt(0.0), _inside_bound])
    softness_m: float = attrs.field(default=200.0, validator=gt(0.0))  # τ


class LearnableRadiusPooling(NeighbourPooling):
    name = "learnable_radius"
    Config = LearnableRadiusConfig

    def __init__(self, config: LearnableRadiusConfig, spec, dim: int):
        super().__init__(config, spec, dim)
        self.log_radius = nn.Parameter(torch.tensor(math.log(config.initial_radius_m)))

    @property
    def radius_m(self) -> torch.Tensor:
        return self.log_radius.exp()

    def forward(self, hidden: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        states, valid = self.neighbours.gather(hidden, node_mask)
        weights = torch.sigmoid((self.radius_m - self.neighbours.distance) / self.config.softness_m) * valid
        self.record(weights)
        return weighted_mean(states, weights.to(hidden.dtype), floor=1.0)

    def summary(self) -> dict[str, float]:
        return super().summary() | {"pooling/radius_m": self.radius_m.item()}


@hookimpl
def register_plugins(register):
    register(LearnableRadiusPooling)
