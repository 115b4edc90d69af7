"""The contracts every plugin implements: encoders, pooling strategies, collators and output heads.

Each plugin class has a unique ``name`` within its kind and an attrs ``Config`` class (default: no options);
the recipe table for the plugin is validated against ``Config`` and the instance is built as
``cls(config, spec, ...)``. Capability flags (class attributes) say what an encoder honours and what a
collator's batches carry; a recipe whose collator or data needs a capability the encoder lacks is refused when
it loads. ``python -m core.plugins check NAME`` (``social_xlstm.testing``) checks them on generated data.
Plugin authors import all of this from ``social_xlstm``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import attrs
import torch
from torch import nn

from core.calendar import slots_per_day
from core.errors import DataError
from core.graph import RoadGraph
from core.sequence import real_steps


@attrs.frozen
class DatasetSpec:
    """What a plugin may know about the data when it is built (no tensors of the series themselves)."""

    vd_ids: tuple[str, ...]
    feature_names: tuple[str, ...]
    num_covariates: int
    history: int
    horizon: int
    positions_xy: torch.Tensor | None = attrs.field(default=None, eq=False)  # [N, 2] metres
    vd_attributes: dict[str, tuple[str, ...]] = attrs.Factory(dict)  # e.g. {"direction": ("N", "S", ...)}; "" = unknown
    covariate_names: tuple[
        str, ...
    ] = ()  # the covariates' names, in input order, e.g. ("time_of_day_sin", "time_of_day_cos")
    road_graph: RoadGraph | None = attrs.field(default=None, eq=False)  # directed road links between the VDs
    interval: int = 300  # seconds between steps (the data's most common step)

    @property
    def num_vds(self) -> int:
        return len(self.vd_ids)

    @property
    def slots_per_day(self) -> int:
        """Time-of-day slots of a day at the data's steps: 288 for 5-minute steps, 96 for 15-minute ones."""
        return slots_per_day(self.interval)

    @property
    def num_features(self) -> int:
        return len(self.feature_names)


@attrs.frozen
class Batch:
    """A collated batch in the canonical layout (time before VDs, as the data is stored).

    ``values`` are z-scored and 0 where not observed; masks are bool and True where real. The inputs' VD axis
    has M slots: all N VDs in dataset order, or (``vd_index`` set, dynamic padding) each sample's active VDs
    first, padded to the batch's largest active set. Targets and forecasts always cover all N VDs.
    ``future_covariates`` are the calendar of the target steps (the same K columns as ``covariates``), which a
    collator passes on from its ``Windows`` unchanged; ``target_profile`` (None where the data has no profile)
    is the training split's historical profile of the target at the target steps, in the data's units (the
    historical-average baseline's forecast; the base of ``[model] residual = "profile"``).
    """

    values: torch.Tensor  # [B, T, N, F]
    observed: torch.Tensor  # [B, T, N, F]
    covariates: torch.Tensor  # [B, T, K]  (calendar, named in ``DatasetSpec.covariate_names``; K may be 0)
    target: torch.Tensor  # [B, H, N] z-scored target feature, 0 where missing (always all N VDs)
    target_mask: torch.Tensor  # [B, H, N]
    node_mask: torch.Tensor  # [B, M]  False for a VD slot that is padding (the VD is absent from the sample)
    start: torch.Tensor  # [B] index of the window's first step in the data
    positions_xy: torch.Tensor | None = None  # [N, 2] or [B, N, 2] metres
    step_mask: torch.Tensor | None = None  # [B, T, M] False on time padding (left: the last step is real); None = none
    vd_index: torch.Tensor | None = None  # [B, M] the VD in each slot; None = M = N, slot i holds VD i
    future_covariates: torch.Tensor | None = None  # [B, H, K] the covariates of the H target steps (known ahead)
    target_profile: torch.Tensor | None = None  # [B, H, N] the target's historical profile, in the data's units

    def to(self, device: torch.device | str) -> Batch:
        return attrs.evolve(
            self,
            **{
                f.name: value.to(device, non_blocking=True)
                for f in attrs.fields(Batch)
                if isinstance(value := getattr(self, f.name), torch.Tensor)
            },
        )

    @property
    def size(self) -> int:
        return self.values.shape[0]

    @property
    def lengths(self) -> torch.Tensor:
        """[B, M] real (unpadded) history steps of every slot."""
        if self.step_mask is None:
            return self.node_mask.new_full(self.node_mask.shape, self.values.shape[1], dtype=torch.long)
        return self.step_mask.sum(1)

    def canonical(self) -> Batch:
        return self

    def hide_inputs(self, fraction: float, generator: torch.Generator | None = None) -> Batch:
        """The batch with a random ``fraction`` of its observed inputs turned into missing ones (targets kept)."""
        keep = torch.rand(self.observed.shape, generator=generator, device=self.observed.device) >= fraction
        return attrs.evolve(self, values=self.values * keep, observed=self.observed & keep)


