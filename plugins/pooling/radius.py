"""Pooling ``radius``: aggregate the states of the VDs within ``radius_m`` metres (mean, inverse-distance or max)."""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from attrs.validators import gt

from social_xlstm import NeighbourhoodConfig, NeighbourPooling, hookimpl, sparse_mean


@attrs.frozen
class RadiusConfig(NeighbourhoodConfig):
    aggregation: Literal["mean", "inverse_distance", "max"] = "mean"
    min_distance_m: float = attrs.field(default=50.0, validator=gt(0.0))  # floor for inverse-distance weights


class RadiusPooling(NeighbourPooling):
    name = "radius"
    Config = RadiusConfig

    def forward(self, hidden: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        lists = self.neighbours
        terms = lists.valid.float()  # [N, K]: the listed VDs, weighted 1 / distance for inverse_distance
        if self.config.aggregation == "inverse_distance":
            terms = terms / lists.distance.clamp_min(self.config.min_distance_m)
        if not self.training:  # (record keeps evaluation batches only: no [B, N, K] weights while training)
            self.record(terms * node_mask[:, lists.index])
        if self.config.aggregation == "max":
            states, valid = lists.gather(hidden, node_mask)  # [B, N, K, E], [B, N, K]
            pooled = states.masked_fill(~valid[..., None], float("-inf")).amax(2)
            return pooled.where(valid.any(2, keepdim=True), 0.0)
        return sparse_mean(lists.index, terms, hidden, node_mask)[0]


@hookimpl
def register_plugins(register):
    register(RadiusPooling)
