"""``TrafficData``: one detector network's multivariate series in memory, checked on construction; ``Layout``:
all of it but the readings."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import attrs
import numpy as np

from core.data.disk import DiskReadings
from core.data.geo import project_to_metres
from core.errors import DataError, closest
from core.graph import RoadGraph


@attrs.frozen(eq=False)
class Layout:
    """What the series of N VDs over T steps are, all but the readings (what an import that streams them knows
    beforehand).

    ``timestamps`` are seconds since 1970-01-01 of the local wall-clock time (time of day is read off them).
    ``latlon`` holds (lat, lon) in degrees per VD, NaN where unknown, or is None when the file has none.
    ``vd_attributes`` maps an attribute name (e.g. ``road``, ``direction``) to one string per VD, "" where unknown.
    ``road_graph`` holds the directed road links between the VDs, or is None when the file has none.
    """

    vd_ids: tuple[str, ...]
    feature_names: tuple[str, ...]
    timestamps: np.ndarray  # int64 [T]
    latlon: np.ndarray | None = None  # float64 [N, 2]
    source: str = "<memory>"
    vd_attributes: dict[str, tuple[str, ...]] = attrs.Factory(dict)
    road_graph: RoadGraph | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """[T, N, F] of the readings it describes."""
        return len(self.timestamps), len(self.vd_ids), len(self.feature_names)

    def __attrs_post_init__(self) -> None:
        check_layout(self, self.shape)


def _readings_first(cls, fields: list[attrs.Attribute]) -> list[attrs.Attribute]:
    return sorted(fields, key=lambda field: field.name != "features")  # TrafficData(features, vd_ids, ...)


@attrs.frozen(eq=False, field_transformer=_readings_first)
class TrafficData(Layout):
    """A ``Layout`` with its readings ``features`` [T, N, F] (float32; NaN marks a missing reading), the first
    argument: ``TrafficData(features, vd_ids, feature_names, timestamps, ...)``. The readings are in memory, or
    left on disk (``DiskReadings``) and then only ever read a block of steps at a time (``time_blocks``)."""

    features: np.ndarray | DiskReadings  # float32 [T, N, F]

    def __attrs_post_init__(self) -> None:
        if self.features.ndim != 3:
            raise DataError(f"{self.source}: data/features must be [T, N, F], got shape {self.features.shape}")
        check_layout(self, self.features.shape)
        check_finite(self.source, self.features, self.vd_ids, self.feature_names)

    @property
    def num_steps(self) -> int:
        return self.features.shape[0]

    @property
    def interval(self) -> int:
        """The most common step between readings, in seconds."""
        return regular_interval(self.timestamps)

    def time_jumps(self) -> np.ndarray:
        """The steps whose distance from the previous step is not ``interval`` (ascending; empty: regular)."""
        return time_jumps(self.timestamps)

    def select(self, vds: tuple[str, ...]) -> TrafficData:
        """Only the VDs ``vds``, in that order (``[data] vds``); an unknown id is an error naming it. Readings
        left on disk are read into memory unless ``vds`` are all the VDs in their order."""
        index = {vd: i for i, vd in enumerate(self.vd_ids)}
        unknown = [vd for vd in vds if vd not in index]
        if unknown:
            raise DataError(
                f"{self.source}: data.vds: unknown VD id(s) {', '.join(repr(vd) for vd in unknown[:5])}"
                f"{closest(unknown[0], self.vd_ids)}; the data has {len(self.vd_ids)} VDs, e.g. "
                f"{', '.join(self.vd_ids[:3])}"
            )
        keep = np.array([index[vd] for vd in vds], dtype=np.int64)
        if tuple(vds) == self.vd_ids:
            return self
        return attrs.evolve(
            self,
            features=np.concatenate([block[:, keep] for _, block in time_blocks(self.features)]),
            vd_ids=tuple(vds),
            latlon=None if self.latlon is None else self.latlon[keep],
            vd_attributes={name: tuple(values[i] for i in keep) for name, values in self.vd_attributes.items()},
            road_graph=None if self.road_graph is None else self.road_graph.select(keep),
        )

    def positions_xy(self) -> np.ndarray | None:
        """VD positions in metres (a local transverse Mercator projection), NaN where unknown."""
        return None if self.latlon is None else project_to_metres(self.latlon)

    def feature_index(self, name: str, key: str = "data.target") -> int:
        if name not in self.feature_names:
            raise DataError(
                f"{self.source}: {key} '{name}' is not a feature of the data; features: {', '.join(self.feature_names)}"
            )
        return self.feature_names.index(name)


def check_layout(data: Layout, shape: tuple[int, int, int]) -> None:
    """What must hold between the readings' ``shape`` [T, N, F] and ``data``'s ids, names, timestamps, positions,
    attributes and road graph; an error names ``data.source``."""
    t, n, f = shape
    where = data.source
    if len(data.vd_ids) != n:
        raise DataError(f"{where}: metadata/vdids has {len(data.vd_ids)} ids but data/features has {n} VDs")
    if len(data.feature_names) != f:
        raise DataError(
            f"{where}: metadata/feature_names has {len(data.feature_names)} names but data/features has {f} features"
        )
    if len(data.timestamps) != t:
        raise DataError(
            f"{where}: metadata/timestamps has {len(data.timestamps)} entries but data/features has {t} steps"
        )
    for label, names in (("VD id", data.vd_ids), ("feature name", data.feature_names)):
        dups = sorted(name for name, count in Counter(names).items() if count > 1)
        if dups:
            raise DataError(f"{where}: duplicate {label}(s): {', '.join(dups[:5])}")
    steps = np.diff(data.timestamps)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0))
        raise DataError(
            f"{where}: timestamps are not increasing at step {i + 1} ({data.timestamps[i]} then "
            f"{data.timestamps[i + 1]})"
        )
    if data.latlon is not None and data.latlon.shape != (n, 2):
        raise DataError(f"{where}: positions have shape {data.latlon.shape}, expected [{n}, 2]")
    for name, values in data.vd_attributes.items():
        if len(values) != n:
            raise DataError(f"{where}: VD attribute '{name}' has {len(values)} values for {n} VDs")
    if data.road_graph is not None and data.road_graph.num_vds != n:
        raise DataError(f"{where}: the road graph links {data.road_graph.num_vds} VDs, the data has {n}")


def check_finite(
    where: str, features: np.ndarray, vd_ids: tuple[str, ...], feature_names: tuple[str, ...], first_step: int = 0
) -> None:
    """No infinite reading in ``features`` [t, N, F] (steps from ``first_step`` on): NaN is the missing value."""
    count, example = 0, None
    for first, block in time_blocks(features):
        infinite = np.isinf(block)
        if infinite.any():
            count += int(infinite.sum())
            example = example or (first, *np.argwhere(infinite)[0])
    if count:
        first, step, vd, feature = example
        raise DataError(
            f"{where}: {count} infinite reading(s), e.g. VD {vd_ids[vd]}, {feature_names[feature]} at step "
            f"{first_step + first + step} (use NaN for a missing reading)"
        )


BLOCK_VALUES = 1 << 24  # readings per block of ``time_blocks`` (64 MiB of float32)


def time_blocks(
    features: np.ndarray | DiskReadings, stop: int | None = None, values: int = BLOCK_VALUES
) -> Iterator[tuple[int, np.ndarray]]:
    """``(first step, block)``: ``features[:stop]`` [T, N, F] in consecutive blocks of steps of at most ``values``
    readings (at least one step), so that a pass over readings on disk holds one block at a time."""
    stop = len(features) if stop is None else stop
    rows = max(1, values // max(1, int(np.prod(features.shape[1:]))))
    for first in range(0, stop, rows):
        yield first, features[first : min(first + rows, stop)]


def regular_interval(timestamps: np.ndarray) -> int:
    """The most common step between ``timestamps``, in seconds (300 for fewer than two)."""
    steps, counts = np.unique(np.diff(timestamps), return_counts=True)
    return int(steps[np.argmax(counts)]) if len(steps) else 300


def time_jumps(timestamps: np.ndarray) -> np.ndarray:
    """The steps whose distance from the previous step is not the most common one (ascending; empty: regular)."""
    return np.flatnonzero(np.diff(timestamps) != regular_interval(timestamps)) + 1


@attrs.define(eq=False)
class FeatureCounts:
    """Per feature, over the readings seen so far: how many are missing (NaN) and how many are 0."""

    readings: int  # per feature: T x N
    missing: np.ndarray  # int64 [F]
    zeros: np.ndarray  # int64 [F]

    @classmethod
    def of(cls, features: np.ndarray) -> FeatureCounts:
        """Counted over ``features`` [T, N, F]."""
        counts = cls(0, np.zeros(features.shape[-1], np.int64), np.zeros(features.shape[-1], np.int64))
        counts.add(features)
        return counts

    def add(self, block: np.ndarray) -> None:
        """Count one more block of readings [t, N, F]."""
        self.readings += block.shape[0] * block.shape[1]
        self.missing += np.isnan(block).sum(axis=(0, 1))
        self.zeros += (block == 0).sum(axis=(0, 1))
