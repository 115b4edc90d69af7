"""Pooling ``learned_graph``: a sparse graph whose edges are learned (Graph WaveNet's adaptive adjacency, top-k).

Every VD has a source and a target embedding (``embedding_dim``); the score of the edge i ← j is
s_ij = <src_i, tgt_j> / ``temperature``, for every VD j ≠ i of the whole network. Each VD keeps its ``k``
best-scoring VDs and pools context_i = Σ_j softmax(s_i·)_j V(h_j) over them (V: a value projection without
bias); with ``with_distance`` its distance neighbours (≤ ``max_neighbours`` within ``radius_m``, sharing
``same``), and with ``with_road`` its road neighbours (linked either way in the road graph), are always in the
list too, besides k learned ones: road links plus learned long-range edges. Absent VDs get weight exactly 0, a
VD with no present neighbour gets zeros. In training each VD also tries ``explore`` VDs drawn at random: the top-k
alone would never try an edge it does not hold (no gradient reaches it), so a useful VD far down the
ranking could not be found.

No N×N tensor is kept: the top-k is chosen without gradient, scoring a chunk of rows × N at a time, and the
kept scores are recomputed differentiably as [N, K] dot products, so both embeddings learn; a batch costs two
products with one sparse [N, N] matrix of N·K edges, shared by the batch. The choice is made again whenever the
embeddings have changed (after every optimizer step: one chunked N × N score pass without batch axis) and
otherwise reused (accumulated micro-batches, evaluation).
"""

from __future__ import annotations

import math

import attrs
import numpy as np
import torch
from attrs.validators import ge, gt, lt
from torch import nn

from social_xlstm import (
    EdgeRecordingPooling,
    NeighbourhoodConfig,
    NeighbourLists,
    hookimpl,
    link_lists,
    safe_softmax,
    sparse_mean,
)


@attrs.frozen
class LearnedGraphConfig(NeighbourhoodConfig):
    k: int = attrs.field(default=8, validator=gt(0))  # learned neighbours per VD, chosen from the whole network
    embedding_dim: int = attrs.field(default=16, validator=gt(0))  # size of the source and target embeddings
    temperature: float = attrs.field(default=1.0, validator=gt(0.0))  # softmax(s / temperature) over the kept VDs
    with_distance: bool = (
        False  # also pool from the distance neighbours (radius_m, max_neighbours, same; needs positions)
    )
    with_road: bool = False  # also pool from the VDs linked to it in the road graph (either way; needs a road graph)
    explore: int = attrs.field(default=2, validator=ge(0))  # training only: random VDs each VD also tries per step
    dropout: float = attrs.field(default=0.0, validator=[ge(0.0), lt(1.0)])  # training: edges dropped per step


