"""Importers from the field's standard file layouts to ``TrafficData`` (then ``write_hdf5``).

- wide CSV: one row per time step, header = detector ids (METR-LA's ``los_speed.csv``), no time column;
- one CSV per detector: ``Stamp,Speed`` rows (PEMS-BAY per-sensor files);
- the pandas HDF5 store ``metr-la.h5`` / ``pems-bay.h5`` (key ``df``), read with h5py, no pandas;
- the PEMS03/04/07/08 layout: an npz array ``data`` [T, N, F] with no time, id or position.

Each takes an optional locations CSV (``[index,]sensor_id,latitude,longitude``, with or without header). None
guesses what a file holds: the feature is named by the caller, or by the file itself (a per-detector file's
header). Zeros of the features named in ``zero_missing`` (default: speed, where 0 means no reading; a flow of 0
is real) become NaN. The road graph comes separately (``core.data.road_graph``); LargeST's layout has its own
module (``core.data.largest``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.data.csv_files import is_number, read_csv
from core.data.dataset import TrafficData
from core.data.pandas_store import PandasFrame
from core.errors import DataError


def read_locations(path: str | Path) -> dict[str, tuple[float, float]]:
    """``{sensor_id: (lat, lon)}`` from ``[index,]sensor_id,latitude,longitude`` rows (header optional)."""
    rows = read_csv(path)
    if rows and rows[0] and not is_number(rows[0][-1]):
        rows = rows[1:]  # header
    locations = {}
    for line, row in enumerate(rows, start=1):
        if len(row) not in (3, 4) or not (is_number(row[-2]) and is_number(row[-1])):
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
    rows = read_csv(path)
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


ZERO_MISSING = ("speed",)


def read_ids(path: str | Path) -> list[str]:
    """Detector ids, one per line or comma-separated (PEMS03's ``PEMS03.txt``, METR-LA's ``graph_sensor_ids.txt``)."""
    ids = [cell.strip() for row in read_csv(path) for cell in row if cell.strip()]
    if not ids:
        raise DataError(f"{path}: no detector id in the file")
    return ids


def located_ids(path: str | Path) -> list[str] | None:
    """The sensor ids of an ``index,sensor_id,latitude,longitude`` CSV in index order (None: no index column)."""
    rows = [row for row in read_csv(path) if row]
    rows = rows[1:] if rows and not is_number(rows[0][-1]) else rows
    if not rows or any(len(row) != 4 or not row[0].strip().isdigit() for row in rows):
        return None
    by_index = {int(row[0]): row[1].strip() for row in rows}
    return [by_index[i] for i in range(len(rows))] if sorted(by_index) == list(range(len(rows))) else None


def import_npz(
    path: str | Path,
    features: Sequence[str],
    start: str,
    interval_s: int = 300,
    ids: str | Path | None = None,
    locations: str | Path | None = None,
    zero_missing: Sequence[str] = ZERO_MISSING,
) -> TrafficData:
    """The PEMS0X layout: ``data`` [T, N, F] in an npz, features named by ``features`` in order, rows
    ``interval_s`` apart from ``start``. VD ids: the ``ids`` file, else the sensor ids of a locations file with an
    index column, else the indices "0".."N-1"."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "data" not in archive:
                raise DataError(f"{path}: no array 'data' (arrays: {', '.join(archive.files) or 'none'})")
            readings = np.asarray(archive["data"], dtype=np.float32)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable npz archive: {error}") from None
    if readings.ndim == 2:
        readings = readings[:, :, None]
    if readings.ndim != 3 or readings.shape[2] != len(features):
        raise DataError(
            f"{path}: 'data' has shape {readings.shape}; expected [T, N, {len(features)}] for --features "
            f"{','.join(features)}"
        )
    n = readings.shape[1]
    names = read_ids(ids) if ids else (locations and located_ids(locations)) or [str(i) for i in range(n)]
    if len(names) != n:
        raise DataError(f"{ids or locations}: {len(names)} detector ids for the {n} detectors of {path}")
    timestamps = _parse_time(start, path) + interval_s * np.arange(len(readings))
    return _assemble(readings, names, timestamps, locations, tuple(features), str(path), zero_missing)


def import_wide_csv(
    values: str | Path,
    locations: str | Path | None,
    start: str,
    interval_s: int = 300,
    *,
    feature: str,
    zero_missing: Sequence[str] = ZERO_MISSING,
) -> TrafficData:
    """A time × detectors CSV whose header is the detector ids; rows are ``interval_s`` apart from ``start``."""
    rows = read_csv(values)
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
        ((line, cell) for line, row in enumerate(rows[1:], start=2) for cell in row if not is_number(cell)), None
    )
    if bad:
        raise DataError(f"{values}: line {bad[0]}: a reading is not a number: {bad[1]!r}")
    with np.errstate(over="ignore"):  # beyond float32: inf, refused by TrafficData
        readings = np.array(rows[1:], dtype=np.float32)
    timestamps = _parse_time(start, values) + interval_s * np.arange(len(readings))
    return _assemble(readings[:, :, None], ids, timestamps, locations, (feature,), str(values), zero_missing)


