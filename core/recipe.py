"""TOML recipes: parsed with tomllib, overridden with ``--set TABLE.KEY=VALUE``, validated into attrs classes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import attrs
import tomli_w
from attrs.validators import ge, gt, lt

from core.config import build_config, config_to_dict
from core.errors import PluginError, RecipeError, closest
from core.registry import Registry


def _split_is_valid(instance, attribute, value) -> None:
    if len(value) != 3 or min(value) <= 0 or abs(sum(value) - 1) > 1e-6:
        raise ValueError(f"'{attribute.name}' must be three positive fractions (train, val, test) summing to 1: {list(value)}")


def _device_is_valid(instance, attribute, value) -> None:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise ValueError(f"'{attribute.name}' must be 'auto', 'cpu', 'cuda' or 'cuda:N': {value!r}")


@attrs.frozen
class RunConfig:
    name: str = "run"
    seed: int = 0
    output_dir: str = "runs"


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
    train_stride: int = attrs.field(default=1, validator=gt(0))
    synthetic_seed: int = 0
    min_history: int = attrs.field(default=0, validator=ge(0))  # > 0: variable-length histories (see below)
    gap_steps: int = attrs.field(default=12, validator=gt(0))  # missing steps that cut a VD's history
    hide_inputs: float = attrs.field(default=0.0, validator=[ge(0.0), lt(1.0)])  # fraction of inputs hidden everywhere
    vds: tuple[str, ...] = ()  # keep only these VD ids, in this order; empty = all

    def __attrs_post_init__(self) -> None:
        if self.min_history > self.history:
            raise ValueError(f"'min_history' ({self.min_history}) must not exceed 'history' ({self.history})")


@attrs.frozen
class HeadConfig:
    hidden_dim: int = attrs.field(default=64, validator=gt(0))
    dropout: float = attrs.field(default=0.0, validator=[ge(0.0), lt(1.0)])


@attrs.frozen
class TrainerConfig:
    epochs: int = attrs.field(default=10, validator=gt(0))
    batch_size: int = attrs.field(default=32, validator=gt(0))
    eval_batch_size: int = attrs.field(default=64, validator=gt(0))
    lr: float = attrs.field(default=1e-3, validator=gt(0.0))
    weight_decay: float = attrs.field(default=0.0, validator=ge(0.0))
    precision: Literal["32", "bf16-mixed", "16-mixed"] = "32"
    grad_clip: float = attrs.field(default=1.0, validator=ge(0.0))  # 0 = off
    accumulate: int = attrs.field(default=1, validator=gt(0))
    scheduler: Literal["none", "cosine", "plateau"] = "cosine"
    patience: int = attrs.field(default=5, validator=ge(0))  # epochs without val MAE gain; 0 = off
    device: str = attrs.field(default="auto", validator=_device_is_valid)
    num_workers: int = attrs.field(default=0, validator=ge(0))
    max_batches_per_epoch: int = attrs.field(default=0, validator=ge(0))  # 0 = all
    figure_vds: int = attrs.field(default=4, validator=ge(0))
    compile: bool = False  # torch.compile the model: slower first batches, faster steps after
    whiten: float = attrs.field(default=0.0, validator=[ge(0.0), lt(1.0)])  # fraction of inputs hidden per training batch
    checkpoint_every: int = attrs.field(default=0, validator=ge(0))  # batches between mid-epoch last.pt; 0 = per epoch
    on_nonfinite: Literal["stop", "skip"] = "stop"  # a non-finite loss or gradient stops the run, or skips the step
    max_skipped_steps: int = attrs.field(default=10, validator=gt(0))  # "skip": stop after this many in a row


@attrs.frozen
class PluginChoice:
    name: str
    config: Any


@attrs.frozen
class Recipe:
    path: str
    run: RunConfig
    data: DataConfig
    model: HeadConfig
    trainer: TrainerConfig
    encoder: PluginChoice
    pooling: PluginChoice
    collator: PluginChoice
    plugin_modules: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe: every value, defaults included."""
        table = {key: config_to_dict(getattr(self, key)) for key in ("run", "data", "model", "trainer")}
        for kind in PLUGIN_TABLES:
            choice = getattr(self, kind)
            table[kind] = {"name": choice.name, **config_to_dict(choice.config)}
        table["plugins"] = {"modules": list(self.plugin_modules)}
        return table

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def flat(self) -> dict[str, Any]:
        """``{"trainer.lr": 0.001, ...}``: scalar values for TensorBoard's HParams."""
        return {
            f"{table}.{key}": value if isinstance(value, int | float | str | bool) else str(value)
            for table, values in self.to_dict().items()
            for key, value in values.items()
        }


