"""The historical profile of the target: its mean per VD and time-of-day slot, weekdays and weekends apart where
the training part holds enough of both, from the training part only.

It is the historical-average baseline's forecast (``core.training.baselines``), the ``target_profile`` of every
window (``Series``) and, with ``[data] profile_input``, an input feature.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
import numpy as np
import torch

from core.calendar import DAY_S, day_index, holiday_days, slots_per_day, time_slot

MIN_READINGS = 2  # readings a mean needs; also the days of each kind that split weekdays from weekends


@attrs.frozen(eq=False)
class Profile:
    """Means of the target per kind of day, time-of-day slot and VD, in the data's units.

    ``table[d, s, n]``: kind of day ``d`` (one kind, all days; or two: 0 Monday-Friday, 1 Saturday, Sunday and
    the ``holidays`` region's public holidays), slot ``s`` of the day (``calendar.time_slot`` at ``interval``),
    VD ``n``. ``fit`` says how cells with too few readings are filled.
    """

    table: np.ndarray  # float64 [D, S, N]
    interval: int  # seconds between steps
    holidays: str = ""  # the region whose public holidays count as weekend days ("": none)

    @classmethod
    def fit(cls, raw: np.ndarray, timestamps: np.ndarray, interval: int, holidays: str = "") -> Profile:
        """From the training part's target ``raw [T, N]`` (NaN where missing) at ``timestamps [T]``.

        Weekdays and weekends are apart when the part holds at least ``MIN_READINGS`` (2) dates of each kind, else
        one kind holds all days. A cell with fewer than 2 readings takes the VD's mean of that slot over all days;
        a slot with fewer than 2 readings over all days takes the VD's mean; a VD never observed takes the mean
        of all VDs.
        """
        return cls.fit_blocks([raw], timestamps, interval, holidays)

    @classmethod
    def fit_blocks(
        cls, blocks: Iterable[np.ndarray], timestamps: np.ndarray, interval: int, holidays: str = ""
    ) -> Profile:
        """``fit`` to the training part's target given as consecutive blocks of steps ``[t, N]``."""
        weekend = weekend_days(timestamps, holidays)
        dates = timestamps // DAY_S
        kinds = 2 if min(len(np.unique(dates[weekend])), len(np.unique(dates[~weekend]))) >= MIN_READINGS else 1
        slots = slots_per_day(interval)
        cell = (weekend if kinds == 2 else np.zeros(len(timestamps), bool)) * slots + time_slot(timestamps, interval)
        sums = counts = None
        first = 0
        for raw in blocks:
            observed = np.isfinite(raw)
            if sums is None:
                sums, counts = np.zeros((kinds * slots, raw.shape[1])), np.zeros((kinds * slots, raw.shape[1]))
            add_by_cell(sums, cell[first : first + len(raw)], np.where(observed, raw, 0.0).astype(np.float64))
            add_by_cell(counts, cell[first : first + len(raw)], observed.astype(np.float64))
            first += len(raw)
        sums, counts = sums.reshape(kinds, slots, -1), counts.reshape(kinds, slots, -1)
        overall = sums.sum() / max(counts.sum(), 1)
        vd_sums, vd_counts = sums.sum((0, 1)), counts.sum((0, 1))
        vd_mean = np.where(vd_counts > 0, vd_sums / np.maximum(vd_counts, 1), overall)  # [N]
        all_days = mean_or(sums.sum(0), counts.sum(0), vd_mean)  # [S, N]
        return cls(mean_or(sums, counts, all_days), interval, holidays)

    def to_dict(self) -> dict:
        """What a model card keeps of it (``from_dict`` inverts it)."""
        return {"table": torch.from_numpy(self.table), "interval": self.interval, "holidays": self.holidays}

    @classmethod
    def from_dict(cls, card: dict) -> Profile:
        return cls(np.asarray(card["table"], np.float64), int(card["interval"]), str(card["holidays"]))

    @property
    def split(self) -> bool:
        """Weekdays and weekends apart."""
        return len(self.table) == 2

    def at(self, timestamps: np.ndarray) -> np.ndarray:
        """The profile ``[T, N]`` at the steps ``timestamps`` (float64, the data's units)."""
        kind, slot = self.cells(timestamps).T
        return self.table[kind, slot]

    def cells(self, timestamps: np.ndarray) -> np.ndarray:
        """``[T, 2]`` int64: the kind of day and the slot of ``table`` that each of ``timestamps`` falls in."""
        kind = weekend_days(timestamps, self.holidays) if self.split else np.zeros(len(timestamps), bool)
        return np.stack([kind.astype(np.int64), time_slot(timestamps, self.interval)], 1)


def weekend_days(timestamps: np.ndarray, holidays: str = "") -> np.ndarray:
    """bool per step: a Saturday, a Sunday or (with a ``holidays`` region) a public holiday, on the local date."""
    weekend = day_index(timestamps) >= 5
    return weekend | holiday_days(timestamps, holidays) if holidays else weekend


def add_by_cell(sums: np.ndarray, cell: np.ndarray, values: np.ndarray) -> None:
    """``sums[c] += values[t]`` for every step t of cell ``c = cell[t]`` (``values [t, N]``), one sum per cell."""
    order = np.argsort(cell, kind="stable")
    firsts = np.flatnonzero(np.diff(cell[order], prepend=-1))
    sums[cell[order][firsts]] += np.add.reduceat(values[order], firsts, axis=0)


def mean_or(sums: np.ndarray, counts: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """``sums / counts`` where there are at least ``MIN_READINGS`` readings, else ``fallback`` (broadcast)."""
    return np.where(counts >= MIN_READINGS, sums / np.maximum(counts, 1), fallback)
