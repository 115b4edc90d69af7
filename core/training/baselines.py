"""The field's two reference forecasts, on the same windows as the model: last value and historical average."""

from __future__ import annotations

import numpy as np
import torch

from core.data.windows import Prepared


class Baselines:
    """``last_value``: the last observed target of each VD, held for the horizon (never from before a time
    jump: the VD's mean then).
    ``historical_average``: the training part's mean per VD and time-of-day slot (the VD's mean where a slot
    was never observed).
    """

    names = ("last_value", "historical_average")

    def __init__(self, prepared: Prepared):
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

    def predict(self, start: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forecasts ``[B, H, N]`` in the data's units for the windows starting at ``start``."""
        last = self.last[start + self.history - 1]  # [B, N]
        future = start[:, None] + self.history + torch.arange(self.horizon)
        return {
            "last_value": last[:, None].expand(-1, self.horizon, -1),
            "historical_average": self.table[self.slot[future]],
        }
