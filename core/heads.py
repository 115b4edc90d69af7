"""The heads' common parts: ``PointHead`` (the default every forecaster gets), and for heads that forecast a
distribution their options (levels, calibration), their calibration offsets and the central intervals their levels
make."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from torch import nn

from core.api import DatasetSpec, Head

DEFAULT_LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


class PointHead(Head):
    """Head ``point``: one number per VD and horizon step, trained by MAE."""

    name = "point"

    def __init__(self, config, spec: DatasetSpec, dim: int):
        super().__init__(config, spec, dim)
        self.linear = nn.Linear(dim, spec.horizon)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features).transpose(1, 2)  # [B, N, D] → [B, H, N]

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (output - target).abs()


def _levels_are_valid(instance, attribute, levels: tuple[float, ...]) -> None:
    if not all(0.0 < level < 1.0 for level in levels):
        raise ValueError(f"'levels' must lie strictly between 0 and 1: {list(levels)}")
    if any(b <= a for a, b in zip(levels, levels[1:], strict=False)):
        raise ValueError(f"'levels' must be strictly increasing: {list(levels)}")
    if 0.5 not in levels:
        raise ValueError(f"'levels' must include 0.5, the median that MAE scores: {list(levels)}")


@attrs.frozen
class DistributionConfig:
    """``[head]`` of a distribution head: the quantile ``levels`` it forecasts and scores (each symmetric pair,
    e.g. 0.05 and 0.95, makes a central interval: 90%), and ``calibrate``: conformal offsets from the validation
    split after training (``core.training.calibration``)."""

    levels: tuple[float, ...] = attrs.field(default=DEFAULT_LEVELS, validator=_levels_are_valid)
    calibrate: bool = False


class DistributionHead(Head):
    """A head that forecasts a distribution. Subclasses implement ``forward``, ``loss`` and ``raw_quantiles``
    (``[B, H, N, L]`` at ``self.levels``, ascending); ``quantiles`` adds the calibration ``offsets`` (a buffer
    ``[H, L]`` in z units, saved with the model; zero until calibrated) and keeps them ascending; ``point`` is
    the median."""

    Config: ClassVar[type] = DistributionConfig
    distribution: ClassVar[bool] = True

    def __init__(self, config: DistributionConfig, spec: DatasetSpec, dim: int):
        super().__init__(config, spec, dim)
        self.levels = tuple(config.levels)
        self.register_buffer("level_values", torch.tensor(self.levels), persistent=False)
        self.register_buffer("offsets", torch.zeros(spec.horizon, len(self.levels)))

    def raw_quantiles(self, output: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def quantiles(self, output: torch.Tensor) -> torch.Tensor:
        q = self.raw_quantiles(output)
        return (q + self.offsets[:, None].to(q.dtype)).sort(-1).values  # offsets of neighbours may cross: sorted

    def point(self, output: torch.Tensor) -> torch.Tensor:
        return self.quantiles(output)[..., self.levels.index(0.5)]


def central_intervals(levels: tuple[float, ...]) -> list[tuple[int, int, int]]:
    """``(lower index, upper index, percent)`` of every central interval the ``levels`` hold a symmetric pair
    for, widest first: (0.05, 0.1, 0.5, 0.9, 0.95) → [(0, 4, 90), (1, 3, 80)]."""
    pairs = []
    for i, low in enumerate(levels):
        j = next((j for j, high in enumerate(levels) if abs(low + high - 1.0) < 1e-9), None)
        if j is not None and j > i:
            pairs.append((i, j, round(100 * (levels[j] - low))))
    return pairs
