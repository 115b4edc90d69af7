"""The contracts every plugin implements: encoders, pooling strategies and collators.

Each plugin class has a unique ``name`` within its kind and an attrs ``Config`` class; the recipe table for
the plugin is validated against ``Config`` and the instance is built as ``cls(config, spec, ...)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import attrs
import torch
from torch import nn

from core.errors import DataError

if TYPE_CHECKING:
    from core.data.windows import Windows


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

    @property
    def num_vds(self) -> int:
        return len(self.vd_ids)

    @property
    def num_features(self) -> int:
        return len(self.feature_names)


@attrs.frozen
class Batch:
    """A collated batch in the canonical layout (time before VDs, as the data is stored).

    ``values`` are z-scored and 0 where not observed; masks are bool and True where real.
    """

    values: torch.Tensor  # [B, T, N, F]
    observed: torch.Tensor  # [B, T, N, F]
    covariates: torch.Tensor  # [B, T, K]  (time of day; K may be 0)
    target: torch.Tensor  # [B, H, N] z-scored target feature, 0 where missing
    target_mask: torch.Tensor  # [B, H, N]
    node_mask: torch.Tensor  # [B, N]  False for a VD absent from the sample (padding)
    start: torch.Tensor  # [B] index of the window's first step in the data
    positions_xy: torch.Tensor | None = None  # [N, 2] or [B, N, 2] metres
    step_mask: torch.Tensor | None = None  # [B, T, N] False on time padding; None = no padding

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

    def canonical(self) -> Batch:
        return self


@attrs.frozen
class DistributedBatch:
    """Seed 000's per-VD layout: one entry per VD id (in the dataset's VD order).

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
        )


@attrs.frozen
class EncoderInput:
    """A batch as encoders see it: VDs before time."""

    values: torch.Tensor  # [B, N, T, F]
    observed: torch.Tensor  # [B, N, T, F] bool
    covariates: torch.Tensor  # [B, T, K]
    step_mask: torch.Tensor | None  # [B, N, T] bool, None = every step is real
    node_mask: torch.Tensor | None = None  # [B, N] bool, False for a VD absent from the sample; None = all present

    @classmethod
    def from_batch(cls, batch: Batch) -> EncoderInput:
        step_mask = None if batch.step_mask is None else batch.step_mask.transpose(1, 2)
        return cls(
            values=batch.values.transpose(1, 2),
            observed=batch.observed.transpose(1, 2),
            covariates=batch.covariates,
            step_mask=step_mask,
            node_mask=batch.node_mask,
        )

    def features(self) -> torch.Tensor:
        """[B, N, T, 2F + K]: values, the observation mask, and the covariates broadcast to every VD."""
        b, n, t, _ = self.values.shape
        covariates = self.covariates[:, None].expand(b, n, t, self.covariates.shape[-1])
        return torch.cat([self.values, self.observed.to(self.values.dtype), covariates.to(self.values.dtype)], -1)

    @staticmethod
    def num_features(spec: DatasetSpec) -> int:
        return 2 * spec.num_features + spec.num_covariates


class Encoder(nn.Module):
    """History of every VD → per-VD hidden states ``[B, N, T, E]`` (``E = self.out_dim``).

    Representations of different VDs are never mixed, unless the encoder is spatial by design.
    ``layouts`` names the collator layouts whose batches the encoder can take.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    layouts: ClassVar[frozenset[str]] = frozenset({"centralized", "distributed"})
    out_dim: int

    def __init__(self, config, spec: DatasetSpec):
        super().__init__()
        self.config = config
        self.spec = spec

    def forward(self, inputs: EncoderInput) -> torch.Tensor:
        raise NotImplementedError


class Pooling(nn.Module):
    """Social pooling: ``(hidden [B, N, E], node_mask [B, N]) → social context [B, N, E]``.

    The VD positions (``spec.positions_xy``, static) are given once at construction, so neighbour lists are
    built once per dataset. A VD with no neighbour gets zeros, never NaN.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    uses_positions: ClassVar[bool] = True

    def __init__(self, config, spec: DatasetSpec, dim: int):
        super().__init__()
        self.config = config
        self.dim = dim
        if self.uses_positions:
            require_positions(spec.positions_xy, spec.vd_ids)

    def forward(self, hidden: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def summary(self) -> dict[str, float]:
        """Scalars logged to TensorBoard after every epoch (e.g. a learned radius)."""
        return {}


class Collator:
    """Windows cut from the data → one batch in the collator's ``layout`` (a ``Batch`` or ``DistributedBatch``)."""

    name: ClassVar[str]
    Config: ClassVar[type]
    layout: ClassVar[str]

    def __init__(self, config, spec: DatasetSpec):
        self.config = config
        self.spec = spec

    def __call__(self, windows: Windows) -> Batch:
        raise NotImplementedError


PLUGIN_KINDS: dict[str, type] = {"encoder": Encoder, "pooling": Pooling, "collator": Collator}


def require_positions(
    positions: torch.Tensor | None, vd_ids: tuple[str, ...], user: str = "Social pooling", fallback: str = '[pooling] name = "none"'
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
