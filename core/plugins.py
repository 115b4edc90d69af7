"""``python -m core.plugins [--recipe R] [--vds N]``: every registered plugin, its source, its parameter count
for N VDs and its config fields."""

from __future__ import annotations

import argparse
import sys

import attrs
import numpy as np
import torch

from core.api import DatasetSpec, Encoder, Pooling
from core.config import describe_fields
from core.data.windows import calendar_columns
from core.errors import RecipeError, run_cli
from core.recipe import read_toml
from core.registry import PluginInfo, Registry


CALENDAR = tuple(calendar_columns(np.zeros(1, np.int64), time_of_day=True, weekend=True, day_of_week=True))  # every covariate's name


def synthetic_spec(vds: int = 100, features: int = 1, covariates: int = 2, seed: int = 0) -> DatasetSpec:
    """N VDs at distinct random points of a 500 m grid (about half its cells taken), 12 steps in and out; the
    first ``covariates`` calendar covariates (2: time of day; 4: also weekend and day of week)."""
    side = max(2, round((2 * vds) ** 0.5))
    cells = torch.randperm(side * side, generator=torch.Generator().manual_seed(seed))[:vds]
    positions = torch.stack([cells % side, cells // side], 1).float() * 500.0
    names = ("speed",) + tuple(f"feature{i}" for i in range(1, features))
    return DatasetSpec(tuple(f"vd{i}" for i in range(vds)), names, covariates, 12, 12, positions_xy=positions, covariate_names=CALENDAR[:covariates])


def parameter_count(info: PluginInfo, config=None, spec: DatasetSpec | None = None, dim: int = 64) -> int:
    """Trainable parameters of an encoder or pooling plugin built with ``config`` (default: its defaults) for
    ``spec`` (default: ``synthetic_spec()``, 100 VDs); a pooling follows an encoder of state size ``dim``.
    Collators hold no parameters (0)."""
    spec = spec or synthetic_spec()
    config = info.cls.Config() if config is None else config
    if issubclass(info.cls, Encoder):
        module = info.cls(config, spec)
    elif issubclass(info.cls, Pooling):
        module = info.cls(config, spec, dim)
    else:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def describe(registry: Registry, vds: int = 100) -> str:
    lines = []
    spec = synthetic_spec(vds)
    for info in registry:
        lines.append(f"{info.kind} '{info.name}'  [{info.source}]")
        doc = (info.cls.__doc__ or sys.modules[info.cls.__module__].__doc__ or "").strip().splitlines()
        if doc:
            lines.append(f"    {doc[0]}")
        if info.kind in ("encoder", "pooling"):
            lines.append(f"    {_parameters(info, spec)}")
        for name, type_, default in describe_fields(info.cls.Config):
            lines.append(f"    {name:<22} {type_:<34} default {default!r}")
    return "\n".join(lines)


def _parameters(info: PluginInfo, spec: DatasetSpec) -> str:
    """The plugin's parameter count on ``spec``, or with every calendar covariate if it needs more of them."""
    try:
        try:
            count = parameter_count(info, spec=spec)
        except RecipeError:  # e.g. an encoder that embeds the day of week
            spec = attrs.evolve(spec, num_covariates=len(CALENDAR), covariate_names=CALENDAR)
            count = parameter_count(info, spec=spec)
    except Exception as error:  # noqa: BLE001 - a third-party plugin may refuse the synthetic data
        return f"parameters: not counted ({type(error).__name__}: {error})"
    where = f"{spec.num_vds} VDs, {spec.num_features} feature, {spec.num_covariates} covariates"
    return f"parameters: {count:,} (defaults, {where}{', state size 64' if info.kind == 'pooling' else ''})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.plugins", description=__doc__)
    parser.add_argument("--recipe", help="also load the plugin modules this recipe names")
    parser.add_argument("--vds", type=int, default=100, help="count parameters for this many VDs (default 100)")
    args = parser.parse_args(argv)

    def command() -> int:
        modules = read_toml(args.recipe).get("plugins", {}).get("modules", []) if args.recipe else []
        print(describe(Registry.default(modules, origin=args.recipe or "command line"), args.vds))
        return 0

    return run_cli(command)


if __name__ == "__main__":
    sys.exit(main())
