"""Sparse neighbour lists, built once per dataset from static VD positions: no N×N tensor per batch."""

from __future__ import annotations

import math

import attrs
import numpy as np
import torch
from attrs.validators import gt
from torch import nn

from core.api import DatasetSpec, Pooling, require_positions
from core.errors import DataError
from core.graph import RoadGraph


@attrs.frozen
class NeighbourhoodConfig:
    """Who counts as a neighbour: the ≤ ``max_neighbours`` nearest VDs within ``radius_m`` metres that share
    every attribute named in ``same`` (e.g. ``["direction"]``, read from ``metadata/vd_info``)."""

    radius_m: float = attrs.field(default=1500.0, validator=gt(0.0))
    max_neighbours: int = attrs.field(default=16, validator=gt(0))
    same: tuple[str, ...] = ()


class NeighbourLists(nn.Module):
    """For each VD, up to K neighbours (itself excluded): ``index``, ``distance`` (m), ``offset`` (m, neighbour
    minus VD, [N, K, 2]) and ``valid``, all [N, K].

    Padding slots have ``valid = False`` (and ``index`` 0). Stored as buffers, so they follow the model's
    device and are rebuilt from positions rather than saved in checkpoints.
    """

    def __init__(self, index: torch.Tensor, distance: torch.Tensor, offset: torch.Tensor, valid: torch.Tensor):
        super().__init__()
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("distance", distance, persistent=False)
        self.register_buffer("offset", offset, persistent=False)
        self.register_buffer("valid", valid, persistent=False)

    @classmethod
    def build(
        cls,
        positions: torch.Tensor,
        radius_m: float = math.inf,
        k: int = 16,
        groups: torch.Tensor | None = None,
        chunk: int = 2048,
    ) -> NeighbourLists:
        """The ≤ k nearest VDs within ``radius_m`` of each VD (and, if ``groups`` [N] is given, of the same
        group; group -1 matches nothing); K is trimmed to the largest neighbourhood."""
        positions = positions.double()
        n = positions.shape[0]
        k = max(1, min(k, n - 1))
        dists, idxs = [], []
        for lo in range(0, n, chunk):  # chunks bound memory to chunk × N
            rows = torch.arange(lo, min(lo + chunk, n))
            d = torch.cdist(positions[rows], positions)
            d[torch.arange(len(rows)), rows] = math.inf
            if groups is not None:
                d.masked_fill_((groups[rows, None] != groups[None]) | (groups[rows, None] < 0), math.inf)
            best = d.topk(k, dim=1, largest=False)
            dists.append(best.values)
            idxs.append(best.indices)
        distance, index = torch.cat(dists), torch.cat(idxs)
        valid = distance <= radius_m
        width = max(1, int(valid.sum(1).max()))
        index, distance, valid = index[:, :width].where(valid[:, :width], 0), distance[:, :width], valid[:, :width]
        offset = (positions[index] - positions[:, None]) * valid[..., None]
        return cls(index, distance.where(valid, 0.0).float(), offset.float(), valid)

    @classmethod
    def along_roads(cls, graph: RoadGraph, radius_m: float = math.inf, k: int = 16) -> NeighbourLists:
        """The ≤ k VDs nearest by road (shortest path over the links, either way) within ``radius_m`` of each VD;
        ``offset`` is zero (a road distance has no direction on the map)."""
        found = graph.road_distances(radius_m).tocoo()
        rows, columns, distance = found.row, found.col, found.data
        order = np.lexsort((distance, rows))  # by VD, nearest first
        index, link, valid = link_lists(rows[order], columns[order], graph.num_vds, k)
        distance = torch.as_tensor(distance[order], dtype=torch.float32)[link].where(valid, 0.0)
        return cls(index, distance, torch.zeros(*index.shape, 2), valid)

    @classmethod
    def from_spec(cls, spec: DatasetSpec, config: NeighbourhoodConfig) -> NeighbourLists:
        require_positions(spec.positions_xy, spec.vd_ids)
        return cls.build(spec.positions_xy, config.radius_m, config.max_neighbours, _groups(spec, config.same))

    def gather(self, hidden: torch.Tensor, node_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Neighbours' states ``[B, N, K, E]`` and which are real ``[B, N, K]`` (in the list and present)."""
        neighbours = hidden[:, self.index]
        valid = self.valid[None] & node_mask[:, self.index]
        return neighbours, valid

    def fraction_isolated(self) -> float:
        return float((~self.valid.any(1)).float().mean())


def link_lists(
    rows: np.ndarray, columns: np.ndarray, n: int, k: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs (``rows[e]``, ``columns[e]``) grouped by row, in their order, at most ``k`` per row: ``index [N, K]``
    the columns of each row, ``link [N, K]`` the pairs' positions e and ``valid [N, K]`` (False: padding, whose
    index and link are 0). K is the largest row's count (at least 1)."""
    rows, columns = np.asarray(rows, np.int64), np.asarray(columns, np.int64)
    order = np.argsort(rows, kind="stable")
    counts = np.bincount(rows, minlength=n)
    rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)  # position within its row
    keep = rank < (k if k is not None else len(rows) + 1)
    order, rank = order[keep], rank[keep]
    width = max(1, int(rank.max()) + 1 if len(rank) else 1)
    index, link = np.zeros((n, width), np.int64), np.zeros((n, width), np.int64)
    valid = np.zeros((n, width), bool)
    index[rows[order], rank], link[rows[order], rank], valid[rows[order], rank] = columns[order], order, True
    return torch.from_numpy(index), torch.from_numpy(link), torch.from_numpy(valid)


