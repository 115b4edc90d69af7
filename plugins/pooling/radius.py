"""Pooling ``radius``: aggregate the states of the VDs within ``radius_m`` metres (mean, inverse-distance or max),
measured in a straight line between positions or, with ``metric = "road"``, along the road graph's links."""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from attrs.validators import gt

from social_xlstm import NeighbourhoodConfig, NeighbourLists, NeighbourPooling, RecipeError, hookimpl, sparse_mean


@attrs.frozen
class RadiusConfig(NeighbourhoodConfig):
    aggregation: Literal["mean", "inverse_distance", "max"] = "mean"
    min_distance_m: float = attrs.field(default=50.0, validator=gt(0.0))  # floor for inverse-distance weights
    metric: Literal["straight", "road"] = "straight"  # road: shortest path over the road graph's links, either way


class RadiusPooling(NeighbourPooling):
    name = "radius"
    Config = RadiusConfig

    @classmethod
    def needs(cls, config: RadiusConfig) -> frozenset[str]:
        return frozenset({"road_graph" if config.metric == "road" else "positions"})

    def neighbour_lists(self, spec, config: RadiusConfig) -> NeighbourLists:
        if config.metric == "straight":
            return super().neighbour_lists(spec, config)
        if config.same:
            raise RecipeError('same filters neighbours by attribute along straight lines only; use metric = "straight"')
        return NeighbourLists.along_roads(spec.road_graph, config.radius_m, config.max_neighbours)

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
