"""Plugins from the command line:

- ``python -m core.plugins [--recipe R] [--vds N]``: every registered plugin, its source, capabilities, parameter
  count for N VDs and config fields;
- ``python -m core.plugins check NAME [--kind K] [--recipe R] [--set KEY=VALUE ...]``: the conformance kit on one
  plugin, one line per check with its measured number; exit 0 only if every check passes;
- ``python -m core.plugins new encoder|pooling|collator|head NAME --out DIR``: an installable plugin package.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import textwrap
from pathlib import Path

import attrs

from core.api import PLUGIN_KINDS, DatasetSpec, Encoder, Head, Pooling, capabilities
from core.errors import PluginError, RecipeError, closest, run_cli
from core.host.options import describe_fields
from core.host.registry import PluginInfo, Registry
from core.host.scaffold import write_package
from core.recipe import apply_override, read_toml
from social_xlstm.testing import run_checks
from social_xlstm.testing.data import CALENDAR, synthetic_spec


def parameter_count(info: PluginInfo, config=None, spec: DatasetSpec | None = None, dim: int = 64) -> int:
    """Trainable parameters of an encoder, pooling or head plugin built with ``config`` (default: its defaults) for
    ``spec`` (default: ``synthetic_spec()``, 100 VDs); a pooling follows an encoder of state size ``dim``, a head
    takes features of size ``dim``. Collators hold no parameters (0)."""
    spec = spec or synthetic_spec()
    config = info.cls.Config() if config is None else config
    if issubclass(info.cls, Encoder):
        module = info.cls(config, spec)
    elif issubclass(info.cls, (Pooling, Head)):
        module = info.cls(config, spec, dim)
    else:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def describe(registry: Registry, vds: int = 100) -> str:
    lines = []
    spec = synthetic_spec(vds)
    for info in registry:
        lines.append(f"{info.kind} '{info.name}'  [{info.source}]")
        lines += textwrap.wrap(
            summary(info), 116, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False
        )
        lines.append(f"    capabilities: {_flags(info)}")
        if info.kind in ("encoder", "pooling", "head"):
            lines.append(f"    {_parameters(info, spec)}")
        for name, type_, default in describe_fields(info.cls.Config):
            lines.append(f"    {name:<22} {type_:<34} default {default!r}")
    return "\n".join(lines)


def summary(info: PluginInfo) -> str:
    """The first paragraph of the plugin class's docstring (else its module's), on one line."""
    doc = inspect.cleandoc(info.cls.__doc__ or sys.modules[info.cls.__module__].__doc__ or "")
    return " ".join(doc.split("\n\n")[0].split())


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
    if info.kind == "head":
        where = f"horizon {spec.horizon}, features of size 64"
    return f"parameters: {count:,} (defaults, {where}{', state size 64' if info.kind == 'pooling' else ''})"


def _flags(info: PluginInfo) -> str:
    return ", ".join(f"{flag} {'yes' if value else 'no'}" for flag, value in capabilities(info.cls).items())


def check(name: str, kind: str | None, recipe: str | None, sets: list[str]) -> int:
    """Print the kit's checks of one plugin (configured by the recipe's table when it names the plugin, then
    ``sets``); 0 if all pass, else 1."""
    raw = read_toml(recipe) if recipe else {}
    modules = raw.get("plugins", {}).get("modules", [])
    registry = Registry.default(modules, origin=recipe or "command line")
    kind = kind or kind_of(registry, name)
    info = registry.get(kind, name)
    table = dict(raw.get(kind, {})) if raw.get(kind, {}).get("name") == name else {}
    table.pop("name", None)
    for assignment in sets:
        apply_override({kind: table}, f"{kind}.{assignment}")
    print(f"{kind} '{name}'  [{info.source}]  {_flags(info)}")
    results = run_checks(kind, name, table, modules)
    for result in results:
        print(result.line())
    counts = {status: sum(r.status == status for r in results) for status in ("PASS", "FAIL", "SKIP")}
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
    return 1 if counts["FAIL"] else 0


def kind_of(registry: Registry, name: str) -> str:
    kinds = [kind for kind in PLUGIN_KINDS if name in registry.names(kind)]
    if not kinds:
        everything = [n for kind in PLUGIN_KINDS for n in registry.names(kind)]
        raise PluginError(f"no plugin '{name}'{closest(name, everything)}; registered: {', '.join(sorted(everything))}")
    if len(kinds) > 1:
        raise PluginError(f"'{name}' names a plugin of each kind {', '.join(kinds)}: pass --kind")
    return kinds[0]


def new(kind: str, name: str, out: Path) -> int:
    files = write_package(kind, name, out, Registry.default())
    print("\n".join(f"wrote {path}" for path in files))
    print(f"next: pip install -e {out}  then  python -m core.plugins check {name}  and  pytest {out / 'tests'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core.plugins", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", help="also load the plugin modules this recipe names")
    parser.add_argument("--vds", type=int, default=100, help="count parameters for this many VDs (default 100)")
    commands = parser.add_subparsers(dest="command")
    checking = commands.add_parser("check", help="run the conformance kit on one plugin")
    checking.add_argument("name")
    checking.add_argument(
        "--kind", choices=list(PLUGIN_KINDS), help="needed only if NAME is registered for several kinds"
    )
    checking.add_argument("--recipe", help="load the plugin modules this recipe names; its table configures the plugin")
    checking.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a config value for the plugin (repeatable)"
    )
    scaffold = commands.add_parser("new", help="write an installable plugin package that passes the kit")
    scaffold.add_argument("kind", choices=list(PLUGIN_KINDS))
    scaffold.add_argument("name")
    scaffold.add_argument("--out", type=Path, required=True, help="the package directory (new or empty)")
    args = parser.parse_args(argv)

    def command() -> int:
        if args.command == "check":
            return check(args.name, args.kind, args.recipe, args.set)
        if args.command == "new":
            return new(args.kind, args.name, args.out)
        modules = read_toml(args.recipe).get("plugins", {}).get("modules", []) if args.recipe else []
        print(describe(Registry.default(modules, origin=args.recipe or "command line"), args.vds))
        return 0

    return run_cli(command)


if __name__ == "__main__":
    sys.exit(main())