FIXED_TABLES = {"run": RunConfig, "data": DataConfig, "model": HeadConfig, "trainer": TrainerConfig}
PLUGIN_TABLES = {"encoder": None, "pooling": "none", "collator": "centralized"}  # default plugin names
ALL_TABLES = [*FIXED_TABLES, *PLUGIN_TABLES, "plugins"]


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RecipeError(f"{path}: cannot read the recipe: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"{path}: malformed TOML: {error}") from None


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``TABLE.KEY=VALUE`` (VALUE in TOML syntax; a bare word is a string) to a parsed recipe, or
    ``TABLE={...}`` (a TOML inline table), which replaces the whole table, e.g. ``pooling={name = "none"}``."""
    key, sep, text = assignment.partition("=")
    parts = key.strip().split(".")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    if sep and len(parts) == 1 and parts[0] and isinstance(value, dict):
        raw[parts[0]] = value
        return
    if not sep or len(parts) != 2 or not all(parts):
        raise RecipeError(f"--set {assignment!r}: expected TABLE.KEY=VALUE, e.g. trainer.epochs=3, or TABLE={{inline table}}")
    table, name = parts
    target = raw.setdefault(table, {})
    if not isinstance(target, dict):
        raise RecipeError(f"--set {assignment!r}: '{table}' is not a table in the recipe")
    target[name] = value


def load_recipe(path: str | Path, overrides: list[str] = (), registry: Registry | None = None) -> tuple[Recipe, Registry]:
    """Parse, override and validate a recipe; load the plugins it names. Reads no data."""
    raw = read_toml(path)
    for assignment in overrides:
        apply_override(raw, assignment)
    where = str(path)
    for table, value in raw.items():
        if table not in ALL_TABLES:
            raise RecipeError(f"{where}: unknown table [{table}]{closest(table, ALL_TABLES)}; allowed: {', '.join(ALL_TABLES)}")
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: '{table}' must be a table ([{table}]), got {value!r}")

    plugin_table = raw.get("plugins", {})
    modules = build_config(_PluginsTable, plugin_table, f"{where}: [plugins]").modules
    if registry is None:
        registry = Registry.default(modules, origin=where)
    else:
        registry.load_modules(modules, origin=where)

    fixed = {key: build_config(cls, raw.get(key, {}), f"{where}: [{key}]") for key, cls in FIXED_TABLES.items()}
    choices = {kind: _choose(registry, kind, raw.get(kind, {}), default, where) for kind, default in PLUGIN_TABLES.items()}
    recipe = Recipe(path=where, **fixed, **choices, plugin_modules=modules)
    check_compatible(recipe, registry)
    return recipe, registry


@attrs.frozen
class _PluginsTable:
    modules: tuple[str, ...] = ()


def _choose(registry: Registry, kind: str, table: dict[str, Any], default: str | None, where: str) -> PluginChoice:
    table = dict(table)
    name = table.pop("name", default)
    if name is None:
        raise RecipeError(f"{where}: [{kind}] needs a 'name'; registered: {', '.join(registry.names(kind))}")
    if not isinstance(name, str):
        raise RecipeError(f"{where}: [{kind}] name = {name!r} has the wrong type, expected a string")
    try:
        info = registry.get(kind, name)
    except PluginError as error:
        raise RecipeError(f"{where}: [{kind}] {error}") from None
    return PluginChoice(name, build_config(info.cls.Config, table, f"{where}: [{kind}] ({name})"))


def check_compatible(recipe: Recipe, registry: Registry) -> None:
    """Refuse an encoder/collator pair that cannot work, before any data is read."""
    encoder = registry.get("encoder", recipe.encoder.name).cls
    collator = registry.get("collator", recipe.collator.name).cls
    if collator.layout not in encoder.layouts:
        raise RecipeError(
            f"{recipe.path}: encoder '{encoder.name}' cannot take the '{collator.layout}' batches of collator "
            f"'{collator.name}'; it takes: {', '.join(sorted(encoder.layouts))}"
        )