def import_per_detector(
    files: Sequence[str | Path],
    locations: str | Path | None,
    feature: str | None = None,
    id_pattern: str = r"(\d+)",
    zero_missing: Sequence[str] = ZERO_MISSING,
) -> TrafficData:
    """One ``Stamp,value`` CSV per detector (the id is the first match of ``id_pattern`` in the file name),
    aligned on one regular time grid; steps absent from a file are NaN. The feature is ``feature``, else the
    name the files' header gives their value column (``Stamp,Speed(m/h)``: speed)."""
    if not files:
        raise DataError("no detector files given")
    ids, series, named = [], [], {}
    for path in sorted(map(Path, files)):
        match = re.search(id_pattern, path.name)
        if not match:
            raise DataError(f"{path}: no detector id in the file name (pattern {id_pattern!r})")
        header, *rows = read_csv(path) or [[]]
        named[path] = header[1].strip() if len(header) == 2 else ""
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
    longest = max(len(stamps) for stamps, _ in series)
    if (end - start) // interval + 1 > max(100 * longest, 100_000):  # a stray stamp: a grid of millions of steps
        column = max(range(len(ids)), key=lambda c: series[c][0].max() - series[c][0].min())
        first, last = (np.datetime64(int(t), "s") for t in (series[column][0].min(), series[column][0].max()))
        raise DataError(
            f"detector {ids[column]}: time stamps from {first} to {last}, over 100 times the {longest} readings of "
            f"the longest file at one every {interval} s; a stamp far off?"
        )
    timestamps = np.arange(start, end + 1, interval)
    grid = np.full((len(timestamps), len(ids)), np.nan, dtype=np.float32)
    for column, (stamps, readings) in enumerate(series):
        offset = stamps - start
        if (offset % interval).any():
            raise DataError(f"detector {ids[column]}: timestamps off the {interval}-second grid")
        grid[offset // interval, column] = readings
    feature = feature or _header_feature(named)
    return _assemble(
        grid[:, :, None], ids, timestamps, locations, (feature,), f"{len(files)} detector files", zero_missing
    )


def _header_feature(headers: dict[Path, str]) -> str:
    """The feature the files' headers name for their value column, the same in all (lower case, a unit in
    brackets dropped: ``Speed(m/h)`` is speed)."""
    found = {}
    for path, text in headers.items():
        name = re.fullmatch(r"([A-Za-z][\w ]*?)\s*(?:\(.*\)|\[.*\])?", text)
        if not name:
            raise DataError(
                f"{path}: the header does not name the readings' feature ({text!r}); give --feature, e.g. "
                f"--feature speed"
            )
        found.setdefault(name.group(1).lower(), path)
    if len(found) > 1:
        (one, first), (other, second) = list(found.items())[:2]
        raise DataError(
            f"the files' headers name different features: {one} ({first}), {other} ({second}); give --feature"
        )
    return next(iter(found))


def import_pandas_h5(
    path: str | Path,
    locations: str | Path | None,
    *,
    feature: str,
    key: str = "df",
    zero_missing: Sequence[str] = ZERO_MISSING,
) -> TrafficData:
    """The standard ``metr-la.h5`` / ``pems-bay.h5``: a DataFrame in a pandas store (key ``df``, a column per
    detector, a datetime index), which does not say what it holds: ``feature`` names it."""
    with PandasFrame(path, key) as frame:
        readings = frame.rows(0, len(frame.timestamps), frame.columns).astype(np.float32)
        return _assemble(
            readings[:, :, None], frame.columns, frame.timestamps, locations, (feature,), str(path), zero_missing
        )


def _assemble(
    readings: np.ndarray,
    ids: list[str],
    timestamps: np.ndarray,
    locations: str | Path | None,
    features: tuple[str, ...],
    source: str,
    zero_missing: Sequence[str],
) -> TrafficData:
    """``readings [T, N, F]`` as ``TrafficData``, zeros of the ``zero_missing`` features made NaN."""
    latlon = None
    if locations is not None:
        where = read_locations(locations)
        unknown = [vd for vd in ids if vd not in where]
        if unknown:
            raise DataError(
                f"{locations}: no location for {len(unknown)} sensor id(s) of {source}: {', '.join(unknown[:5])}"
            )
        latlon = np.array([where[vd] for vd in ids], dtype=np.float64)
    zeros = np.array([name in zero_missing for name in features])
    readings = np.where((readings == 0) & zeros, np.nan, readings)
    return TrafficData(
        readings.astype(np.float32), tuple(ids), features, timestamps.astype(np.int64), latlon, source=source
    )


def _parse_time(text: str, where: str | Path) -> int:
    try:
        return int(np.datetime64(text, "s").astype(np.int64))
    except ValueError:
        raise DataError(f"{where}: start time {text!r} is not ISO 8601 (e.g. 2012-03-01T00:00)") from None
