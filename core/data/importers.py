"""Importers from the field's standard file layouts to ``TrafficData`` (then ``write_hdf5``).

- wide CSV: one row per time step, header = detector ids (METR-LA's ``los_speed.csv``), no time column;
- one CSV per detector: ``Stamp,Speed`` rows (PEMS-BAY per-sensor files);
- the pandas HDF5 store ``metr-la.h5`` / ``pems-bay.h5`` (key ``df``), read with h5py, no pandas.

Each takes a locations CSV (``[index,]sensor_id,latitude,longitude``, with or without header). Speed zeros are
missing readings and become NaN.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from core.data.dataset import TrafficData
from core.errors import DataError


def read_locations(path: str | Path) -> dict[str, tuple[float, float]]:
    """``{sensor_id: (lat, lon)}`` from ``[index,]sensor_id,latitude,longitude`` rows (header optional)."""
    rows = _read_csv(path)
    if rows and rows[0] and not _is_number(rows[0][-1]):
        rows = rows[1:]  # header
    locations = {}
    for line, row in enumerate(rows, start=1):
        if len(row) not in (3, 4) or not (_is_number(row[-2]) and _is_number(row[-1])):
            raise DataError(f"{path}: row {line}: expected [index,]sensor_id,latitude,longitude, got {','.join(row)}")
        lat, lon = float(row[-2]), float(row[-1])
        if not (abs(lat) <= 90 and abs(lon) <= 180):  # NaN fails too
            raise DataError(
                f"{path}: row {line}: latitude {row[-2].strip()} or longitude {row[-1].strip()} out of range (degrees)"
            )
        locations[row[-3].strip()] = (lat, lon)
    return locations


def read_vd_attributes(path: str | Path, vd_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``{attribute: value per VD}`` from a CSV with a header ``sensor_id,<attribute>,...`` (e.g. road,direction).

    VDs the file does not list get "" (unknown); ids in the file that are not in the data are an error.
    """
    rows = _read_csv(path)
    if not rows or len(rows[0]) < 2:
        raise DataError(f"{path}: expected a header 'sensor_id,<attribute>,...' (e.g. sensor_id,road,direction)")
    names = [name.strip() for name in rows[0][1:]]
    table = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(names) + 1:
            raise DataError(f"{path}: line {line} has {len(row)} values, the header has {len(names) + 1}")
        table[row[0].strip()] = [value.strip() for value in row[1:]]
    unknown = sorted(set(table) - set(vd_ids))
    if unknown:
        raise DataError(f"{path}: {len(unknown)} sensor id(s) are not in the data: {', '.join(unknown[:5])}")
    return {name: tuple(table.get(vd, [""] * len(names))[i] for vd in vd_ids) for i, name in enumerate(names)}


def import_wide_csv(
    values: str | Path, locations: str | Path, start: str, interval_s: int = 300, feature: str = "speed"
) -> TrafficData:
    """A time × detectors CSV whose header is the detector ids; rows are ``interval_s`` apart from ``start``."""
    rows = _read_csv(values)
    if len(rows) < 2:
        raise DataError(f"{values}: expected a header of detector ids and at least one row of readings")
    ids = [cell.strip() for cell in rows[0]]
    if not ids:
        raise DataError(f"{values}: line 1 is empty; expected a header of detector ids")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(ids):
            raise DataError(
                f"{values}: line {line} has {len(row)} values, the header has {len(ids)} detector ids (ragged row)"
            )
    bad = next(
        ((line, cell) for line, row in enumerate(rows[1:], start=2) for cell in row if not _is_number(cell)), None
    )
    if bad:
        raise DataError(f"{values}: line {bad[0]}: a reading is not a number: {bad[1]!r}")
    with np.errstate(over="ignore"):  # beyond float32: inf, refused by TrafficData
        readings = np.array(rows[1:], dtype=np.float32)
    timestamps = _parse_time(start, values) + interval_s * np.arange(len(readings))
    return _assemble(readings, ids, timestamps, locations, feature, str(values))


