"""``TrafficData``: one detector network's multivariate series in memory, checked on construction."""

from __future__ import annotations

from collections import Counter

import attrs
import numpy as np

from core.data.geo import project_to_metres
from core.errors import DataError, closest
from core.graph import RoadGraph


@attrs.frozen(eq=False)
class TrafficData:
    """Series of N VDs over T steps; NaN marks a missing reading.

    ``timestamps`` are seconds since 1970-01-01 of the local wall-clock time (time of day is read off them).
    ``latlon`` holds (lat, lon) in degrees per VD, NaN where unknown, or is None when the file has none.
    ``vd_attributes`` maps an attribute name (e.g. ``road``, ``direction``) to one string per VD, "" where unknown.
    ``road_graph`` holds the directed road links between the VDs, or is None when the file has none.
    """

    features: np.ndarray  # float32 [T, N, F]
    vd_ids: tuple[str, ...]
    feature_names: tuple[str, ...]
    timestamps: np.ndarray  # int64 [T]
    latlon: np.ndarray | None = None  # float64 [N, 2]
    source: str = "<memory>"
    vd_attributes: dict[str, tuple[str, ...]] = attrs.Factory(dict)
    road_graph: RoadGraph | None = None

    def __attrs_post_init__(self) -> None:
        t, n, f = self.features.shape if self.features.ndim == 3 else (None, None, None)
        where = self.source
        if t is None:
            raise DataError(f"{where}: data/features must be [T, N, F], got shape {self.features.shape}")
        if len(self.vd_ids) != n:
            raise DataError(f"{where}: metadata/vdids has {len(self.vd_ids)} ids but data/features has {n} VDs")
        if len(self.feature_names) != f:
            raise DataError(
                f"{where}: metadata/feature_names has {len(self.feature_names)} names but data/features "
                f"has {f} features"
            )
        if len(self.timestamps) != t:
            raise DataError(
                f"{where}: metadata/timestamps has {len(self.timestamps)} entries but data/features has {t} steps"
            )
        for label, names in (("VD id", self.vd_ids), ("feature name", self.feature_names)):
            dups = sorted(name for name, count in Counter(names).items() if count > 1)
            if dups:
                raise DataError(f"{where}: duplicate {label}(s): {', '.join(dups[:5])}")
        steps = np.diff(self.timestamps)
        if (steps <= 0).any():
            i = int(np.argmax(steps <= 0))
            raise DataError(
                f"{where}: timestamps are not increasing at step {i + 1} ({self.timestamps[i]} then "
                f"{self.timestamps[i + 1]})"
            )
        infinite = np.isinf(self.features)
        if infinite.any():
            step, vd, feature = np.argwhere(infinite)[0]
            raise DataError(
                f"{where}: {int(infinite.sum())} infinite reading(s), e.g. VD {self.vd_ids[vd]}, "
                f"{self.feature_names[feature]} at step {step} (use NaN for a missing reading)"
            )
        if self.latlon is not None and self.latlon.shape != (n, 2):
            raise DataError(f"{where}: positions have shape {self.latlon.shape}, expected [{n}, 2]")
        for name, values in self.vd_attributes.items():
            if len(values) != n:
                raise DataError(f"{where}: VD attribute '{name}' has {len(values)} values for {n} VDs")
        if self.road_graph is not None and self.road_graph.num_vds != n:
            raise DataError(f"{where}: the road graph links {self.road_graph.num_vds} VDs, the data has {n}")

    @property
    def num_steps(self) -> int:
        return self.features.shape[0]

    @property
    def interval(self) -> int:
        """The most common step between readings, in seconds."""
        steps, counts = np.unique(np.diff(self.timestamps), return_counts=True)
        return int(steps[np.argmax(counts)]) if len(steps) else 300

    def time_jumps(self) -> np.ndarray:
        """The steps whose distance from the previous step is not ``interval`` (ascending; empty: regular)."""
        return np.flatnonzero(np.diff(self.timestamps) != self.interval) + 1

    def select(self, vds: tuple[str, ...]) -> TrafficData:
        """Only the VDs ``vds``, in that order (``[data] vds``); an unknown id is an error naming it."""
        index = {vd: i for i, vd in enumerate(self.vd_ids)}
        unknown = [vd for vd in vds if vd not in index]
        if unknown:
            raise DataError(
                f"{self.source}: data.vds: unknown VD id(s) {', '.join(repr(vd) for vd in unknown[:5])}"
                f"{closest(unknown[0], self.vd_ids)}; the data has {len(self.vd_ids)} VDs, e.g. "
                f"{', '.join(self.vd_ids[:3])}"
            )
        keep = np.array([index[vd] for vd in vds], dtype=np.int64)
        return attrs.evolve(
            self,
            features=self.features[:, keep],
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