def _groups(spec: DatasetSpec, same: tuple[str, ...]) -> torch.Tensor | None:
    """One integer per VD for the combination of its ``same`` attributes; -1 where any of them is unknown."""
    if not same:
        return None
    missing = [name for name in same if name not in spec.vd_attributes]
    if missing:
        offered = ", ".join(sorted(spec.vd_attributes)) or "none"
        raise DataError(
            f"neighbour filter 'same' names {missing}, which the data's metadata/vd_info does not carry; "
            f"it has: {offered}"
        )
    keys = list(zip(*(spec.vd_attributes[name] for name in same)))
    codes = {key: i for i, key in enumerate(sorted(set(keys)))}
    return torch.tensor([-1 if "" in key else codes[key] for key in keys])


class EdgeRecordingPooling(Pooling):
    """Base of the strategies that offer per-edge weights for the ``pooling/map``.

    A strategy calls ``record(weights)`` with its per-edge weights ``[B, N, K, ...]`` (e.g. per head); in
    evaluation their mean over every window since the model was last put in eval mode (and over the trailing
    axes) is kept as ``edge_weights`` ``[N, K]``. In training it costs nothing.
    """

    def __init__(self, config, spec: DatasetSpec, dim: int):
        super().__init__(config, spec, dim)
        self.edge_weights: torch.Tensor | None = None
        self._edge_windows = 0

    def train(self, mode: bool = True) -> EdgeRecordingPooling:
        if not mode:  # a new evaluation pass: start a new mean
            self.edge_weights, self._edge_windows = None, 0
        return super().train(mode)

    def record(self, weights: torch.Tensor) -> None:
        if self.training:
            return
        w = weights.detach().float()
        w = w.reshape(*w.shape[:3], -1).mean(3)  # [B, N, K]
        total = w.sum(0) if self.edge_weights is None else self.edge_weights * self._edge_windows + w.sum(0)
        self._edge_windows += w.shape[0]
        self.edge_weights = total / self._edge_windows


class NeighbourPooling(EdgeRecordingPooling):
    """Base of the strategies that pool over ``self.neighbours`` (built once from the dataset's positions)."""

    Config = NeighbourhoodConfig

    def __init__(self, config: NeighbourhoodConfig, spec: DatasetSpec, dim: int):
        super().__init__(config, spec, dim)
        self.neighbours = self.neighbour_lists(spec, config)

    def neighbour_lists(self, spec: DatasetSpec, config: NeighbourhoodConfig) -> NeighbourLists:
        """The lists this strategy pools over (default: by straight-line distance, ``NeighbourLists.from_spec``)."""
        return NeighbourLists.from_spec(spec, config)

    def edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.edge_weights if self.edge_weights is not None else self.neighbours.valid.float()
        return self.neighbours.index, weights * self.neighbours.valid

    def summary(self) -> dict[str, float]:
        return {"pooling/isolated_fraction": self.neighbours.fraction_isolated()}


def weighted_mean(states: torch.Tensor, weights: torch.Tensor, floor: float | None = None) -> torch.Tensor:
    """``Σ_k w_k s_k / Σ_k w_k`` over the neighbour axis of ``states [B, N, K, E]``; zeros where no weight.

    With ``floor`` the denominator is at least ``floor`` (a soft neighbourhood holding less fades out).
    """
    total = weights.sum(2, keepdim=True)
    total = total.clamp_min(floor) if floor is not None else total.clamp_min(torch.finfo(weights.dtype).tiny)
    return torch.einsum("bnk,bnke->bne", weights / total, states)


