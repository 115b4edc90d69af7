"""The kit's generated data: a small network, windows with varying histories and absent VDs, and the
built-in collators' batches of them."""

from __future__ import annotations

import attrs
import numpy as np
import torch

from core.api import Collator, DatasetSpec, Windows
from core.calendar import calendar_columns
from core.graph import RoadGraph
from core.host.registry import Registry
from core.sequence import real_steps

N_VDS, HISTORY, HORIZON = 9, 8, 3  # 9: no calendar table (7 days, 24 hours, 288 slots) is mistaken for per-VD weights
# sample 0 short and narrow (VDs 2 and 4 absent), sample 1 every VD at full length, sample 2 mixed
_LENGTHS = torch.tensor([[5, 3, 0, 4, 0, 5, 2, 6, 0], [HISTORY] * N_VDS, [6, 0, 7, 2, HISTORY, 3, 0, 4, 5]])


HOLIDAYS = "US"  # the region of the kit's holiday covariate
CALENDAR = tuple(
    calendar_columns(np.zeros(1, np.int64), time_of_day=True, weekend=True, day_of_week=True, holidays=HOLIDAYS)
)  # every covariate's name


def synthetic_spec(
    vds: int = 100,
    features: int = 1,
    covariates: int = 2,
    seed: int = 0,
    history: int = 12,
    horizon: int = 12,
    interval: int = 300,
) -> DatasetSpec:
    """N VDs at distinct random points of a 500 m grid (about half its cells taken), a road graph of links
    VD i → i + 1 and i → i + 3 (their straight-line lengths as costs); the first ``covariates`` calendar
    covariates (2: time of day; 4: also weekend and day of week; 5: also US holidays), at steps of ``interval``
    seconds."""
    side = max(2, round((2 * vds) ** 0.5))
    cells = torch.randperm(side * side, generator=torch.Generator().manual_seed(seed))[:vds]
    positions = torch.stack([cells % side, cells // side], 1).float() * 500.0
    names = ("speed",) + tuple(f"feature{i}" for i in range(1, features))
    source = np.r_[np.arange(vds - 1), np.arange(max(0, vds - 3))]
    target = np.r_[np.arange(1, vds), np.arange(3, vds)]
    cost = (positions[target] - positions[source]).norm(dim=1).double().numpy()
    return DatasetSpec(
        tuple(f"vd{i}" for i in range(vds)),
        names,
        covariates,
        history,
        horizon,
        positions_xy=positions,
        covariate_names=CALENDAR[:covariates],
        road_graph=RoadGraph(vds, source, target, cost=cost),
        interval=interval,
    )


def kit_spec() -> DatasetSpec:
    """The kit's network: 9 VDs within 1.5 km of each other, 2 features, every calendar covariate, 8 steps in, 3 out."""
    return synthetic_spec(N_VDS, features=2, covariates=len(CALENDAR), history=HISTORY, horizon=HORIZON)


def histories(time: bool, slots: bool) -> torch.Tensor:
    """``[3, N]`` history steps per VD (0: absent); lengths vary only with ``time``, VDs are absent only with
    ``slots``: the padding a plugin declares it honours, and no other."""
    lengths = _LENGTHS if slots else _LENGTHS.where(_LENGTHS > 0, 2)
    return lengths if time else lengths.where(lengths == 0, HISTORY)


def make_windows(spec: DatasetSpec, lengths: torch.Tensor | None, seed: int = 0) -> Windows:
    """Random z-scored windows, about 15% of the readings missing; ``lengths [B, N]`` as in ``Windows``
    (None: 3 fixed-length windows)."""
    b = 3 if lengths is None else lengths.shape[0]
    t, n, f, h = spec.history, spec.num_vds, spec.num_features, spec.horizon
    g = torch.Generator().manual_seed(seed)
    real = torch.ones(b, t, n, dtype=torch.bool) if lengths is None else real_steps(lengths, t)
    active = real.any(1)
    observed = (torch.rand(b, t, n, f, generator=g) > 0.15) & real[..., None]
    values = torch.randn(b, t, n, f, generator=g) * observed
    steps = calendar(spec, b, t + h, g)  # the input steps, then the target steps
    return Windows(
        values=values,
        observed=observed,
        covariates=steps[:, :t],
        future_covariates=steps[:, t:],
        target=torch.randn(b, h, n, generator=g),
        target_mask=(torch.rand(b, h, n, generator=g) > 0.1) & active[:, None],
        start=torch.arange(b),
        lengths=lengths,
        target_profile=torch.randn(b, h, n, generator=g),
    )


def calendar(spec: DatasetSpec, b: int, t: int, generator: torch.Generator) -> torch.Tensor:
    """``[B, T, K]`` the spec's calendar covariates of ``b`` windows at random steps (``spec.interval``) of a year."""
    steps = torch.randint(0, 365 * spec.slots_per_day, (b, 1), generator=generator) + torch.arange(t)
    columns = calendar_columns(
        (steps * spec.interval).flatten().numpy(), time_of_day=True, weekend=True, day_of_week=True, holidays=HOLIDAYS
    )
    return torch.from_numpy(np.stack([columns[name] for name in spec.covariate_names], -1).astype(np.float32)).reshape(
        b, t, -1
    )


def select(windows: Windows, index: list[int]) -> Windows:
    """The windows ``index`` of a batch of windows."""
    tensors = {
        f.name: value[index]
        for f in attrs.fields(Windows)
        if isinstance(value := getattr(windows, f.name), torch.Tensor)
    }
    return attrs.evolve(windows, **tensors)


def last_steps(windows: Windows, steps: int) -> Windows:
    """The windows cut to their last ``steps`` steps (histories clamped to them)."""
    lengths = None if windows.lengths is None else windows.lengths.clamp(max=steps)
    return attrs.evolve(
        windows,
        values=windows.values[:, -steps:],
        observed=windows.observed[:, -steps:],
        covariates=windows.covariates[:, -steps:],
        lengths=lengths,
    )


@attrs.frozen
class BuiltinCollators:
    """The built-in collators the kit compares with."""

    centralized: Collator
    distributed: Collator
    dynamic: Collator  # dynamic_padding

    @classmethod
    def for_spec(cls, registry: Registry, spec: DatasetSpec) -> BuiltinCollators:
        names = ("centralized", "distributed", "dynamic_padding")
        return cls(*(reference(registry, "collator", name, spec) for name in names))


def reference(registry: Registry, kind: str, name: str, *args, **options):
    """A built-in plugin the kit compares with or builds around, found in ``registry`` like any other: ``cls(
    cls.Config(**options), *args)``."""
    cls = registry.get(kind, name).cls
    return cls(cls.Config(**options), *args)
