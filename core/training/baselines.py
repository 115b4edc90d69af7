"""The field's two reference forecasts, on the same windows as the model: last value and historical average, each
with quantiles for scoring a distribution head beside them."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from core import calendar
from core.data.dataset import time_blocks
from core.data.windows import Prepared


class Baselines:
    """``last_value``: each VD's last observed target in the window's history, held for the horizon (the VD's
    training mean where the history has none).
    ``historical_average``: the target's historical profile (``core.data.profile``: the training part's mean per
    VD and time-of-day slot, weekdays and weekends apart where it holds enough of both).
    ``seasonal_naive``: the reading at the same time one week earlier (the profile where that reading is missing
    or before the file's start); only where the data spans at least two weeks (``seasonal``): ``names`` are the
    baselines the data allows.

    With quantile ``levels``, ``quantiles`` gives each one's distribution: the last value plus the quantiles of the
    training part's residuals at each horizon step (all VDs together), the quantiles of the training part's
    values per VD and hour of day (the VD's own where an hour was never observed), and the seasonal-naive
    forecast plus the quantiles of its residuals in the training part (all VDs together).
    """

    NAMES = ("last_value", "historical_average", "seasonal_naive")

    def __init__(self, prepared: Prepared, levels: tuple[float, ...] = ()):
        series = self.series = prepared.series
        self.history, self.horizon = series.history, series.horizon
        train = prepared.boundaries[0]
        total, count = 0.0, 0
        for _, block in time_blocks(series.readings, train):
            target = block[..., series.target_index]
            total, count = total + np.nansum(target, 0, dtype=np.float64), count + np.isfinite(target).sum(0)
        self.vd_mean = torch.from_numpy((total / np.maximum(count, 1)).astype(np.float32))  # [N]
        timestamps = prepared.data.timestamps
        self.week_ago = torch.from_numpy(week_earlier(timestamps))
        self.seasonal = seasonal(timestamps, prepared.data.interval, train)
        self.names = self.NAMES if self.seasonal else self.NAMES[:2]
        if levels:
            self.quantile_tables(prepared, levels)

    def quantile_tables(self, prepared: Prepared, levels: tuple[float, ...]) -> None:
        """From the training part (read into memory): the last value's residuals' quantiles ``[H, L]`` over its
        windows, the hour of every step ``[T]``, the quantiles per hour and VD ``[24, N, L]`` and the seasonal
        naive forecast's residuals' quantiles ``[L]``."""
        series, train = self.series, prepared.boundaries[0]
        starts = torch.arange(train - self.history - self.horizon + 1)
        starts = starts[~series.spans_jump(starts)]
        raw = series.target_at(torch.arange(train)).numpy()  # [T_train, N]
        future = (starts[:, None] + self.history + torch.arange(self.horizon)).numpy()
        points = self.predict(starts)
        residuals = raw[future] - points["last_value"].numpy()  # [W, H, N]
        self.residual_quantiles = torch.from_numpy(
            np.nanquantile(residuals.transpose(1, 0, 2).reshape(self.horizon, -1), levels, axis=1).T.astype(np.float32)
        )
        self.hour = (
            torch.from_numpy(calendar.time_slot(prepared.data.timestamps, prepared.data.interval))
            * 24
            // (calendar.slots_per_day(prepared.data.interval))
        )
        train_hour = self.hour[:train].numpy()
        overall = np.nanquantile(raw, levels, axis=0)  # [L, N]
        with warnings.catch_warnings():  # an hour no VD was ever observed in: all-NaN, replaced below
            warnings.simplefilter("ignore", RuntimeWarning)
            per_hour = np.stack([np.nanquantile(raw[train_hour == b], levels, axis=0) for b in range(24)])
        per_hour = np.where(np.isfinite(per_hour), per_hour, overall)  # [24, L, N]
        self.hour_quantiles = torch.from_numpy(per_hour.transpose(0, 2, 1).astype(np.float32))
        if self.seasonal:
            residuals = raw[future] - points["seasonal_naive"].numpy()
            self.seasonal_quantiles = torch.from_numpy(np.nanquantile(residuals, levels).astype(np.float32))

    def predict(self, start: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forecasts ``[B, H, N]`` in the data's units for the windows starting at ``start`` (``seasonal_naive``
        only where the data spans two weeks)."""
        history = self.series.target_at(start[:, None] + torch.arange(self.history))  # [B, L, N]
        future = start[:, None] + self.history + torch.arange(self.horizon)
        profile = self.series.profile_at(future)
        forecasts = {
            "last_value": last_observed(history, self.vd_mean)[:, None].expand(-1, self.horizon, -1),
            "historical_average": profile,
        }
        if self.seasonal:
            earlier = self.week_ago[future]
            reading = self.series.target_at(earlier.clamp(min=0))
            forecasts["seasonal_naive"] = reading.where((earlier >= 0)[..., None] & reading.isfinite(), profile)
        return forecasts

    def quantiles(self, start: torch.Tensor, forecasts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Quantiles ``[B, H, N, L]`` at the ``levels`` given at construction, for the windows starting at
        ``start`` whose point ``forecasts`` (``predict``) are given."""
        future = start[:, None] + self.history + torch.arange(self.horizon)
        quantiles = {
            "last_value": forecasts["last_value"][..., None] + self.residual_quantiles[None, :, None],
            "historical_average": self.hour_quantiles[self.hour[future]],
        }
        if self.seasonal:
            quantiles["seasonal_naive"] = forecasts["seasonal_naive"][..., None] + self.seasonal_quantiles
        return quantiles


def last_observed(history: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """``[B, N]``: each VD's last observed reading in ``history [B, L, N]`` (NaN: missing), else ``fallback [N]``."""
    position = torch.where(history.isfinite(), torch.arange(history.shape[1])[:, None], -1).amax(1)  # [B, N]
    last = history.gather(1, position.clamp(min=0)[:, None]).squeeze(1)
    return last.where(position >= 0, fallback)


def week_earlier(timestamps: np.ndarray) -> np.ndarray:
    """``[T]`` int64: the step exactly one week before each step, -1 where the file has none."""
    before = timestamps - calendar.WEEK_S
    index = np.searchsorted(timestamps, before).clip(max=len(timestamps) - 1)
    return np.where(timestamps[index] == before, index, -1)


def seasonal(timestamps: np.ndarray, interval: int, train_steps: int) -> bool:
    """Whether the seasonal-naive baseline applies: the data spans at least two weeks and its training part
    more than one (so that it has residuals for the quantiles)."""
    span = timestamps[-1] + interval - timestamps[0]
    return bool(span >= 2 * calendar.WEEK_S and timestamps[train_steps - 1] - timestamps[0] >= calendar.WEEK_S)
