"""A DataFrame in a pandas HDF5 store (``df.to_hdf(path, key)``, the default ``fixed`` format), read with h5py by
row ranges, so a file larger than memory can be read a slice of time at a time, without pandas.

The ``fixed`` layout of a frame with a datetime index (rows) and one column per detector::

    <key>/axis0             the column names: bytes, or int64 for integer names
    <key>/axis1             the index: int64 counts of the unit in attr ``kind`` ("datetime64" = ns,
                            "datetime64[us]" = us, ...); attr ``tz`` when the index is timezone-aware
    <key>/block<i>_items    the columns of block i
    <key>/block<i>_values   [rows, columns of block i] (attr ``transposed``: stored as rows x columns)

and the group's attr ``nblocks`` (blocks group the columns of one dtype).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from core.errors import DataError


class PandasFrame:
    """An open frame: ``columns`` (names as strings), ``timestamps`` (int64 seconds of the index's wall-clock
    time) and ``rows(start, stop, columns)``. Use as a context manager; it closes the file."""

    def __init__(self, path: str | Path, key: str) -> None:
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r")
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
        except OSError as error:
            raise DataError(f"{path}: not a readable HDF5 file: {error}") from None
        try:
            self._read_layout(key)
        except BaseException:
            self._file.close()
            raise

    def _read_layout(self, key: str) -> None:
        where = f"{self.path}: '{key}'"
        if key not in self._file:
            raise DataError(f"{self.path}: no pandas frame '{key}' (keys: {', '.join(self._file) or 'none'})")
        group = self._file[key]
        if _text(group.attrs.get("pandas_type", b"")) == "frame_table":
            raise DataError(f"{where} is a pandas 'table' format store; expected the default 'fixed' format")
        blocks = int(group.attrs.get("nblocks", 0))
        names = ["axis0", "axis1", *(f"block{i}_{part}" for i in range(blocks) for part in ("items", "values"))]
        absent = [name for name in names if name not in group]
        if not blocks or absent:
            raise DataError(
                f"{where} is not a pandas fixed-format DataFrame (missing {', '.join(absent) or 'nblocks'})"
            )
        self.columns = _names(group["axis0"][()])
        self.timestamps = _seconds(group["axis1"], where)
        self._blocks = [group[f"block{i}_values"] for i in range(blocks)]
        self._where = {}  # column name -> (block, position in the block)
        for i in range(blocks):
            items = _names(group[f"block{i}_items"][()])
            if self._blocks[i].shape != (len(self.timestamps), len(items)):
                raise DataError(
                    f"{where}: block{i}_values has shape {self._blocks[i].shape}, expected "
                    f"[{len(self.timestamps)} rows, {len(items)} columns]"
                )
            self._where.update({name: (i, j) for j, name in enumerate(items)})

    def rows(self, start: int, stop: int, columns: Sequence[str]) -> np.ndarray:
        """float64 ``[stop - start, len(columns)]``: those rows of those columns (each block read once)."""
        out = np.empty((stop - start, len(columns)))
        wanted = np.array([self._where[name] for name in columns], dtype=np.int64).reshape(-1, 2)
        for block in np.unique(wanted[:, 0]):
            mine = np.flatnonzero(wanted[:, 0] == block)
            out[:, mine] = self._blocks[block][start:stop][:, wanted[mine, 1]]
        return out

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> PandasFrame:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _names(values: np.ndarray) -> list[str]:
    return [_text(v) for v in values.tolist()]


def _seconds(axis: h5py.Dataset, where: str) -> np.ndarray:
    kind = _text(axis.attrs.get("kind", b""))
    if not kind.startswith("datetime64"):
        raise DataError(f"{where}: the index is not a datetime index (kind {kind!r})")
    if "tz" in axis.attrs:
        raise DataError(
            f"{where}: the index is timezone-aware ({_text(axis.attrs['tz'])}); expected local wall-clock times"
        )
    unit = kind[len("datetime64[") : -1] if kind.endswith("]") else "ns"  # pandas < 2 wrote "datetime64": ns
    return np.asarray(axis[()], dtype=np.int64).astype(f"datetime64[{unit}]").astype("datetime64[s]").astype(np.int64)
