"""Validate a TOML table into an attrs config class, with errors that name the file, table and key.

Types are checked strictly (no silent ``"3" → 3`` or ``3.7 → 3``); the classes' own attrs validators check
ranges. Supported field types: bool, int, float, str, ``Literal[...]``, ``tuple[X, ...]`` and ``X | None``
(``unsupported_fields`` finds the others, so a plugin's ``Config`` is refused when it registers).
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from core.errors import RecipeError, closest

SUPPORTED_TYPES = "bool, int, float, str, Literal[...], tuple[X, ...], X | None"
_SCALARS = (bool, int, float, str)


def build_config(cls: type, table: Mapping[str, Any], where: str, key_where: Mapping[str, str] = {}) -> Any:
    """``cls(**table)`` after checking keys and types; ``where`` is e.g. ``"recipe.toml: [trainer]"``, and
    ``key_where`` names another origin for some keys (e.g. ``{"lr": "--set trainer.lr=x: [trainer]"}``)."""
    attrs.resolve_types(cls)
    fields = {f.name: f for f in attrs.fields(cls) if f.init}
    values = {}
    for key, value in table.items():
        at = key_where.get(key, where)
        if key not in fields:
            allowed = ", ".join(fields) or "none (the plugin has no options)"
            raise RecipeError(f"{at}: unknown key '{key}'{closest(key, fields)}; allowed keys: {allowed}")
        values[key] = _check(value, fields[key].type, f"{at} {key}")
    missing = [name for name, f in fields.items() if f.default is attrs.NOTHING and name not in values]
    if missing:
        raise RecipeError(f"{where}: missing required key(s) {', '.join(missing)}")
    try:
        return cls(**values)
    except (ValueError, TypeError) as error:
        raise RecipeError(f"{where}: {error}") from None


def _check(value: Any, tp: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise RecipeError(
                f"{where} = {value!r} is not allowed{closest(str(value), map(str, args))}; allowed: {allowed}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check(value, arg, where)
            except RecipeError:
                continue
        raise RecipeError(f"{where} = {value!r} has the wrong type, expected {_describe(tp)}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise RecipeError(f"{where} = {value!r} has the wrong type, expected {_describe(tp)}")
        return tuple(_check(item, args[0], f"{where}[{i}]") for i, item in enumerate(value))
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }[tp]
    if not ok(value):
        raise RecipeError(f"{where} = {value!r} has the wrong type, expected {_describe(tp)}")
    if tp is float and not math.isfinite(value):
        raise RecipeError(f"{where} = {value!r} is not a finite number")
    return float(value) if tp is float else value


def unsupported_fields(cls: type) -> list[str]:
    """``'name: type'`` of every init field of the attrs class ``cls`` whose type a TOML table cannot give."""
    attrs.resolve_types(cls)
    return [f"'{f.name}: {_type_name(f.type)}'" for f in attrs.fields(cls) if f.init and not _supported(f.type)]


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _supported(tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin is Literal:
        return all(isinstance(a, _SCALARS) for a in args)
    if origin in (typing.Union, types.UnionType):
        return all(_supported(a) for a in args if a is not type(None))
    if origin is tuple:
        return len(args) == 2 and args[1] is Ellipsis and _supported(args[0])
    return tp in _SCALARS


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin is tuple:
        return f"list[{_describe(args[0])}]"
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(tp, str(tp))


def describe_fields(cls: type) -> list[tuple[str, str, Any]]:
    """``(name, type, default)`` of every field, for listings."""
    attrs.resolve_types(cls)
    rows = []
    for f in attrs.fields(cls):
        default = f.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        rows.append((f.name, _describe(f.type), "(required)" if default is attrs.NOTHING else default))
    return rows


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config as a TOML-ready table (tuples as lists, None left out)."""
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in attrs.asdict(config, recurse=False).items()
        if value is not None
    }
