"""Pooling ``attention``: VD i's state attends over its neighbours' states (multi-head, relative positions).

Keys are the neighbours' projected states plus a learned encoding φ(Δx, Δy, d) of where the neighbour is
(offsets scaled by ``radius_m``), so the same upstream/downstream geometry is recognised everywhere.
Absent or out-of-list neighbours get weight exactly 0 (``-inf`` before the softmax); a VD with no neighbour
gets zeros, never NaN. Weights sum to 1 over the real neighbours, then dropout.
"""

from __future__ import annotations

import math

import attrs
import torch
from attrs.validators import ge, gt, lt
from torch import nn

from social_xlstm import NeighbourhoodConfig, NeighbourPooling, hookimpl, safe_softmax


@attrs.frozen
class AttentionConfig(NeighbourhoodConfig):
    heads: int = attrs.field(default=4, validator=gt(0))  # must divide the encoder's state size
    dropout: float = attrs.field(default=0.1, validator=[ge(0.0), lt(1.0)])


class AttentionPooling(NeighbourPooling):
    name = "attention"
    Config = AttentionConfig

    def __init__(self, config: AttentionConfig, spec, dim: int):
        super().__init__(config, spec, dim)
        if dim % config.heads:
            raise ValueError(f"'heads' ({config.heads}) must divide the encoder's state size ({dim})")
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.position = nn.Sequential(nn.Linear(3, dim), nn.GELU(), nn.Linear(dim, dim))
        self.output = nn.Linear(dim, dim, bias=False)  # no bias: no neighbour → exactly zero
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        b, n, e = hidden.shape
        h = self.config.heads
        keys_values, valid = self.neighbours.gather(self.key_value(hidden), node_mask)  # [B, N, K, 2E], [B, N, K]
        keys, values = keys_values.chunk(2, -1)
        keys = keys + self.position(self.relative_positions())  # [N, K, E] broadcast over the batch
        k = keys.shape[2]
        query = self.query(hidden).view(b, n, h, e // h)
        scores = torch.einsum("bnhd,bnkhd->bnkh", query, keys.view(b, n, k, h, e // h)) / math.sqrt(e // h)
        weights = safe_softmax(scores, valid[..., None], dim=2)
        self.record(weights)
        pooled = torch.einsum("bnkh,bnkhd->bnhd", self.dropout(weights), values.reshape(b, n, k, h, e // h))
        return self.output(pooled.reshape(b, n, e))

    def relative_positions(self) -> torch.Tensor:
        """``[N, K, 3]``: (Δx, Δy, distance) of each neighbour, in units of ``radius_m``."""
        lists = self.neighbours
        return torch.cat([lists.offset, lists.distance[..., None]], -1) / self.config.radius_m


@hookimpl
def register_plugins(register):
    register(AttentionPooling)
