"""Encoder ``spin_lite``: SPIN's temporal graph additive attention, light and causal, for forecasting.

SPIN (Marisca, Cini, Alippi, NeurIPS 2022) encodes every (VD, step) point. Its layer structure, kept here:

- a space-time positional encoding ``q[i, t] = MLP(act(W u_t + e_i)) + sinusoid(t)`` from the time-of-day
  covariates ``u``, a learned per-VD embedding ``e_i`` and the step (counted back from the last step, so left
  padding does not shift it);
- the input ``h[i, t] = LayerNorm(MLP(x[i, t]) + q[i, t])`` where ``i`` has a reading at ``t``, else
  ``LayerNorm(q[i, t])``: a missing reading is replaced by its position, never read as a zero;
- ``n_layers`` layers of temporal graph additive attention: ``h ← h + W x · observed``, then
  ``h[i, t] ← LayerNorm(cross + self + W_skip h[i, t])``. ``cross`` attends over the neighbours' points
  ``(j, τ)``, ``τ ∈ t − max_temporal_distance .. t``; ``self`` (``temporal_self_attention``) over i's own points
  ``t − max_temporal_distance .. t − 1``. Additive attention: a message ``m = MLP(W_s h[j, τ] + W_t h[i, t])``
  per pair, weight ``softmax(w · m)``, output ``Σ weight · m``;
- the first ``eta`` layers' cross-attention sees only observed points, later layers every present point (their
  states by then carry what the first layers inferred), after adding a learned per-VD embedding that tells
  observed points from missing ones. Self-attention always sees observed points only.

Differences from the official code (``Graph-Machine-Learning-Group/spin``), all for forecasting: attention is
causal and bounded by ``max_temporal_distance`` (SPIN imputes, attending the whole window both ways); the
cross-attention softmax runs jointly over all (neighbour, step) pairs of a target, a weighted mean, where SPIN
normalises over each neighbour's steps and sums over neighbours; there are no per-layer imputation readouts,
the forecaster's shared head reads the last step. The graph is the padded neighbour lists of
``core.model.neighbours`` (≤ ``max_neighbours`` within ``radius_m``), never N×N. Like SPIN's graph
(``include_self=False``) it has no self-loop: a VD reads its own past through self-attention and its current
step through the skip connection. A step that is time padding, or a VD absent from the sample, is neither
observed nor present: it is nobody's key.

Parameters (``python -m core.plugins``), counted as the SPIN-lite design note ("seed 003", one of the
project's starting notes, not in this repository) counts them (100 VDs, node embeddings included).
Lite defaults, 1 feature, 2 covariates: **8,900** = per-VD embeddings 3 × 100 × 16 (4,800) + positional
encoder 864 + input MLP and norm 352 + 2 layers × 1,442 (input skip 48, cross-attention 1,090, ``W_skip`` 272,
norm 32). That is below the note's "15-20K", which scales its 51K by hidden² and so over-counts the
embeddings (linear in hidden): the official code at hidden 16 with the note's *full* settings (3 layers, eta
2, self-attention, per-layer readouts) has 15.4K, at the lite settings 10.0K (12.2K with self-attention).
The note's full configuration (hidden 32, 3 layers, eta 2, self-attention, 3 features): **43,596**, 14.4% below
the note's 50,918. The official code has 49.8K there; the difference is its per-layer imputation readouts
(3 × MLP(32 → 32 → 3) = 6,633), left here to the forecaster's shared head, less 416 for the observation flags
fed beside the values and the second covariate.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs
import torch
from attrs.validators import ge, gt
from torch import nn
from torch.nn import functional as F

from social_xlstm import (
    DataError,
    DatasetSpec,
    Encoder,
    EncoderInput,
    NeighbourhoodConfig,
    NeighbourLists,
    hookimpl,
    require_positions,
    safe_softmax,
)


def _at_most_layers(instance, attribute, value) -> None:
    if value > instance.n_layers:
        raise ValueError(f"'eta' ({value}) must be at most 'n_layers' ({instance.n_layers})")


@attrs.frozen
class SpinLiteConfig(NeighbourhoodConfig):
    """SPIN's options with the design note's lite defaults; ``radius_m``, ``max_neighbours``, ``same`` pick the
    graph."""

    hidden_size: int = attrs.field(default=16, validator=gt(0))
    n_layers: int = attrs.field(default=2, validator=gt(0))
    eta: int = attrs.field(default=1, validator=[ge(0), _at_most_layers])  # layers attending observed points only
    message_layers: int = attrs.field(default=1, validator=gt(0))
    temporal_self_attention: bool = False
    max_temporal_distance: int = attrs.field(default=3, validator=ge(0))  # steps back a point may attend


def _mlp(sizes: list[int], activation: Callable[[], nn.Module], readout: int | None = None) -> nn.Sequential:
    """``Linear → activation`` between consecutive ``sizes``, then an optional linear ``readout``."""
    layers: list[nn.Module] = []
    for size_in, size_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(size_in, size_out), activation()]
    if readout is not None:
        layers.append(nn.Linear(sizes[-1], readout))
    return nn.Sequential(*layers)


def _node_embedding(n: int, dim: int) -> nn.Parameter:
    bound = 1 / math.sqrt(dim)
    return nn.Parameter(torch.empty(n, dim).uniform_(-bound, bound))


def windows(x: torch.Tensor, d: int) -> torch.Tensor:
    """``[B, T, N, ...] → [B, T, N, d + 1, ...]``: ``x`` at steps ``t − d .. t`` (zeros/False before the first)."""
    padded = torch.cat([x.new_zeros((x.shape[0], d, *x.shape[2:])), x], 1)
    return padded.unfold(1, d + 1, 1).movedim(-1, 3)


def sinusoid(steps: int, dim: int, device: torch.device) -> torch.Tensor:
    """``[T, 1, dim]`` sin/cos encoding of how many steps each step lies before the last one."""
    back = torch.arange(steps - 1, -1, -1, device=device, dtype=torch.float32)[:, None]
    angles = back * torch.exp(torch.arange(0, dim, 2, device=device) * (-math.log(10_000.0) / dim))
    return torch.cat([angles.sin(), angles.cos()], -1)[:, None, :dim]


class PositionalEncoder(nn.Module):
    """SPIN's space-time encoding ``q [B, T, N, H]`` from the covariates ``[B, T, K]`` and a per-VD embedding."""

    def __init__(self, covariates: int, hidden: int, vds: int):
        super().__init__()
        self.time = nn.Linear(covariates, hidden)
        self.node = _node_embedding(vds, hidden)
        self.mlp = _mlp([hidden, hidden, hidden], nn.ReLU, readout=hidden)

    def forward(self, covariates: torch.Tensor) -> torch.Tensor:
        q = self.mlp(F.leaky_relu(self.time(covariates)[:, :, None] + self.node))
        return q + sinusoid(q.shape[1], q.shape[-1], q.device).to(q.dtype)


