"""Pooling ``radius``: aggregate the states of the VDs within ``radius_m`` metres (mean, inverse-distance or max)."""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from attrs.validators import gt

from core.api import Pooling
from core.hookspecs import hookimpl
from core.neighbours import NeighbourLists


@attrs.frozen
class RadiusConfig:
    radius_m: float = attrs.field(default=1500.0, validator=gt(0.0))
    max_neighbours: int = attrs.field(default=16, validator=gt(0))
    aggregation: Literal["mean", "inverse_distance", "max"] = "mean"
    min_distance_m: float = attrs.field(default=50.0, validator=gt(0.0))  # floor for inverse-distance weights


class RadiusPooling(Pooling):
    name = "radius"
    Config = RadiusConfig

    def __init__(self, config: RadiusConfig, spec, dim: int):
        super().__init__(config, spec, dim)
        self.neighbours = NeighbourLists.build(spec.positions_xy, config.radius_m, config.max_neighbours)

    def forward(self, hidden: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        states, valid = self.neighbours.gather(hidden, node_mask)  # [B, N, K, E], [B, N, K]
        if self.config.aggregation == "max":
            pooled = states.masked_fill(~valid[..., None], float("-inf")).amax(2)
            return pooled.where(valid.any(2, keepdim=True), 0.0)
        weights = valid.to(hidden.dtype)
        if self.config.aggregation == "inverse_distance":
            weights = weights / self.neighbours.distance.clamp_min(self.config.min_distance_m)
        weights = weights / weights.sum(2, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)
        return (weights[..., None] * states).sum(2)


@hookimpl
def register_plugins(register):
    register(RadiusPooling)
