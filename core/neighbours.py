"""Sparse neighbour lists, built once per dataset from static VD positions: no N×N tensor per batch."""

from __future__ import annotations

import math

import torch
from torch import nn


class NeighbourLists(nn.Module):
    """For each VD, up to K neighbours (itself excluded): ``index``, ``distance`` (m) and ``valid``, all [N, K].

    Padding slots have ``valid = False`` (and ``index`` 0). Stored as buffers, so they follow the model's
    device and are rebuilt from positions rather than saved in checkpoints.
    """

    def __init__(self, index: torch.Tensor, distance: torch.Tensor, valid: torch.Tensor):
        super().__init__()
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("distance", distance, persistent=False)
        self.register_buffer("valid", valid, persistent=False)

    @classmethod
    def build(cls, positions: torch.Tensor, radius_m: float = math.inf, k: int = 16, chunk: int = 2048) -> NeighbourLists:
        """The ≤ k nearest VDs within ``radius_m`` of each VD; K is trimmed to the largest neighbourhood."""
        positions = positions.double()
        n = positions.shape[0]
        k = max(1, min(k, n - 1))
        dists, idxs = [], []
        for lo in range(0, n, chunk):  # chunks bound memory to chunk × N
            d = torch.cdist(positions[lo : lo + chunk], positions)
            d[torch.arange(d.shape[0]), torch.arange(lo, lo + d.shape[0])] = math.inf
            best = d.topk(k, dim=1, largest=False)
            dists.append(best.values)
            idxs.append(best.indices)
        distance, index = torch.cat(dists), torch.cat(idxs)
        valid = distance <= radius_m
        width = max(1, int(valid.sum(1).max()))
        index, distance, valid = index[:, :width], distance[:, :width], valid[:, :width]
        return cls(index.where(valid, 0), distance.where(valid, 0.0).float(), valid)

    def gather(self, hidden: torch.Tensor, node_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Neighbours' states ``[B, N, K, E]`` and which are real ``[B, N, K]`` (in the list and present)."""
        neighbours = hidden[:, self.index]
        valid = self.valid[None] & node_mask[:, self.index]
        return neighbours, valid

    def fraction_isolated(self) -> float:
        return float((~self.valid.any(1)).float().mean())
