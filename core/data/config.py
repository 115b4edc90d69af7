"""``[data]``: which series, which windows, which inputs: the one typed object the data layer is given."""

from __future__ import annotations

from typing import Literal

import attrs
from attrs.validators import ge, gt, lt

from core.calendar import check_region


def _region_is_known(instance, attribute, value) -> None:
    if value:
        check_region(value)


def _split_is_valid(instance, attribute, value) -> None:
    if len(value) != 3 or min(value) <= 0 or abs(sum(value) - 1) > 1e-6:
        raise ValueError(
            f"'{attribute.name}' must be three positive fractions (train, val, test) summing to 1: {list(value)}"
        )


@attrs.frozen
class DataConfig:
    source: str = "default"  # "default" = the embedded synthetic network, else an HDF5 file
    target: str = "speed"
    features: tuple[str, ...] = ()  # input features; empty = all
    history: int = attrs.field(default=12, validator=gt(0))
    horizon: int = attrs.field(default=12, validator=gt(0))
    split: tuple[float, ...] = attrs.field(default=(0.7, 0.1, 0.2), validator=_split_is_valid)
    time_of_day: bool = True
    weekend: bool = False  # a 0/1 covariate: Saturday or Sunday on the file's clock
    day_of_week: bool = False  # a covariate holding the day's index, Monday = 0 .. Sunday = 6, on the file's clock
    holidays: str = attrs.field(default="", validator=_region_is_known)  # "US-CA": a 0/1 public-holiday covariate
    profile_input: bool = False  # the target's historical profile (z-scored) as one more input, "<target>_profile"
    train_stride: int = attrs.field(default=1, validator=gt(0))
    synthetic_seed: int = 0
    min_history: int = attrs.field(default=0, validator=ge(0))  # > 0: variable-length histories (see below)
    gap_steps: int = attrs.field(default=12, validator=gt(0))  # missing steps that cut a VD's history
    hide_inputs: float = attrs.field(default=0.0, validator=[ge(0.0), lt(1.0)])  # experiment: inputs hidden everywhere
    vds: tuple[str, ...] = ()  # keep only these VD ids, in this order; empty = all
    store: Literal["memory", "disk"] = "memory"  # "disk": readings read per batch from a contiguous file
    irregular_steps: Literal["refuse", "split"] = (
        "refuse"  # a file whose time step jumps: refuse it, or cut windows between jumps
    )

    def __attrs_post_init__(self) -> None:
        if self.min_history > self.history:
            raise ValueError(f"'min_history' ({self.min_history}) must not exceed 'history' ({self.history})")
