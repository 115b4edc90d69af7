"""The calendar read off a file's clock: time-of-day slots, days of the week and the public holidays of a region.

Timestamps are seconds since 1970-01-01 of the local wall-clock time (``TrafficData``), so a step's local date
is ``timestamp // 86400`` days after 1970-01-01 and its time of day ``timestamp % 86400``.
"""

from __future__ import annotations

import datetime

import numpy as np

DAY_S = 86400
WEEK_S = 7 * DAY_S


def calendar_columns(
    timestamps: np.ndarray,
    time_of_day: bool = True,
    weekend: bool = False,
    day_of_week: bool = False,
    holidays: str = "",
) -> dict[str, np.ndarray]:
    """The covariates read off the file's clock, by name, in input order: ``time_of_day_sin`` and
    ``time_of_day_cos`` (the angle 2π · seconds since midnight / 86400), ``weekend`` (1.0 on Saturdays and
    Sundays, else 0.0), ``day_of_week`` (the day's index, Monday = 0 .. Sunday = 6) and, with a ``holidays``
    region, ``holiday`` (1.0 on the region's public holidays, ``holiday_days``)."""
    columns = {}
    if time_of_day:
        angle = 2 * np.pi * (timestamps % DAY_S) / DAY_S
        columns |= {"time_of_day_sin": np.sin(angle), "time_of_day_cos": np.cos(angle)}
    day = day_index(timestamps)
    if weekend:
        columns["weekend"] = day >= 5
    if day_of_week:
        columns["day_of_week"] = day
    if holidays:
        columns["holiday"] = holiday_days(timestamps, holidays)
    return columns


def day_index(timestamps: np.ndarray) -> np.ndarray:
    """The day of the week of each step, Monday = 0 .. Sunday = 6."""
    return (timestamps // DAY_S + 3) % 7  # 1970-01-01 was a Thursday: day 0 -> 3 (Mon = 0)


def time_slot(timestamps: np.ndarray, interval: int) -> np.ndarray:
    """The time-of-day slot of each step, 0 .. ``slots_per_day(interval)`` - 1 (the slot that holds its start)."""
    return (timestamps % DAY_S) // (DAY_S // slots_per_day(interval))


def slots_per_day(interval: int) -> int:
    """Time-of-day slots of a day at steps of ``interval`` seconds: 288 for 5 minutes, 96 for 15 (at least 1)."""
    return max(1, DAY_S // interval)


def holiday_days(timestamps: np.ndarray, region: str) -> np.ndarray:
    """bool per step: its local date is a public holiday of ``region`` (``check_region``'s form, e.g. "US-CA"),
    as the ``holidays`` library lists them (observed days included)."""
    days = timestamps // DAY_S
    if not len(days):
        return np.zeros(0, bool)
    first, last = (datetime.date(1970, 1, 1) + datetime.timedelta(days=int(d)) for d in (days.min(), days.max()))
    listed = region_holidays(region, range(first.year, last.year + 1))
    return np.isin(days, [(date - datetime.date(1970, 1, 1)).days for date in listed])


def region_holidays(region: str, years: range):
    """The ``holidays`` library's public holidays of ``region`` in ``years`` (a date → name mapping)."""
    import holidays

    country, _, subdivision = region.partition("-")
    return holidays.country_holidays(country, subdiv=subdivision or None, years=years)


def check_region(region: str) -> None:
    """Refuse a region the ``holidays`` library does not know, saying what is accepted: a country's ISO 3166-1
    alpha-2 code, optionally with one of its subdivisions after a hyphen ("US", "US-CA", "TW", "DE-BY")."""
    import holidays

    country, _, subdivision = region.partition("-")
    supported = holidays.list_supported_countries()
    form = "a country's ISO 3166-1 code, optionally '-' and a subdivision, e.g. 'US', 'US-CA', 'TW', 'DE-BY'"
    if country not in supported or len(country) != 2:
        codes = sorted(code for code in supported if len(code) == 2)
        raise ValueError(
            f"holidays = {region!r}: {country!r} is not a country the holidays library knows; expected {form} "
            f"(countries: {', '.join(codes)})"
        )
    if subdivision and subdivision not in supported[country]:
        raise ValueError(
            f"holidays = {region!r}: {subdivision!r} is not a subdivision of {country} the holidays library knows; "
            f"{country}'s subdivisions: {', '.join(supported[country]) or 'none (give the country alone)'}"
        )
