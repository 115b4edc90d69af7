"""The HDF5 schema, read and written::

data/features               float32 [T, N, F]   NaN = missing
metadata/vdids              str [N]
metadata/feature_names      str [F]
metadata/timestamps         str [T]   ISO 8601 local time
metadata/timestamps_epoch   int64 [T] seconds (local wall-clock time as if UTC)
metadata/vd_info/<vdid>     group, attrs position_lat, position_lon (degrees), and optional string
                            attrs such as road, direction (used by the pooling's ``same`` filter)
metadata/road_graph/        optional group, attr ``directed`` (bool); one entry per link, traffic flowing
    source                  int64 [E]   from this VD (index into metadata/vdids) ...
    target                  int64 [E]   ... to this one
    cost                    float64 [E] optional: road distance in metres
    weight                  float64 [E] optional: a given link weight (e.g. DCRNN's Gaussian kernel)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import h5py
import numpy as np

from core.data.dataset import Layout, TrafficData, check_finite, check_layout, time_blocks
from core.data.disk import DTYPE, DiskReadings
from core.errors import DataError
from core.graph import RoadGraph
from core.io import atomic_write


def read_hdf5(path: str | Path, store: str = "memory", last_steps: int | None = None) -> TrafficData:
    """The file's series; ``store = "disk"`` leaves its readings on disk (``DiskReadings``), which needs them
    stored contiguous and uncompressed (``write_hdf5(..., contiguous=True)``, ``python -m core.data repack``).
    ``last_steps``: only the file's last steps, read into memory whatever the store (a forecast of its latest
    window)."""
    with _open(path) as (f, path):
        layout = _read_layout(f, path)
        dataset = f["data/features"]
        if last_steps is not None:
            tail = slice(max(0, dataset.shape[0] - last_steps), None)
            layout = attrs.evolve(layout, timestamps=layout.timestamps[tail])
            features = np.asarray(dataset[tail], dtype=np.float32)
        elif store == "memory":
            features = np.asarray(dataset, dtype=np.float32)
        else:
            features = _on_disk(dataset, path)
    return TrafficData(features, **attrs.asdict(layout, recurse=False))


@contextmanager
def open_readings(path: str | Path) -> Iterator[tuple[Layout, h5py.Dataset]]:
    """The file's ``Layout`` and its ``data/features``, open while the block runs, to be read a block of steps
    at a time."""
    with _open(path) as (f, path):
        yield _read_layout(f, path), f["data/features"]


@contextmanager
def _open(path: str | Path) -> Iterator[tuple[h5py.File, Path]]:
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not an HDF5 data file")
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise DataError(f"{path}: not a readable HDF5 file: {error}") from None
    try:
        yield f, path
    except OSError as error:
        raise DataError(f"{path}: not a readable HDF5 file: {error}") from None
    finally:
        f.close()


def _read_layout(f: h5py.File, path: Path) -> Layout:
    """All of the open file ``f`` but its readings."""
    dataset = _require(f, path, "data/features", "float32 [T, N, F]")
    if dataset.ndim != 3:
        raise DataError(f"{path}: data/features must be [T, N, F], got shape {dataset.shape}")
    vd_ids = _strings(_require(f, path, "metadata/vdids", "str [N]"))
    names = _strings(f["metadata/feature_names"]) if "metadata/feature_names" in f else _default_names(dataset.shape)
    layout = Layout(
        vd_ids,
        names,
        _timestamps(f, path, dataset.shape[0]),
        _positions(info := _vd_info(f, vd_ids)),
        source=str(path),
        vd_attributes=_attributes(info),
    )
    check_layout(layout, dataset.shape)
    return attrs.evolve(layout, road_graph=_road_graph(f, path, len(vd_ids)))


def _on_disk(dataset: h5py.Dataset, path: Path) -> DiskReadings:
    offset = dataset.id.get_offset()
    if dataset.chunks is not None or dataset.dtype != DTYPE or offset is None:
        stored = (
            f"{dataset.dtype}, "
            + ("chunked" if dataset.chunks else "contiguous")
            + (f", {dataset.compression}" if dataset.compression else "")
        )
        raise DataError(
            f'{path}: [data] store = "disk" reads data/features from the file as the windows need it, which needs '
            f"it stored contiguous and uncompressed as float32 (this file's: {stored}); rewrite it so with "
            f"python -m core.data repack {path} --contiguous --out NEW.h5"
        )
    return DiskReadings(path, offset, dataset.shape)


def describe_hdf5(path: str | Path) -> set[str] | None:
    """What the file offers besides readings, without reading them: ``"positions"`` (some VD has one) and
    ``"road_graph"``; None for a file that cannot be read (reading it later says why)."""
    try:
        with h5py.File(path, "r") as f:
            vd_ids = _strings(f["metadata/vdids"])
            offered = {"road_graph"} if "metadata/road_graph" in f else set()
            info = f["metadata/vd_info"] if "metadata/vd_info" in f else {}
            located = any(_position(info[vd].attrs) is not None for vd in vd_ids if vd in info)  # stops at the first
    except (OSError, KeyError):
        return None
    return offered | ({"positions"} if located else set())  # a VD without one: named when built


def write_hdf5(data: TrafficData, path: str | Path, contiguous: bool = False) -> Path:
    """Write atomically: a temporary file in the same folder, renamed over ``path`` when complete. The readings
    are gzip-compressed in chunks, or with ``contiguous`` stored as they are, which ``[data] store = "disk"``
    needs."""
    return write_hdf5_stream(data, (block for _, block in time_blocks(data.features)), path, contiguous)


def write_hdf5_stream(layout: Layout, blocks: Iterable[np.ndarray], path: str | Path, contiguous: bool = False) -> Path:
    """Write the readings that ``layout`` describes as they come: ``blocks`` are consecutive float32
    [t, N, F] steps (their t summing to T), written one at a time, so memory holds one block, never the file.
    Atomic and laid out like ``write_hdf5``."""
    path = Path(path)

    def write(tmp: Path) -> None:
        t, n, f = layout.shape
        rows = max(1, min(t, CHUNK_VALUES // (n * f)))
        with h5py.File(tmp, "w", rdcc_nbytes=8 * CHUNK_VALUES * 4) as out:  # a chunk half-written stays cached
            stored = {} if contiguous else {"chunks": (rows, n, f), "compression": "gzip", "compression_opts": 4}
            features = out.create_dataset("data/features", (t, n, f), DTYPE, **stored)
            done = 0
            for block in blocks:
                if block.shape[1:] != (n, f) or done + len(block) > t:
                    raise DataError(
                        f"{layout.source}: a block of readings of shape {block.shape} after {done} of "
                        f"{t} steps; expected [t, {n}, {f}]"
                    )
                check_finite(layout.source, block, layout.vd_ids, layout.feature_names, first_step=done)
                features[done : done + len(block)] = block
                done += len(block)
            if done != t:
                raise DataError(f"{layout.source}: {done} steps of readings for {t} timestamps")
            _write_metadata(out, layout)

    return _atomic(path, write)


CHUNK_VALUES = 1 << 18  # float32 values per chunk of data/features written by write_hdf5_stream (1 MiB)


def _atomic(path: Path, write) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write(path, write)
    except OSError as error:
        raise DataError(f"{path}: cannot write: {error.strerror or error}") from None


def _write_metadata(f: h5py.File, data: Layout) -> None:
    text = h5py.string_dtype()
    f.create_dataset("metadata/vdids", data=np.array(data.vd_ids, dtype=object), dtype=text)
    f.create_dataset("metadata/feature_names", data=np.array(data.feature_names, dtype=object), dtype=text)
    iso = np.datetime_as_string(data.timestamps.astype("datetime64[s]"), unit="s")
    f.create_dataset("metadata/timestamps", data=iso.astype(object), dtype=text)
    f.create_dataset("metadata/timestamps_epoch", data=data.timestamps.astype(np.int64))
    info = f.create_group("metadata/vd_info")
    for i, vd in enumerate(data.vd_ids):
        group = info.create_group(vd)
        if data.latlon is not None and np.isfinite(data.latlon[i]).all():
            group.attrs["position_lat"], group.attrs["position_lon"] = data.latlon[i]
        for name, values in data.vd_attributes.items():
            if values[i]:
                group.attrs[name] = values[i]
    if data.road_graph is not None:
        graph = f.create_group("metadata/road_graph")
        graph.attrs["directed"] = data.road_graph.directed
        for name in ("source", "target", "cost", "weight"):
            if (values := getattr(data.road_graph, name)) is not None:
                graph.create_dataset(name, data=values)


def _require(f: h5py.File, path: Path, key: str, expected: str) -> h5py.Dataset:
    if key not in f or not isinstance(f[key], h5py.Dataset):
        raise DataError(f"{path}: missing dataset '{key}' (expected {expected})")
    return f[key]


def _strings(dataset: h5py.Dataset) -> tuple[str, ...]:
    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in dataset[()].tolist())


def _default_names(shape: tuple[int, ...]) -> tuple[str, ...]:
    return ("speed",) if shape[-1] == 1 else tuple(f"feature_{i}" for i in range(shape[-1]))


def _timestamps(f: h5py.File, path: Path, steps: int) -> np.ndarray:
    if "metadata/timestamps_epoch" in f:
        return np.asarray(f["metadata/timestamps_epoch"][()], dtype=np.int64)
    if "metadata/timestamps" in f:
        strings = _strings(f["metadata/timestamps"])
        try:
            return np.array(strings, dtype="datetime64[s]").astype(np.int64)
        except ValueError as error:
            raise DataError(f"{path}: metadata/timestamps are not ISO 8601 times: {error}") from None
    raise DataError(f"{path}: missing dataset 'metadata/timestamps_epoch' or 'metadata/timestamps' ({steps} times)")


def _vd_info(f: h5py.File, vd_ids: tuple[str, ...]) -> list[dict] | None:
    """Each VD's attributes in ``metadata/vd_info/<vdid>`` (``{}`` where it has no group), each group read once;
    None for a file without ``metadata/vd_info``."""
    if "metadata/vd_info" not in f:
        return None
    info = f["metadata/vd_info"]
    return [dict(info[vd].attrs) if vd in info else {} for vd in vd_ids]


def _position(attributes) -> tuple[float, float] | None:
    """A VD's (lat, lon) from its attributes, None where it has no finite one."""
    if "position_lat" not in attributes or "position_lon" not in attributes:
        return None
    latlon = float(attributes["position_lat"]), float(attributes["position_lon"])
    return latlon if np.isfinite(latlon).all() else None


