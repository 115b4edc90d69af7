"""``python -m core.plugins [--recipe R]``: every registered plugin, its source and its config fields."""

from __future__ import annotations

import argparse
import sys

from core.config import describe_fields
from core.errors import run_cli
from core.recipe import read_toml
from core.registry import Registry


def describe(registry: Registry) -> str:
    lines = []
    for info in registry:
        lines.append(f"{info.kind} '{info.name}'  [{info.source}]")
        doc = (info.cls.__doc__ or sys.modules[info.cls.__module__].__doc__ or "").strip().splitlines()
        if doc:
            lines.append(f"    {doc[0]}")
        for name, type_, default in describe_fields(info.cls.Config):
            lines.append(f"    {name:<22} {type_:<34} default {default!r}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.plugins", description=__doc__)
    parser.add_argument("--recipe", help="also load the plugin modules this recipe names")
    args = parser.parse_args(argv)

    def command() -> int:
        modules = read_toml(args.recipe).get("plugins", {}).get("modules", []) if args.recipe else []
        print(describe(Registry.default(modules, origin=args.recipe or "command line")))
        return 0

    return run_cli(command)


if __name__ == "__main__":
    sys.exit(main())
