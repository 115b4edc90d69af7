"""Chronological splits, z-scoring from the training part, and windows cut by index arithmetic.

The whole series is normalised once (``Series``); each split is only an array of window start indices into
it, and a batch of windows is one gather, ``series[starts[:, None] + arange(L)]``.
"""

from __future__ import annotations

import attrs
import numpy as np
import torch

from core.api import DatasetSpec, Windows
from core.calendar import calendar_columns
from core.data.config import DataConfig
from core.data.dataset import TrafficData
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
    def fit(cls, features: np.ndarray, names: tuple[str, ...], source: str) -> Normaliser:
        observed = np.isfinite(features).reshape(-1, features.shape[-1]).any(0)
        if not observed.all():
            missing = [n for n, ok in zip(names, observed) if not ok]
            raise DataError(f"{source}: feature(s) {', '.join(missing)} are NaN everywhere in the training part")
        mean = np.nanmean(features, axis=(0, 1))
        std = np.nanstd(features, axis=(0, 1))
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
    """The whole series, normalised once and shared by every split."""

    values: torch.Tensor  # [T, N, F]
    observed: torch.Tensor  # [T, N, F]
    covariates: torch.Tensor  # [T, K]
    target: torch.Tensor  # [T, N]
    target_mask: torch.Tensor  # [T, N]
    target_raw: torch.Tensor  # [T, N] original units, NaN where missing
    history: int
    horizon: int
    stretch: torch.Tensor  # [T] which regular stretch (between time jumps) each step is in
    since_gap: torch.Tensor | None = None  # [T, N] steps since the VD's last long gap; None = fixed windows
    min_history: int = 0
    covariate_names: tuple[str, ...] = ()  # the K covariates, in order (``calendar_columns``)
    profile: torch.Tensor | None = None  # [T, N] the target's historical profile in the data's units; None = none

    def cut(self, starts: torch.Tensor) -> Windows:
        past = starts[:, None] + torch.arange(self.history)
        future = starts[:, None] + self.history + torch.arange(self.horizon)
        lengths = self.lengths(starts)
        observed = self.observed[past]
        if lengths is not None:  # a VD's history starts after its last long gap; an inactive VD is not forecast
            observed = observed & real_steps(lengths, self.history)[..., None]
        return Windows(
            values=self.values[past] * observed,
            observed=observed,
            covariates=self.covariates[past],
            target=self.target[future],
            target_mask=self.target_mask[future]
            if lengths is None
            else self.target_mask[future] & (lengths > 0)[:, None],
            start=starts,
            future_covariates=self.covariates[future],
            lengths=lengths,
            target_profile=None if self.profile is None else self.profile[future],
        )

    def lengths(self, starts: torch.Tensor) -> torch.Tensor | None:
        """[B, N] each VD's history in the windows starting at ``starts``: at most ``history`` steps back to its
        last long gap, 0 (inactive) when shorter than ``min_history``."""
        if self.since_gap is None:
            return None
        lengths = self.since_gap[starts + self.history - 1].clamp(max=self.history)
        return lengths.where(lengths >= self.min_history, 0)

    def window_starts(self, first: int, last: int, stride: int = 1) -> torch.Tensor:
        """Window starts ``first, first + stride, ... <= last``, less the windows with no active VD and those
        that span a time jump."""
        starts = torch.arange(first, last + 1, stride)
        starts = starts[~self.spans_jump(starts)]
        return starts if self.since_gap is None else starts[(self.lengths(starts) > 0).any(1)]

    def spans_jump(self, starts: torch.Tensor) -> torch.Tensor:
        """[B] bool: the window (history and horizon) starting at each of ``starts`` crosses a time jump."""
        return self.stretch[starts] != self.stretch[starts + self.history + self.horizon - 1]


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

    blank = np.isnan(data.features).all(axis=(0, 2))
    if blank.any():
        names = [vd for vd, b in zip(data.vd_ids, blank) if b]
        raise DataError(
            f"{data.source}: VD(s) {', '.join(names[:5])} have no reading at all (every feature NaN at every step); "
            "remove them from the file"
        )
    normaliser = Normaliser.fit(data.features[:val_start], data.feature_names, data.source)
    train_target = data.features[:val_start, :, target_index]
    profile = Profile.fit(train_target, data.timestamps[:val_start], data.interval, cfg.holidays)
    series = build_series(data, normaliser, cfg, tuple(features), seed, profile)
    if not series.target_mask[:val_start].any():
        raise DataError(f"{data.source}: the target '{cfg.target}' is NaN everywhere in the training part")
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
) -> Series:
    """The whole series z-scored with ``normaliser`` and ``profile`` (never re-fitted here): the inputs
    ``features`` (then the profile, with ``cfg.profile_input``), the target, their masks, covariates and the
    target's profile, as ``cfg`` says (see ``prepare``)."""
    jumps = data.time_jumps()
    if len(jumps) and cfg.irregular_steps == "refuse":
        first = int(jumps[0])
        found = int(data.timestamps[first] - data.timestamps[first - 1])
        raise DataError(
            f"{data.source}: irregular time step at step {first}: {found} s after the previous step, "
            f"expected {data.interval} s "
            f'({len(jumps)} irregular step(s); [data] irregular_steps = "split" cuts windows only between them)'
        )
    raw = data.features[:, :, [data.feature_index(name, "data.features") for name in features]]
    observed = np.isfinite(raw)
    since_gap = steps_since_gap(~observed.any(-1), cfg.gap_steps) if cfg.min_history else None
    if cfg.hide_inputs:
        observed &= np.random.default_rng(seed).random(observed.shape) >= cfg.hide_inputs
    mean, std = normaliser.select(features)
    values = np.where(observed, (raw - mean) / std, 0.0).astype(np.float32)
    target_raw = data.features[:, :, data.feature_index(cfg.target)]
    target_mask = np.isfinite(target_raw)
    (target_mean,), (target_std,) = normaliser.select((cfg.target,))
    target_z = np.where(target_mask, (target_raw - target_mean) / target_std, 0.0).astype(np.float32)
    target_profile = None if profile is None else profile.at(data.timestamps).astype(np.float32)  # [T, N]
    if cfg.profile_input:
        if target_profile is None:
            raise DataError(f"{data.source}: [data] profile_input needs the historical profile of the training part")
        values = np.concatenate([values, ((target_profile - target_mean) / target_std)[..., None]], -1)
        observed = np.concatenate([observed, np.ones_like(observed[..., :1])], -1)
    stretch = np.zeros(data.num_steps, np.int64)
    stretch[jumps] = 1
    calendar = calendar_columns(data.timestamps, cfg.time_of_day, cfg.weekend, cfg.day_of_week, cfg.holidays)
    covariates = np.array(list(calendar.values()), np.float32).reshape(len(calendar), data.num_steps).T.copy()  # [T, K]
    return Series(
        values=torch.from_numpy(values),
        observed=torch.from_numpy(observed),
        covariates=torch.from_numpy(covariates),
        target=torch.from_numpy(target_z),
        target_mask=torch.from_numpy(target_mask),
        target_raw=torch.from_numpy(target_raw.astype(np.float32)),
        history=cfg.history,
        horizon=cfg.horizon,
        since_gap=None if since_gap is None else torch.from_numpy(since_gap),
        min_history=cfg.min_history,
        stretch=torch.from_numpy(stretch.cumsum()),
        covariate_names=tuple(calendar),
        profile=None if target_profile is None else torch.from_numpy(target_profile),
    )


def profile_name(target: str) -> str:
    """The input feature that ``[data] profile_input`` adds: the target's historical profile."""
    return f"{target}_profile"


def steps_since_gap(missing: np.ndarray, gap_steps: int) -> np.ndarray:
    """[T, N] how many steps (up to and including t) each VD has been reporting since its last run of at least
    ``gap_steps`` missing steps (or since the start); 0 inside such a gap."""
    t = np.arange(len(missing))[:, None]
    last_seen = np.maximum.accumulate(np.where(missing, -1, t), axis=0)  # last step with a reading
    in_gap = t - last_seen >= gap_steps  # [T, N]
    gap_end = np.maximum.accumulate(np.where(in_gap, t, -1), axis=0)
    return (t - gap_end).astype(np.int64)
