"""Readings aggregated to longer steps (``python -m core.data resample``), e.g. 5-minute PeMS data to the
15-minute steps of the LargeST protocol."""

from __future__ import annotations

import attrs
import numpy as np

from core.data.dataset import TrafficData
from core.errors import DataError

HOW = ("mean", "sum")


def resample(data: TrafficData, interval: int, how: dict[str, str] | None = None) -> TrafficData:
    """``data`` at steps of ``interval`` seconds, a multiple of its own step: each new step, labelled by its
    start on the file's clock (00:00, 00:15, ... for 900 s), aggregates the readings within it, per feature as
    ``how`` says (``"mean"``, the default, or ``"sum"``: e.g. flow in vehicles per step).

    Missing readings are left out: a mean is over the observed ones, and a sum is their mean times the readings
    a new step holds (``interval / data.interval``), so that a flow with one 5-minute reading of three missing
    still counts vehicles per 15 minutes; a new step with no reading of a feature is NaN. New steps that hold no
    step of the file at all are not written (a time jump, as in the file). Positions, VD attributes and the road
    graph are kept.
    """
    how = how or {}
    unknown = [name for name in how if name not in data.feature_names]
    if unknown:
        raise DataError(
            f"{data.source}: --how names feature(s) {', '.join(unknown)} the data does not have; features: "
            f"{', '.join(data.feature_names)}"
        )
    bad = {name: method for name, method in how.items() if method not in HOW}
    if bad:
        name, method = next(iter(bad.items()))
        raise DataError(f"--how {name}={method}: unknown aggregation '{method}'; use one of: {', '.join(HOW)}")
    if interval <= 0 or interval % data.interval:
        raise DataError(
            f"{data.source}: --interval {interval} s is not a multiple of the data's step ({data.interval} s)"
        )
    steps, slot = np.unique(data.timestamps // interval, return_inverse=True)
    observed = np.isfinite(data.features)
    sums = np.zeros((len(steps), *data.features.shape[1:]))
    counts = np.zeros(sums.shape)
    np.add.at(sums, slot, np.where(observed, data.features, 0.0))
    np.add.at(counts, slot, observed)
    mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    scale = np.array([interval // data.interval if how.get(name) == "sum" else 1 for name in data.feature_names])
    return attrs.evolve(data, features=(mean * scale).astype(np.float32), timestamps=steps * interval)


def parse_how(text: str) -> dict[str, str]:
    """``"flow=sum,speed=mean"`` → ``{"flow": "sum", "speed": "mean"}``."""
    how = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, method = item.partition("=")
        if not sep or not name.strip():
            raise DataError(f"--how {item!r}: expected FEATURE=METHOD, e.g. flow=sum (methods: {', '.join(HOW)})")
        how[name.strip()] = method.strip()
    return how
