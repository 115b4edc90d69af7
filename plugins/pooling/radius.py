"""Pooling ``radius``: aggregate the states of the VDs within ``radius_m`` metres (mean, inverse-distance or max)."""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from attrs.validators import gt

from social_xlstm import NeighbourhoodConfig, NeighbourPooling, hookimpl, weighted_mean


@attrs.frozen
class RadiusConfig(NeighbourhoodConfig):
    aggregation: Literal["mean", "inverse_distance", "max"] = "mean"
    min_distance_m: float = attrs.field(default=50.0, validator=gt(0.0))  # floor for inverse-distance weights


class RadiusPooling(NeighbourPooling):
    name = "radius"
    Config = RadiusConfig

    def forward(self, hidden: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        states, valid = self.neighbours.gather(hidden, node_mask)  # [B, N, K, E], [B, N, K]
        weights = valid.to(hidden.dtype)
        if self.config.aggregation == "inverse_distance":
            weights = weights / self.neighbours.distance.clamp_min(self.config.min_distance_m)
        self.record(weights)
        if self.config.aggregation == "max":
            pooled = states.masked_fill(~valid[..., None], float("-inf")).amax(2)
            return pooled.where(valid.any(2, keepdim=True), 0.0)
        return weighted_mean(states, weights)


@hookimpl
def register_plugins(register):
    register(RadiusPooling)