def _positions(per_vd: list[dict] | None) -> np.ndarray | None:
    """[N, 2] lat, lon (NaN where a VD has none); None where no VD has one."""
    latlon = [_position(attributes) for attributes in per_vd or ()]
    if not any(position is not None for position in latlon):
        return None  # no position at all: a file without positions
    return np.array([position or (np.nan, np.nan) for position in latlon])


def _road_graph(f: h5py.File, path: Path, num_vds: int) -> RoadGraph | None:
    if "metadata/road_graph" not in f:
        return None
    group = f["metadata/road_graph"]
    arrays = {name: np.asarray(group[name][()]) for name in ("source", "target", "cost", "weight") if name in group}
    if "source" not in arrays or "target" not in arrays:
        raise DataError(f"{path}: metadata/road_graph needs datasets 'source' and 'target' (VD indices per link)")
    try:
        return RoadGraph(
            num_vds,
            arrays["source"].astype(np.int64),
            arrays["target"].astype(np.int64),
            arrays.get("cost"),
            arrays.get("weight"),
            bool(group.attrs.get("directed", True)),
        )
    except DataError as error:
        raise DataError(f"{path}: {str(error).replace('road graph:', 'metadata/road_graph:', 1)}") from None


def _attributes(per_vd: list[dict] | None) -> dict[str, tuple[str, ...]]:
    """Every string attribute of ``metadata/vd_info/<vdid>``: ``{name: value per VD ("" where absent)}``."""
    if per_vd is None:
        return {}
    names = sorted({k for attrs in per_vd for k, v in attrs.items() if isinstance(v, (str, bytes))})
    text = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
    return {name: tuple(text(attrs.get(name, "")) for attrs in per_vd) for name in names}
