"""TOML recipes: parsed with tomllib, overridden with ``--set TABLE.KEY=VALUE``, validated into attrs classes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import attrs
import tomli_w
from attrs.validators import ge, gt, lt

from core.api import LayerwiseEncoder, NoOptions
from core.data import describe_source
from core.data.config import DataConfig
from core.errors import PluginError, RecipeError, closest
from core.host.options import build_config, config_to_dict
from core.host.registry import PluginChoice, Registry


def _device_is_valid(instance, attribute, value) -> None:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise ValueError(f"'{attribute.name}' must be 'auto', 'cpu', 'cuda' or 'cuda:N': {value!r}")


@attrs.frozen
class RunConfig:
    name: str = "run"
    seed: int = 0
    output_dir: str = "runs"


@attrs.frozen
class ModelConfig:
    """``[model]``: where social pooling acts, and the hidden layer fusing each VD's own state and social context
    (whose output the ``[head]`` plugin turns into the forecast)."""

    hidden_dim: int = attrs.field(default=64, validator=gt(0))
    dropout: float = attrs.field(default=0.0, validator=[ge(0.0), lt(1.0)])
    # last: pool the encoder's last states; every_step: also pool every step's input states into the first layer;
    # interleaved: also a pooling layer (own weights) between every two encoder layers
    social: Literal["last", "every_step", "interleaved"] = "last"
    # none: forecast the target; profile: forecast its deviation from the historical profile of the target steps
    # (the historical average: a model whose head outputs 0 forecasts exactly that baseline)
    residual: Literal["none", "profile"] = "none"


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
    scheduler: Literal["none", "cosine", "plateau", "onecycle"] = "cosine"
    patience: int = attrs.field(default=5, validator=ge(0))  # epochs without val MAE gain; 0 = off
    device: str = attrs.field(default="auto", validator=_device_is_valid)
    num_workers: int = attrs.field(default=0, validator=ge(0))
    max_batches_per_epoch: int = attrs.field(default=0, validator=ge(0))  # 0 = all
    figure_vds: int = attrs.field(default=4, validator=ge(0))
    compile: bool = False  # torch.compile the model: slower first batches, faster steps after
    whiten: float = attrs.field(
        default=0.0, validator=[ge(0.0), lt(1.0)]
    )  # fraction of inputs hidden per training batch
    checkpoint_every: int = attrs.field(default=0, validator=ge(0))  # batches between mid-epoch last.pt; 0 = per epoch
    on_nonfinite: Literal["stop", "skip"] = "stop"  # a non-finite loss or gradient stops the run, or skips the step
    max_skipped_steps: int = attrs.field(default=10, validator=gt(0))  # "skip": stop after this many in a row


@attrs.frozen
class Recipe:
    path: str
    run: RunConfig
    data: DataConfig
    model: ModelConfig
    trainer: TrainerConfig
    encoder: PluginChoice
    pooling: PluginChoice
    collator: PluginChoice
    head: PluginChoice = PluginChoice("point", NoOptions())
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
            key: value if isinstance(value, int | float | str | bool) else str(value)
            for key, value in flatten(self.to_dict()).items()
        }


def flatten(tables: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A recipe as ``Recipe.to_dict`` gives it → ``{"TABLE.KEY": value}``."""
    return {f"{table}.{key}": value for table, values in tables.items() for key, value in values.items()}


FIXED_TABLES = {"run": RunConfig, "data": DataConfig, "model": ModelConfig, "trainer": TrainerConfig}
PLUGIN_TABLES = {"encoder": None, "pooling": "none", "collator": "centralized", "head": "point"}  # default names
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


def apply_override(raw: dict[str, Any], assignment: str) -> tuple[str, str | None]:
    """Apply ``TABLE.KEY=VALUE`` (VALUE in TOML syntax; a bare word is a string) to a parsed recipe, or
    ``TABLE={...}`` (a TOML inline table), which replaces the whole table, e.g. ``pooling={name = "none"}``.
    Returns what it set: ``(TABLE, KEY)``, or ``(TABLE, None)`` for a whole table."""
    key, sep, text = assignment.partition("=")
    parts = key.strip().split(".")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    if sep and len(parts) == 1 and parts[0] and isinstance(value, dict):
        raw[parts[0]] = value
        return parts[0], None
    if not sep or len(parts) != 2 or not all(parts):
        raise RecipeError(
            f"--set {assignment!r}: expected TABLE.KEY=VALUE, e.g. trainer.epochs=3, or TABLE={{inline table}}"
        )
    table, name = parts
    target = raw.setdefault(table, {})
    if not isinstance(target, dict):
        raise RecipeError(f"--set {assignment!r}: '{table}' is not a table in the recipe")
    target[name] = value
    return table, name