@attrs.frozen
class DistributedBatch:
    """The per-VD batch layout (``"distributed"``: spread over VDs, nothing to do with DDP): one entry per VD id
    (in the dataset's VD order).

    The model takes it through ``canonical()``, which stacks the entries into a ``Batch`` (a few ops, no
    copy per sample); every encoder therefore accepts both layouts and computes the same forecast.
    """

    features: dict[str, torch.Tensor]  # vd -> [B, T, F] z-scored, 0 where not observed
    observed: dict[str, torch.Tensor]  # vd -> [B, T, F] bool
    targets: dict[str, torch.Tensor]  # vd -> [B, H]
    target_masks: dict[str, torch.Tensor]  # vd -> [B, H] bool
    vd_masks: dict[str, torch.Tensor]  # vd -> [B] bool, False where the VD is absent from the sample
    positions: dict[str, torch.Tensor] | None  # vd -> [B, T, 2] metres
    covariates: torch.Tensor  # [B, T, K]
    start: torch.Tensor  # [B]
    step_masks: dict[str, torch.Tensor] | None = None  # vd -> [B, T] bool, False on time padding
    future_covariates: torch.Tensor | None = None  # [B, H, K] the covariates of the target steps
    target_profiles: dict[str, torch.Tensor] | None = None  # vd -> [B, H] the target's profile, the data's units

    def to(self, device: torch.device | str) -> DistributedBatch:
        def move(value):
            if isinstance(value, dict):
                return {vd: tensor.to(device, non_blocking=True) for vd, tensor in value.items()}
            return None if value is None else value.to(device, non_blocking=True)

        return DistributedBatch(**{f.name: move(getattr(self, f.name)) for f in attrs.fields(DistributedBatch)})

    @property
    def size(self) -> int:
        return self.covariates.shape[0]

    def canonical(self) -> Batch:
        def stack(entries: dict[str, torch.Tensor], dim: int) -> torch.Tensor:
            return torch.stack(list(entries.values()), dim)

        return Batch(
            values=stack(self.features, 2),
            observed=stack(self.observed, 2),
            covariates=self.covariates,
            target=stack(self.targets, 2),
            target_mask=stack(self.target_masks, 2),
            node_mask=stack(self.vd_masks, 1),
            start=self.start,
            positions_xy=None if self.positions is None else stack(self.positions, 2)[:, -1],  # static: last step
            step_mask=None if self.step_masks is None else stack(self.step_masks, 2),
            future_covariates=self.future_covariates,
            target_profile=None if self.target_profiles is None else stack(self.target_profiles, 2),
        )


