"""The embedded default dataset: a synthetic detector network, deterministic from a seed.

VDs sit every ~700 m along a few corridors of Taipei's highways (attributes ``road`` and ``direction``).
Speeds follow daily and weekly demand profiles; incidents slow one VD down and the queue travels upstream,
reaching the VD ``j`` places upstream ``j * lag`` steps later, so a VD's downstream neighbours carry real
information about its future. Sensor outages leave NaN gaps. The road graph links each VD to the next one along
its corridor (700 m, in the direction of travel).
"""

from __future__ import annotations

import numpy as np

from core.data.dataset import TrafficData
from core.graph import RoadGraph

# (name, start lat, start lon, bearing in degrees, number of VDs): roughly National Freeway 1 and 3, Taipei.
CORRIDORS = (
    ("N1", 25.0630, 121.6400, 250.0, 14),
    ("N3", 24.9900, 121.4200, 75.0, 12),
    ("N5", 25.0500, 121.6200, 150.0, 10),
)
SPACING_M = 700.0
STEP_S = 300
FEATURES = ("speed", "occupancy", "volume")
START = np.datetime64("2024-01-01T00:00:00")  # a Monday


def generate(seed: int = 0, days: int = 21) -> TrafficData:
    rng = np.random.default_rng(seed)
    steps = days * 86400 // STEP_S
    vd_ids, latlon, corridor_of = _layout()
    n = len(vd_ids)
    hour = (np.arange(steps) * STEP_S / 3600.0) % 24.0
    weekday = (np.arange(steps) * STEP_S // 86400) % 7 < 5

    peaks = np.exp(-0.5 * ((hour - 8.0) / 1.0) ** 2) + 0.9 * np.exp(-0.5 * ((hour - 18.0) / 1.3) ** 2)
    demand = 0.25 + 0.75 * np.where(weekday, 1.0, 0.45) * peaks  # [T], in (0, 1]
    sensitivity = rng.uniform(0.5, 1.0, n)
    free_flow = rng.uniform(85.0, 100.0, n)
    congestion = np.clip(demand[:, None] ** 2 * sensitivity[None], 0, 1)  # [T, N]
    congestion = np.maximum(congestion, _incidents(rng, steps, corridor_of))

    noise = _ar1(rng, (steps, n), phi=0.8, scale=2.0)
    speed = np.clip(free_flow * (1.0 - 0.75 * congestion) + noise, 3.0, 120.0)
    occupancy = np.clip(5.0 + 60.0 * congestion + rng.normal(0, 1.5, (steps, n)), 0.0, 100.0)
    volume = np.clip(demand[:, None] * 120.0 * (1.0 - 0.5 * congestion) + rng.normal(0, 6.0, (steps, n)), 0.0, None)
    features = np.stack([speed, occupancy, volume], -1).astype(np.float32)
    features[_gaps(rng, steps, n)] = np.nan

    timestamps = (START + np.arange(steps) * np.timedelta64(STEP_S, "s")).astype("datetime64[s]").astype(np.int64)
    attributes = {
        "road": tuple(CORRIDORS[c][0] for c in corridor_of),
        "direction": tuple(_compass(CORRIDORS[c][3]) for c in corridor_of),
    }
    following = np.flatnonzero(corridor_of[1:] == corridor_of[:-1])  # VD i -> i + 1 on the same corridor
    links = RoadGraph(n, following, following + 1, cost=np.full(len(following), SPACING_M))
    return TrafficData(
        features,
        vd_ids,
        FEATURES,
        timestamps,
        latlon,
        source=f"<synthetic seed={seed}>",
        vd_attributes=attributes,
        road_graph=links,
    )


def _compass(bearing: float) -> str:
    return ("N", "E", "S", "W")[round(bearing / 90.0) % 4]


def _layout() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """VD ids, (lat, lon) and corridor index; VDs are numbered in the direction of travel."""
    ids, points, corridor = [], [], []
    for c, (name, lat, lon, bearing, count) in enumerate(CORRIDORS):
        along = np.arange(count) * SPACING_M
        theta = np.radians(bearing)
        dlat = along * np.cos(theta) / 111_320.0
        dlon = along * np.sin(theta) / (111_320.0 * np.cos(np.radians(lat)))
        ids += [f"VD-{name}-{i:02d}" for i in range(count)]
        points.append(np.stack([lat + dlat, lon + dlon], 1))
        corridor += [c] * count
    return tuple(ids), np.concatenate(points), np.array(corridor)


def _incidents(rng: np.random.Generator, steps: int, corridor_of: np.ndarray, per_day: float = 4.0) -> np.ndarray:
    """[T, N] congestion from incidents whose queue spreads upstream (to lower indices) over time."""
    n = len(corridor_of)
    effect = np.zeros((steps, n))
    count = rng.poisson(per_day * steps * STEP_S / 86400 * (corridor_of.max() + 1))
    lag = 3  # steps for the queue to reach the next VD upstream (15 min per 700 m)
    for vd, start, duration, severity in zip(
        rng.integers(0, n, count),
        rng.integers(0, steps, count),
        rng.integers(6, 24, count),
        rng.uniform(0.5, 0.9, count),
    ):
        upstream = np.arange(vd, -1, -1)
        upstream = upstream[(corridor_of[upstream] == corridor_of[vd]) & (vd - upstream <= 5)]
        for reach, u in enumerate(upstream):
            t0 = start + reach * lag
            t = np.arange(t0, min(t0 + duration, steps))
            ramp = np.minimum(1.0, (t - t0 + 1) / 3.0) * severity * 0.85**reach
            effect[t, u] = np.maximum(effect[t, u], ramp)
    return effect


def _ar1(rng: np.random.Generator, shape: tuple[int, int], phi: float, scale: float) -> np.ndarray:
    shocks = rng.normal(0, scale * np.sqrt(1 - phi**2), shape)
    # AR(1) as a linear filter along time, vectorised over VDs: x_t = phi x_{t-1} + e_t
    powers = phi ** np.arange(64)
    padded = np.concatenate([np.zeros((63, shape[1])), shocks])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 64, axis=0)  # [T, N, 64]
    return windows @ powers[::-1]


def _gaps(rng: np.random.Generator, steps: int, n: int) -> np.ndarray:
    """[T, N] True where a reading is lost: 1% random drops and a few outages of 30 min to 6 h per VD."""
    lost = rng.random((steps, n)) < 0.01
    outages = rng.poisson(2, n)
    for vd in np.repeat(np.arange(n), outages):
        start, length = rng.integers(0, steps), rng.integers(6, 72)
        lost[start : start + length, vd] = True
    return lost
