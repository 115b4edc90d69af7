"""Chronological splits, z-scoring from the training part, and windows cut by index arithmetic.

Each split is only an array of window start indices into the series (``Series``), and a batch of windows is one
gather of its readings, ``readings[starts[:, None] + arange(L + H)]``, z-scored then: the readings can stay on
disk (``[data] store = "disk"``) and memory holds no copy of the series.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs
import numpy as np
import torch

from core.api import DatasetSpec, Windows
from core.calendar import calendar_columns
from core.data.config import DataConfig
from core.data.dataset import BLOCK_VALUES, TrafficData, time_blocks, time_jumps
from core.data.disk import DiskReadings
from core.data.profile import Profile
from core.errors import DataError
from core.sequence import real_steps

SPLITS = ("train", "val", "test")


@attrs.frozen
class Normaliser:
    """Per-feature z-scoring with statistics from the training part only."""

    mean: np.ndarray  # [F]
    std: np.ndarray  # [F]
    names: tuple[str, ...]  # the F features, in the order of ``mean`` and ``std``

    @classmethod
    def fit(cls, blocks: Iterable[np.ndarray], names: tuple[str, ...], source: str) -> Normaliser:
        """From the training part's readings, given as consecutive blocks [t, N, F] (``time_blocks``)."""
        count, total, squares = (np.zeros(len(names)) for _ in range(3))
        for block in blocks:
            observed = np.isfinite(block)
            values = np.where(observed, block, 0.0).astype(np.float64)
            count += observed.sum((0, 1))
            total += values.sum((0, 1))
            squares += (values**2).sum((0, 1))
        if not (count > 0).all():
            missing = [n for n, seen in zip(names, count) if not seen]
            raise DataError(f"{source}: feature(s) {', '.join(missing)} are NaN everywhere in the training part")
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        return cls(mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32), tuple(names))

    def select(self, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of the features ``names``, in that order."""
        index = [self.names.index(name) for name in names]
        return self.mean[index], self.std[index]

    def to_dict(self) -> dict[str, list]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "names": list(self.names)}

    @classmethod
    def from_dict(cls, table: dict[str, list]) -> Normaliser:
        """Inverse of ``to_dict``; checkpoints written before the names were stored give ``names = ()``."""
        return cls(
            np.asarray(table["mean"], np.float32), np.asarray(table["std"], np.float32), tuple(table.get("names", ()))
        )


@attrs.frozen(eq=False)
class Series:
    """The whole series, cut into windows a batch at a time: ``cut`` reads the windows' steps from ``readings`` (in
    memory or left on disk) and z-scores them then, so that nothing the size of the series is held beside them.

    ``inputs`` and ``target_index`` pick the readings' features; ``mean``/``std`` (of the inputs) and
    ``target_mean``/``target_std`` are the training part's ``Normaliser``. ``covariates``, ``stretch`` and
    ``profile_cell`` cover the series' ``steps``: the readings' T steps and any ``blank`` steps after them (a
    forecast's future), which read as missing.
    """

    readings: np.ndarray | DiskReadings  # float32 [T, N, F_file], NaN = missing
    inputs: np.ndarray  # int64 [F] the input features, indices into the readings' features
    target_index: int
    mean: torch.Tensor  # [F]
    std: torch.Tensor  # [F]
    target_mean: torch.Tensor  # []
    target_std: torch.Tensor  # []
    covariates: torch.Tensor  # [S, K]
    stretch: torch.Tensor  # [S] which regular stretch (between time jumps) each step is in
    history: int
    horizon: int
    covariate_names: tuple[str, ...] = ()  # the K covariates, in order (``calendar_columns``)
    profile: torch.Tensor | None = None  # [D, slots, N] the target's historical profile table (``Profile``), data units
    profile_cell: torch.Tensor | None = None  # [S, 2] each step's kind of day and slot in ``profile``
    profile_input: bool = False  # the profile (z-scored) is one more input feature
    min_history: int = 0  # > 0: variable-length histories (``lengths``)
    gap_steps: int = 12
    kept: np.ndarray | None = None  # bool [T, N, F] the inputs not hidden (``[data] hide_inputs``); None: all

    @property
    def steps(self) -> int:
        return len(self.stretch)

    def cut(self, starts: torch.Tensor) -> Windows:
        lead = gap_lead(self.min_history, self.gap_steps)
        steps = starts[:, None] - lead + torch.arange(lead + self.history + self.horizon)
        rows = self.read(steps.clamp(min=0))  # [B, lead + L + H, N, F_file]
        past, future = steps[:, lead : lead + self.history], steps[:, lead + self.history :]
        inputs = rows[:, lead : lead + self.history][..., self.inputs]
        observed = inputs.isfinite()
        if self.kept is not None:
            observed &= torch.from_numpy(self.kept[past.numpy()])
        values = (inputs - self.mean) / self.std
        if self.profile_input:
            values = torch.cat([values, self.z_target(self.profile_at(past))[..., None]], -1)
            observed = torch.cat([observed, torch.ones_like(observed[..., :1])], -1)
        lengths = self._lengths_in(rows[:, : lead + self.history], steps[:, : lead + self.history])
        if lengths is not None:  # a VD's history starts after its last long gap; an inactive VD is not forecast
            observed = observed & real_steps(lengths, self.history)[..., None]
        target = rows[:, lead + self.history :, :, self.target_index]
        target_mask = target.isfinite()
        return Windows(
            values=values.where(observed, 0.0),
            observed=observed,
            covariates=self.covariates[past],
            target=self.z_target(target).where(target_mask, 0.0),
            target_mask=target_mask if lengths is None else target_mask & (lengths > 0)[:, None],
            start=starts,
            future_covariates=self.covariates[future],
            lengths=lengths,
            target_profile=None if self.profile is None else self.profile_at(future),
        )

    def read(self, steps: torch.Tensor) -> torch.Tensor:
        """The readings at ``steps`` (any shape) ``[*steps.shape, N, F_file]``; a blank step reads as missing."""
        steps = steps.numpy()
        last = len(self.readings) - 1
        rows = np.asarray(self.readings[np.minimum(steps, last)], np.float32)
        if steps.size and steps.max() > last:
            rows[steps > last] = np.nan
        return torch.from_numpy(rows)

    def target_at(self, steps: torch.Tensor) -> torch.Tensor:
        """The target in the data's units at ``steps`` ``[*steps.shape, N]``, NaN where missing."""
        return self.read(steps)[..., self.target_index]

    def profile_at(self, steps: torch.Tensor) -> torch.Tensor:
        """The target's historical profile at ``steps`` ``[*steps.shape, N]``, in the data's units."""
        kind, slot = self.profile_cell[steps].unbind(-1)
        return self.profile[kind, slot]

    def z_target(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.target_mean) / self.target_std

    def lengths(self, starts: torch.Tensor) -> torch.Tensor | None:
        """[B, N] each VD's history in the windows starting at ``starts``: at most ``history`` steps back to its
        last run of ``gap_steps`` steps with no input reading (the series' start counts as a reading), 0
        (inactive) when shorter than ``min_history``; None for fixed windows (``min_history = 0``)."""
        if not self.min_history:
            return None
        span = self.history + gap_lead(self.min_history, self.gap_steps)
        steps = starts[:, None] + self.history - span + torch.arange(span)
        return self._lengths_in(self.read(steps.clamp(min=0)), steps)

    def _lengths_in(self, rows: torch.Tensor, steps: torch.Tensor) -> torch.Tensor | None:
        """``lengths`` from the readings ``rows [B, gap_steps - 1 + L, N, F_file]`` at ``steps [B, gap_steps - 1 +
        L]`` (each window's history and the steps before it; those before the series' start are ignored)."""
        if not self.min_history:
            return None
        missing = ~rows[..., self.inputs].isfinite().any(-1) & (steps >= 0)[..., None]
        total = torch.nn.functional.pad(missing.cumsum(1), (0, 0, 1, 0))  # [B, span + 1, N]
        gap_ends = total[:, self.gap_steps :] - total[:, : -self.gap_steps] == self.gap_steps  # [B, history, N]
        last_gap_end = (gap_ends * torch.arange(1, self.history + 1)[:, None]).amax(1)  # 0: none in the history
        lengths = self.history - last_gap_end
        return lengths.where(lengths >= self.min_history, 0)

    def window_starts(self, first: int, last: int, stride: int = 1) -> torch.Tensor:
        """Window starts ``first, first + stride, ... <= last``, less the windows with no active VD and those
        that span a time jump."""
        starts = torch.arange(first, last + 1, stride)
        starts = starts[~self.spans_jump(starts)]
        if not self.min_history:
            return starts
        per_block = max(1, BLOCK_VALUES // ((self.history + self.gap_steps) * math.prod(self.readings.shape[1:])))
        active = [(self.lengths(block) > 0).any(1) for block in starts.split(per_block)]
        return starts[torch.cat(active)] if active else starts

    def spans_jump(self, starts: torch.Tensor) -> torch.Tensor:
        """[B] bool: the window (history and horizon) starting at each of ``starts`` crosses a time jump."""
        return self.stretch[starts] != self.stretch[starts + self.history + self.horizon - 1]


def gap_lead(min_history: int, gap_steps: int) -> int:
    """The steps before a window's history that cutting it reads: with variable-length histories
    (``min_history > 0``) those where a gap ending in the history may start (``gap_steps - 1``), else none."""
    return gap_steps - 1 if min_history else 0


class WindowDataset(torch.utils.data.Dataset):
    """Windows of one split; ``__getitems__`` cuts a whole batch at once (the DataLoader calls it)."""

    def __init__(self, series: Series, starts: np.ndarray):
        self.series = series
        self.starts = torch.as_tensor(starts, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitems__(self, indices: list[int]) -> Windows:
        return self.series.cut(self.starts[torch.as_tensor(indices, dtype=torch.long)])

    def __getitem__(self, index: int) -> Windows:
        return self.__getitems__([index])


@attrs.frozen(eq=False)
class Prepared:
    """Everything the trainer needs from the data."""

    data: TrafficData
    series: Series
    normaliser: Normaliser
    input_features: tuple[str, ...]
    target_index: int  # of the target among the data's features
    splits: dict[str, WindowDataset]
    boundaries: tuple[int, int]  # first step of val and of test
    windows_across_jumps: int = 0  # windows left out because they span a time jump (irregular_steps = "split")
    profile: Profile | None = None  # the target's historical profile, from the training part

    def spec(self) -> DatasetSpec:
        """What plugins are told about this data when they are built."""
        return dataset_spec(self.data, self.series, self.input_features)


def dataset_spec(data: TrafficData, series: Series, input_features: tuple[str, ...]) -> DatasetSpec:
    """What plugins are told about ``data`` (windows cut from ``series``) when they are built."""
    positions = data.positions_xy()
    return DatasetSpec(
        vd_ids=data.vd_ids,
        feature_names=tuple(input_features),
        num_covariates=series.covariates.shape[1],
        covariate_names=series.covariate_names,
        history=series.history,
        horizon=series.horizon,
        positions_xy=None if positions is None else torch.as_tensor(positions, dtype=torch.float32),
        vd_attributes=data.vd_attributes,
        road_graph=data.road_graph,
        interval=data.interval,
    )


def prepare(data: TrafficData, cfg: DataConfig = DataConfig(), seed: int = 0) -> Prepared:
    """Split chronologically, fit the normaliser on train, and index the windows of each part.

    ``cfg.min_history > 0`` makes variable-length windows: a VD's history starts after its last gap of at least
    ``gap_steps`` missing steps (late start, drop-out), up to ``history`` steps; a VD with fewer than
    ``min_history`` steps is inactive in that window, and windows with no active VD are dropped.
    ``cfg.hide_inputs`` hides that fraction of the observed inputs everywhere (a fixed draw from ``seed``): an
    experiment with sparse observations; the targets are kept. ``cfg.vds`` keeps only those VDs, in that order.
    A file whose time step jumps is refused, or with ``irregular_steps = "split"`` no window spans a jump.
    The target's historical profile (``Profile``) is fitted on the training part, like the normaliser; with
    ``cfg.profile_input`` it is one more input feature, ``<target>_profile``.
    """
    if cfg.vds:
        data = data.select(cfg.vds)
    target_index = data.feature_index(cfg.target)
    features = cfg.features or data.feature_names
    steps = data.num_steps
    val_start, test_start = (int(round(steps * cfg.split[0])), int(round(steps * (cfg.split[0] + cfg.split[1]))))
    bounds = {"train": (0, val_start), "val": (val_start, test_start), "test": (test_start, steps)}
    window = cfg.history + cfg.horizon
    for part, (lo, hi) in bounds.items():
        if hi - lo < window:
            raise DataError(
                f"{data.source}: fewer time steps than one window: the {part} part has {hi - lo} of {steps} steps, "
                f"a window needs {window} (history {cfg.history} + horizon {cfg.horizon})"
            )

    seen = np.zeros(len(data.vd_ids), bool)
    for _, block in time_blocks(data.features):
        seen |= np.isfinite(block).any(axis=(0, 2))
    if not seen.all():
        names = [vd for vd, ok in zip(data.vd_ids, seen) if not ok]
        raise DataError(
            f"{data.source}: VD(s) {', '.join(names[:5])} have no reading at all (every feature NaN at every step); "
            "remove them from the file"
        )
    normaliser = Normaliser.fit(
        (block for _, block in time_blocks(data.features, val_start)), data.feature_names, data.source
    )
    targets = (block[..., target_index] for _, block in time_blocks(data.features, val_start))
    profile = Profile.fit_blocks(targets, data.timestamps[:val_start], data.interval, cfg.holidays)
    series = build_series(data, normaliser, cfg, tuple(features), seed, profile)
    strides = {"train": cfg.train_stride, "val": 1, "test": 1}
    splits, across_jumps = {}, 0
    for part, (lo, hi) in bounds.items():
        starts = series.window_starts(lo, hi - window, strides[part])
        if not len(starts):
            raise DataError(
                f"{data.source}: the {part} part has no window with a VD of at least min_history = "
                f"{cfg.min_history} steps"
            )
        splits[part] = WindowDataset(series, starts.numpy())
        across_jumps += int(series.spans_jump(torch.arange(lo, hi - window + 1, strides[part])).sum())
    inputs = (*features, profile_name(cfg.target)) if cfg.profile_input else tuple(features)
    return Prepared(
        data, series, normaliser, inputs, target_index, splits, (val_start, test_start), across_jumps, profile
    )


def build_series(
    data: TrafficData,
    normaliser: Normaliser,
    cfg: DataConfig,
    features: tuple[str, ...],
    seed: int = 0,
    profile: Profile | None = None,
    blank: int = 0,
) -> Series:
    """The series of ``data`` z-scored with ``normaliser`` and ``profile`` (never re-fitted here): the inputs
    ``features`` (then the profile, with ``cfg.profile_input``), the target, covariates and the target's profile,
    as ``cfg`` says (see ``prepare``), followed by ``blank`` missing steps (the future of the latest windows)."""
    timestamps = np.concatenate([data.timestamps, data.timestamps[-1] + data.interval * np.arange(1, blank + 1)])
    jumps = time_jumps(timestamps)
    if len(jumps) and cfg.irregular_steps == "refuse":
        first = int(jumps[0])
        found = int(timestamps[first] - timestamps[first - 1])
        raise DataError(
            f"{data.source}: irregular time step at step {first}: {found} s after the previous step, "
            f"expected {data.interval} s "
            f'({len(jumps)} irregular step(s); [data] irregular_steps = "split" cuts windows only between them)'
        )
    if cfg.profile_input and profile is None:
        raise DataError(f"{data.source}: [data] profile_input needs the historical profile of the training part")
    inputs = np.array([data.feature_index(name, "data.features") for name in features], np.int64)
    shape = (data.num_steps, len(data.vd_ids), len(inputs))
    kept = np.random.default_rng(seed).random(shape) >= cfg.hide_inputs if cfg.hide_inputs else None
    mean, std = normaliser.select(features)
    (target_mean,), (target_std,) = normaliser.select((cfg.target,))
    stretch = np.zeros(len(timestamps), np.int64)
    stretch[jumps] = 1
    calendar = calendar_columns(timestamps, cfg.time_of_day, cfg.weekend, cfg.day_of_week, cfg.holidays)
    covariates = np.array(list(calendar.values()), np.float32).reshape(len(calendar), len(timestamps)).T.copy()
    return Series(
        readings=data.features,
        inputs=inputs,
        target_index=data.feature_index(cfg.target),
        mean=torch.from_numpy(mean),
        std=torch.from_numpy(std),
        target_mean=torch.tensor(target_mean),
        target_std=torch.tensor(target_std),
        covariates=torch.from_numpy(covariates),
        stretch=torch.from_numpy(stretch.cumsum()),
        history=cfg.history,
        horizon=cfg.horizon,
        covariate_names=tuple(calendar),
        profile=None if profile is None else torch.from_numpy(profile.table.astype(np.float32)),
        profile_cell=None if profile is None else torch.from_numpy(profile.cells(timestamps)),
        profile_input=cfg.profile_input,
        min_history=cfg.min_history,
        gap_steps=cfg.gap_steps,
        kept=kept,
    )


def profile_name(target: str) -> str:
    """The input feature that ``[data] profile_input`` adds: the target's historical profile."""
    return f"{target}_profile"