class Origins:
    """Where each value of a parsed recipe came from: the file, or a ``--set`` (of one key or a whole table)."""

    def __init__(self, path: str):
        self.path = path
        self.sets: dict[tuple[str, str | None], str] = {}

    def apply(self, raw: dict[str, Any], assignment: str) -> None:
        table, key = apply_override(raw, assignment)
        if key is None:  # the whole table is replaced: none of its earlier keys is left
            self.sets = {k: v for k, v in self.sets.items() if k[0] != table}
        self.sets[table, key] = f"--set {assignment}"

    def of(self, table: str, key: str | None = None) -> str | None:
        """The ``--set`` that gave ``table``'s ``key`` (None: the whole table), or None if the file did."""
        return self.sets.get((table, None)) or (self.sets.get((table, key)) if key else None)

    def where(self, table: str, key: str | None = None, suffix: str = "") -> str:
        """The origin an error about ``table``'s ``key`` (None: the table as a whole) starts with, e.g.
        ``recipe.toml: [trainer]``, ``--set trainer.lr=x: [trainer]`` or ``recipe.toml (with --set ...): [trainer]``."""
        given = self.of(table, key)
        if given:
            return f"{given}: [{table}]{suffix}"
        return f"{self.mention(table) if key is None else self.path}: [{table}]{suffix}"

    def sets_of(self, *tables: str) -> list[str]:
        """The ``--set`` assignments that changed ``tables``."""
        return [assignment for (table, _), assignment in self.sets.items() if table in tables]

    def mention(self, *tables: str) -> str:
        """The recipe's path, naming the ``--set`` assignments that changed ``tables``."""
        sets = self.sets_of(*tables)
        return self.path + (f" (with {', '.join(sets)})" if sets else "")

    def build(self, cls: type, values: dict[str, Any], table: str, suffix: str = "") -> Any:
        """``build_config`` for the ``values`` of the recipe table ``table``, each error naming where its value
        came from."""
        return build_config(
            cls, values, self.where(table, suffix=suffix), {k: self.where(table, k, suffix) for k in values}
        )


def load_recipe(
    path: str | Path, overrides: list[str] = (), registry: Registry | None = None
) -> tuple[Recipe, Registry]:
    """Parse, override and validate a recipe; load the plugins it names. Reads no data."""
    raw = read_toml(path)
    where = str(path)
    origins, in_file = Origins(where), set(raw)
    for assignment in overrides:
        origins.apply(raw, assignment)
    for table, value in raw.items():
        source = where if table in in_file else origins.sets_of(table)[0]  # a table only a --set gave
        if table not in ALL_TABLES:
            raise RecipeError(
                f"{source}: unknown table [{table}]{closest(table, ALL_TABLES)}; allowed: {', '.join(ALL_TABLES)}"
            )
        if not isinstance(value, dict):
            raise RecipeError(f"{source}: '{table}' must be a table ([{table}]), got {value!r}")

    modules = origins.build(PluginsTable, raw.get("plugins", {}), "plugins").modules
    if registry is None:
        registry = Registry.default(modules, origin=where)
    else:
        registry.load_modules(modules, origin=where)

    fixed = {key: origins.build(cls, raw.get(key, {}), key) for key, cls in FIXED_TABLES.items()}
    choices = {kind: _choose(registry, kind, raw, default, origins) for kind, default in PLUGIN_TABLES.items()}
    recipe = Recipe(path=where, **fixed, **choices, plugin_modules=modules)
    check_compatible(recipe, registry, origins.mention("model", "data", *PLUGIN_TABLES))
    check_data_offers(recipe, registry, origins.mention("data", "pooling"))
    return recipe, registry


@attrs.frozen
class PluginsTable:
    """``[plugins]``: modules to import for their plugins, beside the built-ins and installed entry points."""

    modules: tuple[str, ...] = ()