@attrs.frozen
class EncoderInput:
    """A batch as encoders see it: M VD slots before time (M = N unless the collator uses VD slots).

    Time padding is on the left (``step_mask`` False), so the last step is real for every present slot; a slot
    with ``node_mask`` False holds no VD. ``future_covariates`` are the calendar of the H steps to forecast
    (known ahead: time of day, day of week, holidays), the same K columns as ``covariates``. Values are z-scored
    and 0 where not ``observed``. Encoders that keep
    weights per VD read ``vd_index`` (``vd_ids()``), or call ``expand`` to get all N VDs in order and
    ``take_slots`` to come back.
    """

    values: torch.Tensor  # [B, M, T, F]
    observed: torch.Tensor  # [B, M, T, F] bool
    covariates: torch.Tensor  # [B, T, K]
    step_mask: torch.Tensor | None = None  # [B, M, T] bool, None = every step is real
    node_mask: torch.Tensor | None = None  # [B, M] bool, None = every slot holds a VD
    vd_index: torch.Tensor | None = None  # [B, M] the VD in each slot, None = slot i holds VD i
    future_covariates: torch.Tensor | None = None  # [B, H, K] the covariates of the target steps

    @classmethod
    @torch.compiler.disable  # torch.compile cannot trace the construction of a frozen attrs class: run it eagerly
    def from_batch(cls, batch: Batch) -> EncoderInput:
        return cls(
            values=batch.values.transpose(1, 2),
            observed=batch.observed.transpose(1, 2),
            covariates=batch.covariates,
            step_mask=None if batch.step_mask is None else batch.step_mask.transpose(1, 2),
            node_mask=batch.node_mask,
            vd_index=batch.vd_index,
            future_covariates=batch.future_covariates,
        )

    def vd_ids(self) -> torch.Tensor:
        """[B, M] the dataset index of the VD in every slot."""
        if self.vd_index is not None:
            return self.vd_index
        b, m = self.values.shape[:2]
        return torch.arange(m, device=self.values.device).expand(b, m)

    def per_vd(self, table: torch.Tensor) -> torch.Tensor:
        """Rows of a per-VD ``table [N, ...]`` for every slot: ``[B, M, ...]``. Through ``F.embedding``, whose
        gradient is the same every run (``table[vd_ids()]``'s backward adds repeated rows in a varying order on
        the CPU, so same-seed runs drift apart)."""
        rows = nn.functional.embedding(self.vd_ids(), table.flatten(1))
        return rows.unflatten(-1, table.shape[1:])

    def take_slots(self, per_vd: torch.Tensor) -> torch.Tensor:
        """``[B, N, ...]`` computed for all VDs (after ``expand``) → ``[B, M, ...]`` for this input's slots."""
        if self.vd_index is None:
            return per_vd
        index = self.vd_index.reshape(*self.vd_index.shape, *(1,) * (per_vd.dim() - 2))
        return per_vd.gather(1, index.expand(-1, -1, *per_vd.shape[2:]))

    @torch.compiler.disable  # as from_batch
    def expand(self, num_vds: int) -> EncoderInput:
        """The same input with all ``num_vds`` VDs in dataset order (absent ones masked out)."""
        if self.vd_index is None:
            return self
        b, _, t = self.values.shape[:3]
        node_mask = self.node_mask if self.node_mask is not None else torch.ones_like(self.vd_index, dtype=torch.bool)
        step_mask = self.step_mask if self.step_mask is not None else node_mask[..., None].expand(-1, -1, t)
        return EncoderInput(
            values=scatter_vds(self.values, self.vd_index, num_vds),
            observed=scatter_vds(self.observed, self.vd_index, num_vds),
            covariates=self.covariates,
            step_mask=scatter_vds(step_mask & node_mask[..., None], self.vd_index, num_vds),
            node_mask=scatter_vds(node_mask, self.vd_index, num_vds),
            future_covariates=self.future_covariates,
        )

    def features(self) -> torch.Tensor:
        """[B, N, T, 2F + K]: values, the observation mask, and the covariates broadcast to every VD."""
        b, n, t, _ = self.values.shape
        covariates = self.covariates[:, None].expand(b, n, t, self.covariates.shape[-1])
        return torch.cat([self.values, self.observed.to(self.values.dtype), covariates.to(self.values.dtype)], -1)

    @staticmethod
    def num_features(spec: DatasetSpec) -> int:
        """The width of ``features()``: an encoder's input size per VD and step."""
        return 2 * spec.num_features + spec.num_covariates


@attrs.frozen
class NoOptions:
    """The default ``Config``: the plugin has no options (its recipe table holds only ``name``)."""