class AdditiveAttention(nn.Module):
    """SPIN's additive attention of each point over S source points ``gather`` picks for it.

    ``gather`` maps per-point states ``[B, T, N, H]`` to each point's sources ``[B, T, N, S, H]``; ``valid``
    ``[B, T, N, S]`` says which take part. Output ``Σ_s softmax(w · m)_s m_s`` with ``m_s = MLP(W_s h_s + W_t h)``,
    zeros where no source is valid.
    """

    def __init__(self, hidden: int, message_layers: int):
        super().__init__()
        self.source = nn.Linear(hidden, hidden)
        self.target = nn.Linear(hidden, hidden, bias=False)
        self.message = nn.Sequential(
            nn.PReLU(init=0.2), _mlp([hidden] * (message_layers + 1), nn.PReLU, readout=hidden)
        )
        self.gate = nn.Linear(hidden, 1, bias=False)  # a bias would cancel in the softmax

    def forward(
        self, h: torch.Tensor, gather: Callable[[torch.Tensor], torch.Tensor], valid: torch.Tensor
    ) -> torch.Tensor:
        message = self.message(gather(self.source(h)) + self.target(h)[..., None, :])
        weights = safe_softmax(self.gate(message)[..., 0], valid, dim=-1)
        return torch.einsum("btns,btnsh->btnh", weights, message)