def _choose(registry: Registry, kind: str, raw: dict[str, Any], default: str | None, origins: Origins) -> PluginChoice:
    table = dict(raw.get(kind, {}))
    name = table.pop("name", default)
    if name is None:
        raise RecipeError(f"{origins.where(kind)} needs a 'name'; registered: {', '.join(registry.names(kind))}")
    if not isinstance(name, str):
        raise RecipeError(f"{origins.where(kind, 'name')} name = {name!r} has the wrong type, expected a string")
    try:
        info = registry.get(kind, name)
    except PluginError as error:
        raise RecipeError(f"{origins.where(kind, 'name')} {error}") from None
    try:
        config = origins.build(info.cls.Config, table, kind, f" ({name})")
    except RecipeError as error:
        renamed, stale = origins.sets.get((kind, "name")), [key for key in table if not origins.of(kind, key)]
        if renamed and stale:  # --set KIND.name=NEW left the old plugin's keys of the file in place
            raise RecipeError(
                f"{error}; {renamed} keeps the file's other [{kind}] keys ({', '.join(stale)}): "
                f"to replace the whole table use --set '{kind}={{name = \"{name}\"}}'"
            ) from None
        raise
    return PluginChoice(name, config)


DATA_NEEDS = {
    "positions": "VD positions (metadata/vd_info lat/lon)",
    "road_graph": "a road graph (metadata/road_graph)",
}


def check_data_offers(recipe: Recipe, registry: Registry, where: str | None = None) -> None:
    """Refuse a pooling whose needs (positions, a road graph) the data source lacks, reading only the file's
    metadata; a source that cannot be read is left to the data loading, which says why."""
    offered = describe_source(recipe.data.source)
    cls = registry.get("pooling", recipe.pooling.name).cls
    missing = [DATA_NEEDS[need] for need in sorted(cls.needs(recipe.pooling.config) - (offered or set()))]
    if offered is None or not missing:
        return
    fitting = [
        n for n in registry.names("pooling") if (c := registry.get("pooling", n).cls).needs(c.Config()) <= offered
    ]
    raise RecipeError(
        f"{where or recipe.path}: [pooling] '{recipe.pooling.name}' needs {' and '.join(missing)}, which "
        f"{recipe.data.source} does not have; poolings that need nothing more: {', '.join(fitting)}"
    )


def check_compatible(recipe: Recipe, registry: Registry, where: str | None = None) -> None:
    """Refuse an encoder/collator/data combination that cannot work, before any data is read; errors start with
    ``where`` (default: the recipe's path)."""
    where = where or recipe.path
    encoder = registry.get("encoder", recipe.encoder.name).cls
    collator = registry.get("collator", recipe.collator.name).cls
    if recipe.model.social != "last" and not issubclass(encoder, LayerwiseEncoder):
        layerwise = [
            n for n in registry.names("encoder") if issubclass(registry.get("encoder", n).cls, LayerwiseEncoder)
        ]
        raise RecipeError(
            f"{where}: [model] social = {recipe.model.social!r} pools between encoder layers, "
            f"but encoder '{encoder.name}' does not run layer by layer (it is not a LayerwiseEncoder); "
            f'use social = "last", or one of: {", ".join(layerwise)}'
        )
    if collator.layout not in encoder.layouts:
        raise RecipeError(
            f"{where}: encoder '{encoder.name}' cannot take the '{collator.layout}' batches of collator "
            f"'{collator.name}'; it takes: {', '.join(sorted(encoder.layouts))}"
        )
    min_history = recipe.data.min_history
    time_padding = [f"collator '{collator.name}' pads time"] if collator.pads_time else []
    if min_history > 0:
        time_padding.append(f"[data] min_history = {min_history} makes histories vary in length")
    needs = {
        "honours_time_padding": time_padding,
        "honours_vd_slots": [f"collator '{collator.name}' uses VD slots"] if collator.uses_vd_slots else [],
    }
    missing = [
        f"{flag} (needed: {' and '.join(why)})" for flag, why in needs.items() if why and not getattr(encoder, flag)
    ]
    if missing:
        raise RecipeError(
            f"{where}: encoder '{encoder.name}' does not declare {' nor '.join(missing)}; honour it in the encoder "
            "(docs/writing-a-plugin.md), declare it, and check it with `python -m core.plugins check "
            f"{encoder.name}`, or use collator 'centralized' with [data] min_history = 0"
        )