class Encoder(nn.Module):
    """History of every VD slot → per-slot hidden states ``[B, M, T, E]``, or only the last states ``[B, M, E]``
    for an encoder that is not recurrent.

    Built as ``cls(config, spec)`` (``config``: an instance of ``Config``, ``spec``: the ``DatasetSpec``);
    ``__init__`` must set ``self.out_dim = E``. ``forward`` gets an ``EncoderInput`` of M VD slots (M ≤ N; see
    ``EncoderInput``) whose per-step input width is ``EncoderInput.num_features(spec)`` (``features()``).
    Representations of different VDs are never mixed, unless the encoder is spatial by design.

    Capabilities (class attributes, checked by ``python -m core.plugins check NAME``):

    - ``honours_time_padding``: the forecast is the same whatever left time padding (``step_mask`` False) a
      batch carries; padded steps take no part and get no gradient (``causal_over_padding`` does this for a
      causal layer). Needed by collator ``dynamic_padding`` and by ``[data] min_history > 0``.
    - ``honours_vd_slots``: per-VD weights follow the VD in each slot (``vd_index``, ``vd_ids()``, ``expand``);
      needed by collators that use VD slots (``dynamic_padding``). An encoder without per-VD weights honours
      them by reading nothing per VD.
    - layer-wise: subclassing ``LayerwiseEncoder``, needed by ``[model] social = "every_step"|"interleaved"``.

    ``layouts`` names the collator layouts whose batches the encoder can take (``"distributed"``: the per-VD
    batch layout, not DDP).
    """

    name: ClassVar[str]
    Config: ClassVar[type] = NoOptions
    layouts: ClassVar[frozenset[str]] = frozenset({"centralized", "distributed"})
    honours_time_padding: ClassVar[bool] = False
    honours_vd_slots: ClassVar[bool] = False
    out_dim: int

    def __init__(self, config, spec: DatasetSpec):
        super().__init__()
        self.config = config
        self.spec = spec

    def forward(self, inputs: EncoderInput) -> torch.Tensor:
        raise NotImplementedError


