"""The field's two reference forecasts, on the same windows as the model: last value and historical average, each
with quantiles for scoring a distribution head beside them."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from core.data.windows import Prepared


class Baselines:
    """``last_value``: the last observed target of each VD, held for the horizon (never from before a time
    jump: the VD's mean then).
    ``historical_average``: the training part's mean per VD and time-of-day slot (the VD's mean where a slot
    was never observed).

    With quantile ``levels``, ``quantiles`` gives each one's distribution: the last value plus the quantiles of the
    training part's residuals at each horizon step (all VDs together), and the quantiles of the training part's
    values per VD and hour of day (the VD's own where an hour was never observed).
    """

    names = ("last_value", "historical_average")

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
        vd_mean = np.nanmean(raw[: prepared.boundaries[0]], 0)
        filled = raw[last_seen, np.arange(n)]
        self.last = torch.from_numpy(np.where(np.isfinite(filled), filled, vd_mean).astype(np.float32))

        timestamps = prepared.data.timestamps
        slots_per_day = max(1, 86400 // prepared.data.interval)
        self.slot = torch.from_numpy((timestamps % 86400) // (86400 // slots_per_day)).long()
        train = slice(0, prepared.boundaries[0])
        totals = np.zeros((slots_per_day, n))
        counts = np.zeros((slots_per_day, n))
        np.add.at(totals, self.slot[train].numpy(), np.where(observed[train], raw[train], 0.0))
        np.add.at(counts, self.slot[train].numpy(), observed[train])
        table = np.where(counts > 0, totals / np.maximum(counts, 1), vd_mean)
        self.table = torch.from_numpy(table.astype(np.float32))  # [slots, N]
        if levels:
            self.residual_quantiles, self.hour, self.hour_quantiles = self.quantile_tables(
                raw[train], self.last[train].numpy(), levels, slots_per_day
            )

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
        """Forecasts ``[B, H, N]`` in the data's units for the windows starting at ``start``."""
        last, future = self.windows(start)
        return {
            "last_value": last[:, None].expand(-1, self.horizon, -1),
            "historical_average": self.table[self.slot[future]],
        }

    def quantiles(self, start: torch.Tensor) -> dict[str, torch.Tensor]:
        """Quantiles ``[B, H, N, L]`` at the ``levels`` given at construction, for the windows starting at
        ``start``."""
        last, future = self.windows(start)
        return {
            "last_value": last[:, None, :, None] + self.residual_quantiles[None, :, None],
            "historical_average": self.hour_quantiles[self.hour[future]],
        }