class LearnedGraphPooling(EdgeRecordingPooling):
    name = "learned_graph"
    Config = LearnedGraphConfig
    uses_positions = False  # only ``with_distance`` needs them, and then checks them when built

    @classmethod
    def needs(cls, config: LearnedGraphConfig) -> frozenset[str]:
        return frozenset(
            need for need, used in (("positions", config.with_distance), ("road_graph", config.with_road)) if used
        )

    def __init__(self, config: LearnedGraphConfig, spec, dim: int, chunk_elements: int = 2**24):
        super().__init__(config, spec, dim)
        n = spec.num_vds
        self.k = min(config.k, n - 1)
        self.explore = min(config.explore, n - 1)
        self.chunk_elements = chunk_elements
        scale = config.embedding_dim**-0.25  # scores start with unit variance
        self.source = nn.Parameter(torch.randn(n, config.embedding_dim) * scale)
        self.target = nn.Parameter(torch.randn(n, config.embedding_dim) * scale)
        self.value = nn.Linear(dim, dim, bias=False)  # no bias: no neighbour → exactly zero
        self.dropout = nn.Dropout(config.dropout)
        self.distance = NeighbourLists.from_spec(spec, config) if config.with_distance else None
        road_index, road_valid = road_neighbours(spec.road_graph) if config.with_road else (None, None)
        self.register_buffer("road_index", road_index, persistent=False)
        self.register_buffer("road_valid", road_valid, persistent=False)
        positions = spec.positions_xy
        known = positions is not None and positions.shape == (n, 2) and bool(torch.isfinite(positions).all())
        self.register_buffer("positions", positions.float() if known else None, persistent=False)
        self.edge_index: torch.Tensor | None = None  # the lists ``edge_weights`` belong to
        self._chosen: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # embeddings, index, listed

    def forward(self, hidden: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        """The softmax over each VD's present kept VDs: context_i = Σ_j e_ij m_j V(h_j) / Σ_j e_ij m_j with
        e_ij = exp(s_ij − max) and m the present VDs (``sparse_mean``)."""
        index, listed = self.candidates()  # [N, C]
        if self.training and self.explore:
            index, listed = self.with_random_candidates(index, listed)
        if index.shape[1] == 0:  # a network of one VD
            return torch.zeros_like(hidden)
        scores = self.scores(index).masked_fill(~listed, -math.inf)
        shift = scores.amax(1, keepdim=True).clamp_min(-1e30).detach()  # a row's best: exp never overflows
        terms = self.dropout(torch.exp(scores - shift))  # [N, C]; 0 off the lists; dropout drops edges per step
        context, total = sparse_mean(index, terms, self.value(hidden), node_mask)
        if not self.training:
            self.edge_index = index
            self.record(terms * node_mask[:, index] / total[..., None])  # the weights [B, N, C]
        return context

    def scores(self, index: torch.Tensor) -> torch.Tensor:
        """``[N, C]`` s_ij = <src_i, tgt_j> / temperature of the edges i ← index[i, c], differentiable."""
        targets = nn.functional.embedding(index, self.target)  # not target[index]: see EncoderInput.per_vd
        return (self.source[:, None] * targets).sum(-1) / self.config.temperature

    @torch.compiler.disable
    def candidates(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each VD's list ``[N, C]``: its k learned VDs, then (``with_distance``) its distance neighbours, and
        which entries are real (False: padding). Chosen again only when the embeddings differ from the last
        choice's (compared by value: any optimizer, a loaded checkpoint, a device move)."""
        embeddings = torch.cat([self.source, self.target], 1).detach()
        chosen = self._chosen
        if chosen is None or chosen[0].device != embeddings.device or not torch.equal(chosen[0], embeddings):
            self._chosen = chosen = (embeddings, *self._choose())
        return chosen[1], chosen[2]

    def with_random_candidates(self, index: torch.Tensor, listed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The lists plus ``explore`` VDs per VD drawn uniformly from the rest of the network (one already in
        the list, or drawn twice, is padding): an edge outside the top-k gets tried and can earn its place."""
        n = index.shape[0]
        rows = torch.arange(n, device=index.device)[:, None]
        extra = (rows + 1 + torch.randint(n - 1, (n, self.explore), device=index.device)) % n  # never the VD itself
        listed_already = (extra[:, :, None] == index.where(listed, rows)[:, None]).any(-1)
        drawn_before = (extra[:, :, None] == extra[:, None]).tril(-1).any(-1)
        return torch.cat([index, extra], 1), torch.cat([listed, ~(listed_already | drawn_before)], 1)

    def _choose(self) -> tuple[torch.Tensor, torch.Tensor]:
        fixed = []
        if self.distance is not None:
            fixed.append((self.distance.index, self.distance.valid))
        if self.road_index is not None:
            fixed.append((self.road_index, self.road_valid))
        if not fixed:
            return top_k_scores(self.source, self.target, self.k, chunk_elements=self.chunk_elements)
        index, valid = (torch.cat(part, 1) for part in zip(*fixed))
        rows = torch.arange(len(index), device=index.device)[:, None]
        excluded = index.where(valid, rows)  # padding points at the VD itself, excluded anyway
        learned, learned_valid = top_k_scores(self.source, self.target, self.k, excluded, self.chunk_elements)
        return torch.cat([learned, index], 1), torch.cat([learned_valid, valid], 1)

    def edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The lists and mean weights of the last evaluation pass; before one, the current lists with the
        weights every VD would give them with all VDs present."""
        if self.edge_weights is not None:
            return self.edge_index, self.edge_weights
        index, listed = self.candidates()
        with torch.no_grad():
            return index, safe_softmax(self.scores(index), listed, dim=1)

    def summary(self) -> dict[str, float]:
        """How far the learned edges reach (with positions): the median length in metres of the learned edges
        (``pooling/learned_reach_m``) and the share of them within ``radius_m`` (``pooling/learned_within_radius``),
        both weighted by the edge weights of ``edges()``, so the edges the VDs rely on count, not the ones they
        keep with a weight near 0. Distance neighbours are not counted."""
        index, weights = (part[:, : self.k] for part in self.edges())
        if self.positions is None or not weights.sum() > 0:
            return {}
        length = (self.positions[index] - self.positions[:, None]).norm(dim=-1).flatten()
        weights = weights.flatten() / weights.sum()
        order = length.argsort()
        below_half = int((weights[order].cumsum(0) < 0.5).sum())
        return {
            "pooling/learned_reach_m": float(length[order][min(below_half, len(order) - 1)]),
            "pooling/learned_within_radius": float(weights[length <= self.config.radius_m].sum()),
        }


def road_neighbours(graph) -> tuple[torch.Tensor, torch.Tensor]:
    """Each VD's road neighbours, linked either way (each once): ``index [N, K]`` and ``valid [N, K]``."""
    pairs = np.unique(np.stack([np.r_[graph.source, graph.target], np.r_[graph.target, graph.source]], 1), axis=0)
    index, _, valid = link_lists(pairs[:, 0], pairs[:, 1], graph.num_vds)
    return index, valid


@torch.no_grad()
def top_k_scores(
    source: torch.Tensor,
    target: torch.Tensor,
    k: int,
    excluded: torch.Tensor | None = None,
    chunk_elements: int = 2**24,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row i, the k columns j ≠ i (and not in ``excluded[i]``) with the largest <source_i, target_j>:
    ``index [N, k]`` and ``valid [N, k]`` (False where fewer than k columns are left). Rows are scored
    ``chunk_elements // N`` at a time, so memory stays linear in N."""
    n = source.shape[0]
    rows_per_chunk = max(1, chunk_elements // n)
    indices, valids = [], []
    for lo in range(0, n, rows_per_chunk):
        rows = torch.arange(lo, min(lo + rows_per_chunk, n), device=source.device)
        scores = source[rows] @ target.T
        scores[torch.arange(len(rows), device=source.device), rows] = -math.inf
        if excluded is not None:
            scores.scatter_(1, excluded[rows], -math.inf)
        best = scores.topk(k, dim=1)
        indices.append(best.indices)
        valids.append(best.values.isfinite())
    index, valid = torch.cat(indices), torch.cat(valids)
    return index.where(valid, torch.arange(n, device=source.device)[:, None]), valid


@hookimpl
def register_plugins(register):
    register(LearnedGraphPooling)
