"""Readings left on disk: ``[data] store = "disk"`` reads a file's ``data/features`` as the windows need them, so
that a series longer than memory trains."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DTYPE = np.dtype("<f4")


class DiskReadings:
    """``data/features`` float32 [T, N, F] of an HDF5 file that stores it contiguous and uncompressed (at byte
    ``offset``), read from the file when indexed along time, never held whole.

    ``readings[lo:hi]`` reads those steps; ``readings[steps]`` (an integer array of any shape) reads the distinct
    steps it names, a run of consecutive steps at a time, into ``[*steps.shape, N, F]``. Reads go through the
    operating system's page cache, not through a memory map, so the process keeps only what it was given.
    """

    ndim = 3
    dtype = DTYPE

    def __init__(self, path: str | Path, offset: int, shape: tuple[int, int, int]):
        self.path, self.offset, self.shape = str(path), int(offset), tuple(int(size) for size in shape)
        self._file, self._pid = None, None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        if isinstance(key, slice):
            lo, hi, stride = key.indices(len(self))
            if stride != 1:
                raise IndexError(f"{self.path}: readings on disk are sliced by consecutive steps, got step {stride}")
            out = np.empty((max(hi - lo, 0), *self.shape[1:]), DTYPE)
            self._read(lo, out)
            return out
        steps = np.asarray(key)
        if steps.dtype.kind not in "iu" or (steps.size and (steps.min() < 0 or steps.max() >= len(self))):
            raise IndexError(f"{self.path}: steps must be integers in [0, {len(self)}), got {key!r:.80}")
        rows, inverse = np.unique(steps, return_inverse=True)
        buffer = np.empty((len(rows), *self.shape[1:]), DTYPE)
        runs = np.flatnonzero(np.diff(rows) != 1) + 1  # where a run of consecutive steps starts
        for first, end in zip((0, *runs), (*runs, len(rows))):
            self._read(int(rows[first]), buffer[first:end])
        return buffer[inverse.reshape(steps.shape)]

    def _read(self, first: int, out: np.ndarray) -> None:
        """Steps ``first ..`` into ``out`` [t, N, F]."""
        handle = self._handle()
        handle.seek(self.offset + first * out[0].nbytes if len(out) else self.offset)
        if handle.readinto(memoryview(out).cast("B")) != out.nbytes:
            raise OSError(f"{self.path}: the file ends before step {first + len(out)} of its data/features")

    def _handle(self):
        """This process's own handle: a DataLoader worker must not share a file position with its parent."""
        if self._pid != os.getpid():
            self._file, self._pid = open(self.path, "rb"), os.getpid()  # noqa: SIM115 (kept open while in use)
        return self._file

    def __getstate__(self) -> dict:
        return {"path": self.path, "offset": self.offset, "shape": self.shape}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)