class LayerwiseEncoder(Encoder):
    """An encoder that also offers its computation layer by layer, so that the model's social modes
    (``[model] social = "every_step"`` or ``"interleaved"``) can pool between layers.

    ``forward(inputs) == finish(layer(L-1, ... layer(0, embed(inputs)) ...))`` with ``L = num_layers``; every
    intermediate state is ``[B, M, T', E]``, in the input's slot layout and time-aligned with the input's last
    ``T'`` steps (left padding, the last step real; ``T' = 1`` for an encoder that keeps the last step only).
    Each ``layer`` is causal in time and exact under padding: padded steps are zero, take no part in the real steps
    and get no gradient (``core.sequence.causal_over_padding`` does this for a causal layer).
    """

    num_layers: int

    def forward(self, inputs: EncoderInput) -> torch.Tensor:
        return self.run_layers(inputs)

    def run_layers(
        self, inputs: EncoderInput, before_layer: Callable[[int, torch.Tensor], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The layer-wise computation, ``before_layer(index, states)`` (e.g. a social step) applied to the states
        entering each layer."""
        x = self.embed(inputs)
        for index in range(self.num_layers):
            x = self.layer(index, before_layer(index, x) if before_layer else x, inputs)
        return self.finish(x, inputs)

    def embed(self, inputs: EncoderInput) -> torch.Tensor:
        """The states entering the first layer, ``[B, M, T, E]``."""
        raise NotImplementedError

    def layer(self, index: int, x: torch.Tensor, inputs: EncoderInput) -> torch.Tensor:
        """Layer ``index`` on the states ``x [B, M, T, E]``."""
        raise NotImplementedError

    def finish(self, x: torch.Tensor, inputs: EncoderInput) -> torch.Tensor:
        """What follows the last layer (e.g. a final norm); the identity by default."""
        return x


class Pooling(nn.Module):
    """Social pooling: ``(hidden [B, N, E], node_mask [B, N]) → social context [B, N, E]``.

    Built as ``cls(config, spec, dim)`` (``dim = E``, the encoder's ``out_dim``). The VD positions
    (``spec.positions_xy``) and road graph (``spec.road_graph``), both static, are given once at construction, so
    neighbour lists are built once per dataset. ``uses_positions`` and ``uses_road_graph`` say what the pooling
    needs (``needs(config)`` where it depends on the options): a recipe whose data lacks it is refused when it
    loads. An absent VD (``node_mask`` False) takes no part and gets no gradient; a VD with no present neighbour
    gets zeros, never NaN. In the social modes the same plugin sees every time step folded into the batch
    (``[B·T, N, E]``).
    """

    name: ClassVar[str]
    Config: ClassVar[type] = NoOptions
    uses_positions: ClassVar[bool] = True
    uses_road_graph: ClassVar[bool] = False

    def __init__(self, config, spec: DatasetSpec, dim: int):
        super().__init__()
        self.config = config
        self.dim = dim
        needs = self.needs(config)
        if "positions" in needs:
            require_positions(spec.positions_xy, spec.vd_ids)
        if "road_graph" in needs and spec.road_graph is None:
            raise DataError(
                f"pooling '{self.name}' needs a road graph, and the data has none; import the file with --edges or "
                "--adjacency (python -m core.data import-... --help)"
            )

    @classmethod
    def needs(cls, config) -> frozenset[str]:
        """What the data must carry for this pooling with ``config``: ``"positions"``, ``"road_graph"``."""
        return frozenset(
            name for name, used in (("positions", cls.uses_positions), ("road_graph", cls.uses_road_graph)) if used
        )

    def forward(self, hidden: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def summary(self) -> dict[str, float]:
        """Scalars logged to TensorBoard after every epoch (e.g. a learned radius)."""
        return {}

    def edges(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """What the ``pooling/map`` figure draws after every epoch: for each VD, the VDs it pools from
        (``index [N, K]``) and the weight of each edge (``weights [N, K]``, mean over the last validation pass;
        0 = no edge). None (the default) draws no map."""
        return None


@attrs.frozen
class Windows:
    """A batch of windows as cut from the series: the collators' input.

    ``future_covariates`` hold the calendar of the target steps (known ahead), the same K columns as the inputs'
    ``covariates``; a collator passes them on unchanged, with ``target_profile`` (None: the data has none).
    """

    values: torch.Tensor  # [B, T, N, F] z-scored, 0 where missing
    observed: torch.Tensor  # [B, T, N, F] bool
    covariates: torch.Tensor  # [B, T, K]
    target: torch.Tensor  # [B, H, N] z-scored, 0 where missing
    target_mask: torch.Tensor  # [B, H, N] bool
    start: torch.Tensor  # [B]
    future_covariates: torch.Tensor  # [B, H, K] the covariates of the target steps
    lengths: torch.Tensor | None = None  # [B, N] real history steps per VD (0 = inactive); None = all ``T``
    target_profile: torch.Tensor | None = None  # [B, H, N] the target's historical profile, in the data's units

    @property
    def active(self) -> torch.Tensor:
        """[B, N] bool: the VD has a history in this window."""
        if self.lengths is None:
            return torch.ones(self.target.shape[0], self.target.shape[2], dtype=torch.bool)
        return self.lengths > 0

    def step_mask(self) -> torch.Tensor | None:
        """[B, T, N] bool, False on the steps before a VD's history starts (None: fixed-length windows)."""
        return None if self.lengths is None else real_steps(self.lengths, self.values.shape[1])

    def centralized(self, positions_xy: torch.Tensor | None) -> Batch:
        """The windows as a ``centralized`` batch: every VD in its own slot, variable-length histories padded to
        the full history (what the built-in ``centralized`` collator gives)."""
        return Batch(
            values=self.values,
            observed=self.observed,
            covariates=self.covariates,
            target=self.target,
            target_mask=self.target_mask,
            node_mask=self.active,
            start=self.start,
            positions_xy=positions_xy,
            step_mask=self.step_mask(),
            future_covariates=self.future_covariates,
            target_profile=self.target_profile,
        )


class Collator:
    """Windows cut from the data → one batch in the collator's ``layout``: a ``Batch`` (``"centralized"``) or a
    ``DistributedBatch`` (``"distributed"``: per-VD dictionaries; the layout, not multi-process training).

    Built as ``cls(config, spec)``; called with a ``Windows`` (``[B, T, N, ...]``, ``lengths`` per VD when
    windows vary). A collator rearranges, it never changes what a model forecasts. Its batches declare:

    - ``pads_time``: batches may carry left time padding (a ``step_mask``) even for fixed-length windows;
    - ``uses_vd_slots``: the inputs' VD axis may hold M < N slots (``vd_index``, ``node_mask``).
    """

    name: ClassVar[str]
    Config: ClassVar[type] = NoOptions
    layout: ClassVar[str]
    pads_time: ClassVar[bool] = False
    uses_vd_slots: ClassVar[bool] = False

    def __init__(self, config, spec: DatasetSpec):
        self.config = config
        self.spec = spec

    def __call__(self, windows: Windows) -> Batch:
        raise NotImplementedError


def scatter_vds(slots: torch.Tensor, vd_index: torch.Tensor, num_vds: int) -> torch.Tensor:
    """``[B, M, ...]`` slots → ``[B, N, ...]`` in dataset order, zeros (False) for VDs in no slot."""
    index = vd_index.reshape(*vd_index.shape, *(1,) * (slots.dim() - 2)).expand_as(slots)
    return slots.new_zeros((slots.shape[0], num_vds, *slots.shape[2:])).scatter(1, index, slots)


class Head(nn.Module):
    """What the model forecasts for every VD and horizon step, from the fused features ``[B, N, D]`` (each VD's
    last state beside its social context, through ``[model]``'s hidden layer).

    Built as ``cls(config, spec, dim)`` (``dim = D``). ``forward(features)`` gives the head's output in the
    z-scored target's units: ``[B, H, N]`` for a point forecast, or ``[B, H, N, P]`` (P values per forecast, e.g.
    quantiles or a distribution's parameters). The trainer averages ``loss(output, target)`` (elementwise,
    ``[B, H, N]``) over the observed targets, and scores ``point(output)`` (``[B, H, N]``) by MAE. A head that
    forecasts a distribution (``distribution``; ``social_xlstm.DistributionHead``) also gives
    ``quantiles(output)`` at its ``levels`` (``[B, H, N, L]``, ascending in the level, never crossing), scored by
    coverage, width and CRPS.
    """

    name: ClassVar[str]
    Config: ClassVar[type] = NoOptions
    distribution: ClassVar[bool] = False
    levels: tuple[float, ...] = ()  # the quantile levels it forecasts, ascending (a distribution head)

    def __init__(self, config, spec: DatasetSpec, dim: int):
        super().__init__()
        self.config = config
        self.horizon = spec.horizon

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def point(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def quantiles(self, output: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"head '{self.name}' forecasts a point, not quantiles")


PLUGIN_KINDS: dict[str, type] = {"encoder": Encoder, "pooling": Pooling, "collator": Collator, "head": Head}


def capabilities(cls: type) -> dict[str, bool]:
    """The capability flags a plugin class declares, by name (an encoder's ``layerwise``: it subclasses
    ``LayerwiseEncoder``)."""
    if issubclass(cls, Encoder):
        return {
            "honours_time_padding": cls.honours_time_padding,
            "honours_vd_slots": cls.honours_vd_slots,
            "layerwise": issubclass(cls, LayerwiseEncoder),
        }
    if issubclass(cls, Collator):
        return {"pads_time": cls.pads_time, "uses_vd_slots": cls.uses_vd_slots}
    if issubclass(cls, Head):
        return {"distribution": cls.distribution}
    return {"uses_positions": cls.uses_positions, "uses_road_graph": cls.uses_road_graph}


def require_positions(
    positions: torch.Tensor | None,
    vd_ids: tuple[str, ...],
    user: str = "Social pooling",
    fallback: str = '[pooling] name = "none"',
) -> None:
    """Strict mode: social pooling (or a spatial encoder, ``user``) needs a finite ``[N, 2]`` (or ``[B, N, 2]``)
    position for every VD; the error suggests the positions or ``fallback``, a recipe setting that needs none."""
    prefix = f"{user} is enabled but 'positions_xy'"
    hint = f"give every VD 'position_lat'/'position_lon' in metadata/vd_info, or set {fallback}"
    if positions is None:
        raise DataError(f"{prefix} is missing: the data has no VD positions; {hint}")
    if positions.shape[-2:] != (len(vd_ids), 2) or positions.dim() not in (2, 3):
        raise DataError(f"{prefix} has shape {tuple(positions.shape)}, expected [{len(vd_ids)}, 2]; {hint}")
    bad = ~torch.isfinite(positions).all(-1)
    while bad.dim() > 1:
        bad = bad.any(0)
    if bad.any():
        names = [vd_ids[i] for i in bad.nonzero().flatten()[:5].tolist()]
        raise DataError(f"{prefix} is NaN or infinite for {int(bad.sum())} VD(s), e.g. {', '.join(names)}; {hint}")
