"""LargeST (Liu et al., NeurIPS 2023) as released: 8,600 California detectors, one year of 5-minute traffic flow per
file, streamed into the project's HDF5 schema a slice of time at a time.

- readings: ``ca_his_raw_{year}.h5`` (the Kaggle release: 5-minute flow, NaN where PeMS has none) or a file that
  LargeST's notebooks derive from it (``ca_his_{year}.h5``, 15-minute means with NaN filled by 0, and
  ``{sd,gba,gla}_his_{year}.h5``, its columns of one sub-network): one pandas DataFrame stored with
  ``to_hdf(key="t")`` (fixed format), a row per time step, a column per sensor ID;
- ``{name}_meta.csv``: a row per sensor (``ID,Lat,Lng,District,County,Fwy,Lanes,Type,Direction,ID2``);
- ``{name}_rn_adj.npy``: float [N, N] in the meta's row order, a Gaussian kernel of road distances (0: no link).

The sub-networks are Caltrans districts (LargeST's ``data/{sd,gba,gla}/generate_*_dataset.ipynb``): SD 11, GBA 4,
GLA 7, 8 and 12. ``resample_s`` aggregates as LargeST's benchmark does (``process_ca_his.ipynb``): the mean of
the readings present in each period, rounded to whole vehicles; a period with none is missing (LargeST writes 0
there and its metrics mask every 0 label, hence ``zero_missing = ("flow",)``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from core.data.csv_files import is_number, read_csv
from core.data.dataset import FeatureCounts, Layout, regular_interval
from core.data.hdf5 import write_hdf5_stream
from core.data.pandas_store import PandasFrame
from core.data.road_graph import RoadGraph
from core.errors import DataError

NETWORKS = {"sd": (11,), "gba": (4,), "gla": (7, 8, 12)}  # Caltrans districts; "ca": every sensor
FEATURE = "flow"  # LargeST's readings: vehicles per 5 minutes (per period after resampling)
KEY = "t"
NOT_ATTRIBUTES = ("id", "lat", "lng", "id2")  # id, position, and ID2: a row index into CA's files
READ_BYTES = 64 << 20  # float64 readings read at once


def import_largest(
    his: str | Path,
    meta: str | Path,
    out: str | Path,
    adjacency: str | Path | None = None,
    network: str = "ca",
    since: str | None = None,
    until: str | None = None,
    resample_s: int | None = None,
    zero_missing: Sequence[str] = (FEATURE,),
    read_bytes: int = READ_BYTES,
    contiguous: bool = False,
) -> tuple[Layout, FeatureCounts]:
    """Write ``out`` from LargeST's readings ``his`` for the sensors of ``network`` in ``meta`` (positions and
    string attributes), with the road graph of ``adjacency``; rows from ``since`` (inclusive) to ``until``
    (exclusive), ISO 8601. Memory holds ``read_bytes`` of readings at a time, whatever the file's length.
    With ``contiguous`` the readings are written uncompressed, for ``[data] store = "disk"``. Returns what was
    written and its counts of missing and zero readings."""
    ids, latlon, attributes, districts = read_meta(meta)
    keep = _network_rows(network, len(ids), districts, meta)
    graph = read_rn_adjacency(adjacency, len(ids), keep) if adjacency else None
    vd_ids = [ids[i] for i in keep]
    with PandasFrame(his, KEY) as frame:
        absent = sorted(set(vd_ids) - set(frame.columns))
        if absent:
            raise DataError(f"{his}: {len(absent)} sensor ID(s) of {meta} have no column, e.g. {', '.join(absent[:5])}")
        first, stop = _time_range(frame.timestamps, since, until, his)
        starts, timestamps = _periods(frame.timestamps[first:stop], resample_s, his)
        layout = Layout(
            tuple(vd_ids),
            (FEATURE,),
            timestamps,
            latlon[keep],
            str(his),
            {name: tuple(values[i] for i in keep) for name, values in attributes.items()},
            graph,
        )
        counts = FeatureCounts(0, np.zeros(1, np.int64), np.zeros(1, np.int64))
        rows_per_period = int(np.diff(starts, append=stop - first).max())
        per_read = max(1, read_bytes // (8 * len(frame.columns) * rows_per_period))
        mean, zeros = resample_s is not None, FEATURE in zero_missing
        blocks = _blocks(frame, vd_ids, first + starts, stop, per_read, mean, zeros, counts)
        write_hdf5_stream(layout, blocks, out, contiguous)
    return layout, counts


def read_meta(path: str | Path) -> tuple[list[str], np.ndarray, dict[str, tuple[str, ...]], list[str] | None]:
    """LargeST's ``{name}_meta.csv``: sensor ids, (lat, lon) [N, 2], the other columns (but ``ID2``) as string
    attributes named in lower case, and the districts (None without a ``District`` column)."""
    rows = read_csv(path)
    header = [name.strip() for name in rows[0]] if rows else []
    column = {name.lower(): i for i, name in enumerate(header)}
    missing = [name for name in ("ID", "Lat", "Lng") if name.lower() not in column]
    if missing:
        raise DataError(f"{path}: no column {', '.join(missing)} (LargeST's header: ID,Lat,Lng,District,...)")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}: line {line} has {len(row)} values, the header has {len(header)}")
        lat, lon = row[column["lat"]], row[column["lng"]]
        if not (is_number(lat) and is_number(lon) and abs(float(lat)) <= 90 and abs(float(lon)) <= 180):
            raise DataError(f"{path}: line {line}: Lat {lat!r} or Lng {lon!r} is not a position in degrees")
    body = rows[1:]
    ids = [row[column["id"]].strip() for row in body]
    latlon = np.array([[float(row[column["lat"]]), float(row[column["lng"]])] for row in body]).reshape(-1, 2)
    attributes = {
        name.lower(): tuple(row[i].strip() for row in body)
        for i, name in enumerate(header)
        if name.lower() not in NOT_ATTRIBUTES
    }
    return ids, latlon, attributes, list(attributes["district"]) if "district" in attributes else None


def read_rn_adjacency(path: str | Path, num_sensors: int, keep: np.ndarray, rows: int = 256) -> RoadGraph:
    """LargeST's ``{name}_rn_adj.npy`` [N, N] (the meta's row order) cut to the sensors ``keep``: each non-zero
    off the diagonal is a link row → column with that weight. Read ``rows`` rows at a time, in file order (a
    memory map would hold every page it touched: CA's matrix is 590 MB)."""
    try:
        with open(path, "rb") as f:
            shape, fortran, dtype = _npy_header(f, path)
            if shape != (num_sensors, num_sensors) or fortran:
                raise DataError(
                    f"{path}: shape {shape}{' (Fortran order)' if fortran else ''}; expected [{num_sensors}, "
                    f"{num_sensors}], the meta's sensors, in C order"
                )
            position = np.full(num_sensors, -1)
            position[keep] = np.arange(len(keep))
            source, target, weight = [], [], []
            for lo in range(0, num_sensors, rows):
                block = np.fromfile(f, dtype, count=min(rows, num_sensors - lo) * num_sensors)
                block = block.reshape(-1, num_sensors)[position[lo : lo + rows] >= 0][:, keep].astype(np.float64)
                mine = position[lo : lo + rows][position[lo : lo + rows] >= 0]
                bad = ~(np.isfinite(block) & (block >= 0))
                if bad.any():
                    row, col = np.argwhere(bad)[0]
                    raise DataError(
                        f"{path}: row {keep[mine[row]]}, column {keep[col]}: {block[row, col]} is not a weight >= 0"
                    )
                block[np.arange(len(block)), mine] = 0.0  # a sensor's weight to itself: no link
                i, j = np.nonzero(block)
                source.append(mine[i])
                target.append(j)
                weight.append(block[i, j])
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable .npy array: {error}") from None
    return RoadGraph(len(keep), np.concatenate(source), np.concatenate(target), weight=np.concatenate(weight))


def _npy_header(f, path: str | Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise DataError(f"{path}: .npy format version {version} is not supported")


def _network_rows(network: str, num_sensors: int, districts: list[str] | None, meta: str | Path) -> np.ndarray:
    """The meta's rows of ``network``'s sensors: every row for "ca", else those of its districts."""
    if network == "ca":
        return np.arange(num_sensors)
    if network not in NETWORKS:
        raise DataError(f"unknown network {network!r}; LargeST's: ca, {', '.join(NETWORKS)}")
    if districts is None:
        raise DataError(f"{meta}: no District column to select {network.upper()} by")
    numbers = np.array([float(d) if is_number(d) else np.nan for d in districts])  # "7" or "7.0"
    keep = np.flatnonzero(np.isin(numbers, NETWORKS[network]))
    if not len(keep):
        raise DataError(f"{meta}: no sensor of district(s) {NETWORKS[network]} ({network.upper()})")
    return keep


def _time_range(timestamps: np.ndarray, since: str | None, until: str | None, where) -> tuple[int, int]:
    bounds = []
    for text, default in ((since, 0), (until, len(timestamps))):
        if text is None:
            bounds.append(default)
            continue
        try:
            moment = np.datetime64(text, "s").astype(np.int64)
        except ValueError:
            raise DataError(f"{where}: {text!r} is not an ISO 8601 time (e.g. 2019-01-01)") from None
        bounds.append(int(np.searchsorted(timestamps, moment)))
    if bounds[0] >= bounds[1]:
        first, last = (np.datetime64(int(t), "s") for t in timestamps[[0, -1]]) if len(timestamps) else ("-", "-")
        raise DataError(
            f"{where}: no row from {since or 'the start'} to {until or 'the end'} (the file: {first} to {last})"
        )
    return bounds[0], bounds[1]


def _periods(timestamps: np.ndarray, resample_s: int | None, where) -> tuple[np.ndarray, np.ndarray]:
    """The first row of each output step and its time: every row, or each ``resample_s`` period that has rows
    (periods start at midnight, like pandas' ``resample``; one with no row at all, a gap in the file's index, is
    left out: a time jump, where pandas would write an empty period)."""
    if resample_s is None:
        return np.arange(len(timestamps)), timestamps
    interval = regular_interval(timestamps)
    if resample_s % interval or 86400 % resample_s:
        raise DataError(
            f"{where}: --resample {resample_s} must be a multiple of the file's {interval} s step and divide a day"
        )
    period = timestamps // resample_s
    starts = np.flatnonzero(np.diff(period, prepend=period[0] - 1))
    return starts, period[starts] * resample_s


def _blocks(
    frame: PandasFrame,
    columns: list[str],
    starts: np.ndarray,
    stop: int,
    per_read: int,
    mean: bool,
    zeros_missing: bool,
    counts: FeatureCounts,
) -> Iterator[np.ndarray]:
    """float32 [periods, N, 1] blocks: ``per_read`` output steps at a time, each the row at ``starts[k]`` or, with
    ``mean``, LargeST's rounded mean of the rows up to the next start; ``counts`` counts them as they go."""
    for lo in range(0, len(starts), per_read):
        first = starts[lo]
        last = starts[lo + per_read] if lo + per_read < len(starts) else stop
        values = frame.rows(first, last, columns)
        if mean:
            heads = starts[lo : lo + per_read] - first
            present = ~np.isnan(values)
            seen = np.add.reduceat(present, heads, axis=0)
            total = np.add.reduceat(np.where(present, values, 0.0), heads, axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                values = np.round(np.where(seen > 0, total / seen, np.nan))
        if zeros_missing:
            values[values == 0] = np.nan
        block = values.astype(np.float32)[:, :, None]
        counts.add(block)
        yield block