def import_per_detector(
    files: Sequence[str | Path], locations: str | Path, feature: str = "speed", id_pattern: str = r"(\d+)"
) -> TrafficData:
    """One ``Stamp,value`` CSV per detector (the id is the first match of ``id_pattern`` in the file name),
    aligned on one regular time grid; steps absent from a file are NaN."""
    if not files:
        raise DataError("no detector files given")
    ids, series = [], []
    for path in sorted(map(Path, files)):
        match = re.search(id_pattern, path.name)
        if not match:
            raise DataError(f"{path}: no detector id in the file name (pattern {id_pattern!r})")
        rows = _read_csv(path)[1:]
        if not rows:
            raise DataError(f"{path}: no readings after the header (expected Stamp,value rows)")
        bad = next((i for i, row in enumerate(rows, start=2) if len(row) != 2), None)
        if bad is not None:
            raise DataError(f"{path}: line {bad} does not have two columns (Stamp,value)")
        try:
            stamps = np.array([row[0].strip() for row in rows], dtype="datetime64[s]").astype(np.int64)
            with np.errstate(over="ignore"):  # beyond float32: inf, refused by TrafficData
                readings = np.array([row[1] for row in rows], dtype=np.float32)
        except ValueError as error:
            raise DataError(f"{path}: unreadable row: {error}") from None
        if (stamps == np.datetime64("NaT").astype(np.int64)).any():
            line = int(np.argmax(stamps == np.datetime64("NaT").astype(np.int64))) + 2
            raise DataError(f"{path}: line {line}: empty or invalid time stamp")
        ids.append(match.group(1))
        series.append((stamps, readings))
    start = min(s[0].min() for s in series)
    end = max(s[0].max() for s in series)
    steps = np.concatenate([np.diff(np.unique(s[0])) for s in series])
    if not len(steps):
        raise DataError(
            f"{len(files)} detector files: cannot tell the time step, no file has two different time stamps"
        )
    interval = int(np.median(steps))
    timestamps = np.arange(start, end + 1, interval)
    grid = np.full((len(timestamps), len(ids)), np.nan, dtype=np.float32)
    for column, (stamps, readings) in enumerate(series):
        offset = stamps - start
        if (offset % interval).any():
            raise DataError(f"detector {ids[column]}: timestamps off the {interval}-second grid")
        grid[offset // interval, column] = readings
    return _assemble(grid, ids, timestamps, locations, feature, f"{len(files)} detector files")


def import_pandas_h5(path: str | Path, locations: str | Path, feature: str = "speed", key: str = "df") -> TrafficData:
    """The standard ``metr-la.h5`` / ``pems-bay.h5``: a pandas fixed-format store (``axis0`` = detector ids,
    ``axis1`` = datetime64[ns] index, ``block0_values`` = [T, N])."""
    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                raise DataError(f"{path}: no pandas table '{key}' (groups: {', '.join(f)})")
            table = f[key]
            for name in ("axis0", "axis1", "block0_values", "block0_items"):
                if name not in table:
                    raise DataError(f"{path}: '{key}/{name}' missing: not a pandas fixed-format DataFrame")
            items = [v.decode() if isinstance(v, bytes) else str(v) for v in table["block0_items"][()]]
            readings = np.asarray(table["block0_values"][()], dtype=np.float32)
            timestamps = np.asarray(table["axis1"][()], dtype=np.int64) // 1_000_000_000
    except OSError as error:
        raise DataError(f"{path}: not a readable HDF5 file: {error}") from None
    return _assemble(readings, items, timestamps, locations, feature, str(path))


def _assemble(
    readings: np.ndarray, ids: list[str], timestamps: np.ndarray, locations: str | Path, feature: str, source: str
) -> TrafficData:
    where = read_locations(locations)
    unknown = [vd for vd in ids if vd not in where]
    if unknown:
        raise DataError(
            f"{locations}: no location for {len(unknown)} sensor id(s) of {source}: {', '.join(unknown[:5])}"
        )
    readings = np.where(readings == 0, np.nan, readings) if feature == "speed" else readings
    latlon = np.array([where[vd] for vd in ids], dtype=np.float64)
    return TrafficData(
        readings[:, :, None].astype(np.float32),
        tuple(ids),
        (feature,),
        timestamps.astype(np.int64),
        latlon,
        source=source,
    )


def _read_csv(path: str | Path) -> list[list[str]]:
    """The rows of a CSV file; blank lines at the end are dropped, blank lines inside are kept as ``[]`` (for a
    time series they would shift every later row, so the importers refuse them)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
            while rows and not rows[-1]:
                rows.pop()
            return rows
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read: {error}") from None


def _parse_time(text: str, where: str | Path) -> int:
    try:
        return int(np.datetime64(text, "s").astype(np.int64))
    except ValueError:
        raise DataError(f"{where}: start time {text!r} is not ISO 8601 (e.g. 2012-03-01T00:00)") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
