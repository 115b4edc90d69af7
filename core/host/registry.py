"""The plugin registry: built-ins, installed packages' entry points and recipe modules, one pluggy hook."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import pkgutil
from collections.abc import Iterable
from typing import Any

import attrs
import pluggy

from core.api import PLUGIN_KINDS
from core.errors import PluginError, closest
from core.host import hookspecs
from core.host.options import SUPPORTED_TYPES, unsupported_fields

ENTRY_POINT_GROUP = hookspecs.PROJECT


@attrs.frozen
class PluginChoice:
    """A plugin chosen by name (a recipe's table), with its validated config."""

    name: str
    config: Any


@attrs.frozen
class PluginInfo:
    kind: str
    name: str
    cls: type
    source: str


class Registry:
    """Plugins by kind and name, each with the source that registered it."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._plugins: dict[tuple[str, str], PluginInfo] = {}

    @classmethod
    def default(cls, modules: Iterable[str] = (), origin: str = "recipe") -> Registry:
        """Built-ins, then entry points (group ``social_xlstm``), then the named modules."""
        registry = cls()
        registry.load_builtins()
        registry.load_entry_points()
        registry.load_modules(modules, origin)
        return registry

    def load_builtins(self) -> None:
        import plugins

        for info in pkgutil.walk_packages(plugins.__path__, prefix="plugins."):
            if not info.ispkg:
                self.add_module(importlib.import_module(info.name), f"built-in {info.name}")

    def load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            source = f"entry point '{ep.name} = {ep.value}' of package {ep.dist.name if ep.dist else '?'}"
            try:
                module = ep.load()
            except Exception as error:  # noqa: BLE001 - any import failure of a third-party plugin
                raise PluginError(f"{source} failed to import: {type(error).__name__}: {error}") from error
            self.add_module(module, source)

    def load_modules(self, names: Iterable[str], origin: str = "recipe") -> None:
        for name in names:
            try:
                module = importlib.import_module(name)
            except Exception as error:  # noqa: BLE001
                raise PluginError(
                    f"{origin}: [plugins] modules: '{name}' failed to import: {type(error).__name__}: {error}"
                ) from error
            self.add_module(module, f"{origin} module {name}")

    def add_module(self, module: object, source: str) -> None:
        """Register a plugin module (or object) and collect the classes its hook registers."""
        if self._pm.is_registered(module):
            return
        try:
            self._pm.register(module, name=source)
            self._pm.check_pending()
        except (pluggy.PluginValidationError, ValueError) as error:
            raise PluginError(f"{source}: {error}") from error
        others = [p for p in self._pm.get_plugins() if p is not module]
        hook = self._pm.subset_hook_caller("register_plugins", remove_plugins=others)
        hook(register=functools.partial(self._add, source=source))

    def _add(self, cls: type, *, source: str) -> None:
        kind = next((k for k, base in PLUGIN_KINDS.items() if isinstance(cls, type) and issubclass(cls, base)), None)
        if kind is None:
            bases = [base.__name__ for base in PLUGIN_KINDS.values()]
            raise PluginError(
                f"{source}: register() got {cls!r}, which is not a subclass of {', '.join(bases[:-1])} or {bases[-1]}"
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"{source}: {cls.__name__} has no 'name'")
        if not attrs.has(cls.Config):
            raise PluginError(
                f"{source}: {kind} '{name}': 'Config' = {cls.Config!r} is not an attrs class (@attrs.frozen)"
            )
        try:
            unsupported = unsupported_fields(cls.Config)
        except NameError as error:  # a string annotation naming something not importable at run time
            raise PluginError(f"{source}: {kind} '{name}' Config: cannot resolve a field type: {error}") from None
        if unsupported:
            raise PluginError(
                f"{source}: {kind} '{name}' Config field(s) {', '.join(unsupported)}: a recipe cannot give this type; "
                f"supported: {SUPPORTED_TYPES}"
            )
        if (kind, name) in self._plugins:
            first = self._plugins[kind, name].source
            raise PluginError(f"{kind} plugin '{name}' is registered twice: by {first} and by {source}")
        self._plugins[kind, name] = PluginInfo(kind, name, cls, source)

    def get(self, kind: str, name: str) -> PluginInfo:
        if (kind, name) not in self._plugins:
            names = self.names(kind)
            raise PluginError(f"unknown {kind} '{name}'{closest(name, names)}; registered: {', '.join(names)}")
        return self._plugins[kind, name]

    def names(self, kind: str) -> list[str]:
        return sorted(name for k, name in self._plugins if k == kind)

    def __iter__(self):
        return iter(sorted(self._plugins.values(), key=lambda p: (list(PLUGIN_KINDS).index(p.kind), p.name)))