class SpinLayer(nn.Module):
    """One temporal graph additive attention layer: ``LayerNorm(cross + self + W_skip h)``."""

    def __init__(self, hidden: int, message_layers: int, self_attention: bool):
        super().__init__()
        self.cross = AdditiveAttention(hidden, message_layers)
        self.self_attention = AdditiveAttention(hidden, message_layers) if self_attention else None
        self.skip = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(
        self, h: torch.Tensor, lists: NeighbourLists, d: int, keys: torch.Tensor, observed: torch.Tensor
    ) -> torch.Tensor:
        """``h [B, T, N, H]``; ``keys`` [B, T, N] the points neighbours may attend, ``observed`` those with a
        reading."""

        def neighbours(x: torch.Tensor) -> torch.Tensor:  # [B, T, N, ...] → [B, T, N, K·(d+1), ...]
            return windows(x, d)[:, :, lists.index].flatten(3, 4)

        out = self.cross(h, neighbours, neighbours(keys) & lists.valid.repeat_interleave(d + 1, 1))
        if self.self_attention is not None:

            def own_past(x: torch.Tensor) -> torch.Tensor:  # [B, T, N, ...] → [B, T, N, d, ...]
                return windows(x, d)[:, :, :, :d]

            out = out + self.self_attention(h, own_past, own_past(observed))
        return self.norm(out + self.skip(h))


class SpinLiteEncoder(Encoder):
    """SPIN-lite: temporal graph additive attention over neighbour lists; masks honoured natively."""

    name = "spin_lite"
    Config = SpinLiteConfig
    honours_time_padding = True  # a padded step is nobody's key
    honours_vd_slots = True  # slots are expanded to all N VDs and back

    def __init__(self, config: SpinLiteConfig, spec: DatasetSpec):
        super().__init__(config, spec)
        require_positions(
            spec.positions_xy, spec.vd_ids, "Encoder 'spin_lite'", '[encoder] name = "lstm" (not spatial)'
        )
        self.neighbours = NeighbourLists.from_spec(spec, config)
        h, n, inputs = config.hidden_size, spec.num_vds, 2 * spec.num_features  # values and observation flags
        self.out_dim = h
        self.position = PositionalEncoder(spec.num_covariates, h, n)
        self.embed = _mlp([inputs, h, h], nn.ReLU)
        self.embed_norm = nn.LayerNorm(h)
        self.skips = nn.ModuleList(nn.Linear(inputs, h) for _ in range(config.n_layers))
        self.layers = nn.ModuleList(
            SpinLayer(h, config.message_layers, config.temporal_self_attention) for _ in range(config.n_layers)
        )
        if config.eta < config.n_layers:  # from layer eta on, observed and missing points are told apart
            self.observed_embedding = _node_embedding(n, h)
            self.missing_embedding = _node_embedding(n, h)

    def forward(self, inputs: EncoderInput) -> torch.Tensor:
        """``[B, M, T, H]`` for the input's VD slots (a batch of fewer slots is expanded to all N VDs and back)."""
        full = inputs.expand(self.spec.num_vds)
        b, n, t, _ = full.values.shape
        if n != self.spec.num_vds:
            raise DataError(
                f"encoder 'spin_lite' was built for {self.spec.num_vds} VDs but the batch has {n}; "
                "its node embeddings and neighbour lists are per VD"
            )
        present = torch.ones(b, n, t, dtype=torch.bool, device=full.values.device)
        if full.step_mask is not None:
            present = present & full.step_mask
        if full.node_mask is not None:
            present = present & full.node_mask[:, :, None]
        observed = full.observed & present[..., None]
        x = torch.cat([full.values * observed, observed.to(full.values.dtype)], -1).transpose(1, 2)  # [B, T, N, 2F]
        point = observed.any(-1).transpose(1, 2)  # [B, T, N] a reading to attend to
        present = present.transpose(1, 2)
        q = self.position(full.covariates.to(x.dtype))
        h = self.embed_norm(torch.where(point[..., None], self.embed(x) + q, q))
        d, eta = self.config.max_temporal_distance, self.config.eta
        for layer_index, (skip, layer) in enumerate(zip(self.skips, self.layers)):
            if layer_index == eta:
                h = h + torch.where(point[..., None], self.observed_embedding, self.missing_embedding)
            h = h + skip(x) * point[..., None]
            h = layer(h, self.neighbours, d, point if layer_index < eta else present, point)
        return inputs.take_slots(h.transpose(1, 2))  # [B, M, T, H]


@hookimpl
def register_plugins(register):
    register(SpinLiteEncoder)
