"""The field's two reference forecasts, on the same windows as the model: last value and historical average, each
with quantiles for scoring a distribution head beside them."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from core import calendar
from core.data.windows import Prepared


class Baselines:
    """``last_value``: the last observed target of each VD, held for the horizon (never from before a time
    jump: the VD's mean then).
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
        series = prepared.series
        raw = series.target_raw.numpy()  # [T, N]
        steps, n = raw.shape
        self.history, self.horizon = series.history, series.horizon
        observed = np.isfinite(raw)
        stretch_start = np.diff(series.stretch.numpy(), prepend=-1) != 0  # [T] the first step after a time jump
        last_seen = np.maximum.accumulate(
            np.where(observed | stretch_start[:, None], np.arange(steps)[:, None], 0), axis=0
        )
        train = slice(0, prepared.boundaries[0])
        vd_mean = np.nanmean(raw[train], 0)
        filled = raw[last_seen, np.arange(n)]
        self.last = torch.from_numpy(np.where(np.isfinite(filled), filled, vd_mean).astype(np.float32))

        timestamps = prepared.data.timestamps
        self.profile = series.profile  # [T, N] the training part's profile at every step, the data's units
        profile = self.profile.numpy()
        week_ago = week_earlier(raw, timestamps)
        self.seasonal = seasonal(timestamps, prepared.data.interval, prepared.boundaries[0])
        self.names = self.NAMES if self.seasonal else self.NAMES[:2]
        self.week_ago = torch.from_numpy(np.where(np.isfinite(week_ago), week_ago, profile).astype(np.float32))
        slots_per_day = calendar.slots_per_day(prepared.data.interval)
        self.slot = torch.from_numpy(calendar.time_slot(timestamps, prepared.data.interval)).long()
        if levels:
            self.residual_quantiles, self.hour, self.hour_quantiles = self.quantile_tables(
                raw[train], self.last[train].numpy(), levels, slots_per_day
            )
        if levels and self.seasonal:
            residuals = raw[train] - week_ago[train]
            self.seasonal_quantiles = torch.from_numpy(np.nanquantile(residuals, levels).astype(np.float32))

    def quantile_tables(
        self, raw: np.ndarray, last: np.ndarray, levels: tuple[float, ...], slots_per_day: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """From the training part's readings ``raw [T, N]`` and last values ``last [T, N]``: the residuals'
        quantiles ``[H, L]``, the hour of every step ``[T_all]`` and the quantiles per hour and VD ``[24, N, L]``."""
        residuals = np.stack(
            [np.nanquantile(raw[h:] - last[:-h], levels) for h in range(1, self.horizon + 1)]
        )  # raw[t + h] - last[t]
        hour = self.slot * 24 // slots_per_day
        train_hour = hour[: len(raw)].numpy()
        overall = np.nanquantile(raw, levels, axis=0)  # [L, N]
        with warnings.catch_warnings():  # an hour no VD was ever observed in: all-NaN, replaced below
            warnings.simplefilter("ignore", RuntimeWarning)
            per_hour = np.stack([np.nanquantile(raw[train_hour == b], levels, axis=0) for b in range(24)])
        per_hour = np.where(np.isfinite(per_hour), per_hour, overall)  # [24, L, N]
        return (
            torch.from_numpy(residuals.astype(np.float32)),
            hour,
            torch.from_numpy(per_hour.transpose(0, 2, 1).astype(np.float32)),
        )

    def windows(self, start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For the windows starting at ``start``: each VD's last value ``[B, N]`` and the steps forecast ``[B, H]``."""
        return self.last[start + self.history - 1], start[:, None] + self.history + torch.arange(self.horizon)

    def predict(self, start: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forecasts ``[B, H, N]`` in the data's units for the windows starting at ``start`` (``seasonal_naive``
        only where the data spans two weeks)."""
        last, future = self.windows(start)
        forecasts = {
            "last_value": last[:, None].expand(-1, self.horizon, -1),
            "historical_average": self.profile[future],
        }
        if self.seasonal:
            forecasts["seasonal_naive"] = self.week_ago[future]
        return forecasts

    def quantiles(self, start: torch.Tensor) -> dict[str, torch.Tensor]:
        """Quantiles ``[B, H, N, L]`` at the ``levels`` given at construction, for the windows starting at
        ``start``."""
        last, future = self.windows(start)
        quantiles = {
            "last_value": last[:, None, :, None] + self.residual_quantiles[None, :, None],
            "historical_average": self.hour_quantiles[self.hour[future]],
        }
        if self.seasonal:
            quantiles["seasonal_naive"] = self.week_ago[future][..., None] + self.seasonal_quantiles
        return quantiles


def week_earlier(raw: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """``[T, N]`` the reading of each VD exactly one week before each step (NaN where the file has no such step or
    the reading is missing)."""
    before = timestamps - calendar.WEEK_S
    index = np.searchsorted(timestamps, before).clip(max=len(timestamps) - 1)
    found = timestamps[index] == before
    return np.where(found[:, None], raw[index], np.nan)


def seasonal(timestamps: np.ndarray, interval: int, train_steps: int) -> bool:
    """Whether the seasonal-naive baseline applies: the data spans at least two weeks and its training part
    more than one (so that it has residuals for the quantiles)."""
    span = timestamps[-1] + interval - timestamps[0]
    return bool(span >= 2 * calendar.WEEK_S and timestamps[train_steps - 1] - timestamps[0] >= calendar.WEEK_S)