@torch.compiler.disable  # torch.compile does not trace sparse tensors: the two products run eagerly
def sparse_mean(
    index: torch.Tensor, terms: torch.Tensor, values: torch.Tensor, node_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For every VD i, ``Σ_k e_ik m_j v_j / Σ_k e_ik m_j`` over its list (j = ``index[i, k]``, m: present), as two
    products with one sparse [N, N] matrix of the edge terms ``e [N, K]`` (≥ 0, 0: no edge) shared by the batch,
    never a [B, N, K, E] gather. ``values [B, N, E]``, ``node_mask [B, N]``. Returns the means (zeros where no
    listed VD is present; computed in float32, returned in ``values``' dtype) and the normalisers ``[B, N]``
    (1 where there is nothing to normalise)."""
    n, b = index.shape[0], values.shape[0]
    present = node_mask.float()
    with torch.autocast(values.device.type, enabled=False):  # float32 products, whatever autocast would choose
        terms = terms.float()
        total = EdgeSum.apply(index, terms, present.T).T
        total = total.where(total > 0, 1.0)
        masked = (values.float() * present[..., None]).transpose(0, 1).flatten(1)  # [N, B·E]
        means = EdgeSum.apply(index, terms, masked).view(n, b, -1).transpose(0, 1) / total[..., None]
    return means.to(values.dtype), total


class EdgeSum(torch.autograd.Function):
    """``out[i] = Σ_k w[i, k] x[index[i, k]]`` for ``index``, ``w`` [N, K] and ``x`` [N, D]: a product with the
    sparse [N, N] matrix of the edges, and its gradients in O(N·K·D). (``torch.sparse.mm``'s own gradient for the
    sparse matrix's values is the dense [N, D] x [D, N] product: quadratic in N, 6 s a batch at 8,600 VDs.)"""

    CHUNK_ELEMENTS = 2**22  # the gradient of ``w`` holds this many elements at a time (a gather's chunk, [N, N])
    DENSE_UP_TO = 64  # VDs per edge of a row (N / K) up to which the gradient of ``w`` is one dense [N, N] product

    @staticmethod
    def forward(ctx, index: torch.Tensor, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index, weights, x)
        return torch.sparse.mm(edge_matrix(index, weights), x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor | None, torch.Tensor | None]:
        index, weights, x = ctx.saved_tensors
        grad_weights = grad_x = None
        if ctx.needs_input_grad[1]:
            grad_weights = edge_products(index, grad, x)
        if ctx.needs_input_grad[2]:
            grad_x = torch.sparse.mm(edge_matrix(index, weights, transpose=True), grad)
        return None, grad_weights, grad_x


def edge_products(index: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``[N, K]``: ``<left_i, right_index[i, k]>`` for each edge, from ``left``, ``right`` [N, D]. On a small network
    (N ≤ ``EdgeSum.DENSE_UP_TO`` · K, and N² ≤ ``EdgeSum.CHUNK_ELEMENTS`` so that its memory is a chunk's) the dense
    [N, N] product gathered at the edges, which is cheaper there (2x at 207 VDs); beyond it ``right`` gathered along
    the edges, a chunk of rows at a time: O(N·K·D)."""
    n, k = index.shape
    if n <= EdgeSum.DENSE_UP_TO * k and n * n <= EdgeSum.CHUNK_ELEMENTS:
        return (left @ right.T).gather(1, index)
    rows = max(1, EdgeSum.CHUNK_ELEMENTS // max(1, k * right.shape[1]))
    parts = zip(index.split(rows), left.split(rows))
    return torch.cat([torch.bmm(right[part], left_part[:, :, None])[..., 0] for part, left_part in parts])


def edge_matrix(index: torch.Tensor, weights: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """The sparse [N, N] matrix with ``weights[i, k]`` at (i, ``index[i, k]``) (summed where an edge repeats), or
    its transpose."""
    n = index.shape[0]
    rows = torch.arange(n, device=index.device)[:, None].expand_as(index).flatten()
    edges = torch.stack([index.flatten(), rows] if transpose else [rows, index.flatten()])
    return torch.sparse_coo_tensor(edges, weights.flatten(), (n, n), check_invariants=False)  # valid indices


def safe_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over ``dim`` where ``mask``; exactly 0 elsewhere, and all zeros (not NaN) where nothing is masked in."""
    any_valid = mask.any(dim, keepdim=True)
    scores = scores.masked_fill(~mask, -math.inf).masked_fill(~any_valid, 0.0)
    return torch.softmax(scores, dim) * any_valid
