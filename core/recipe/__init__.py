"""Recipes, the start of the flow: TOML read, overridden and validated into options; the registry of plugins."""

from core.recipe.load import (
    ModelConfig,
    PluginChoice,
    Recipe,
    TrainerConfig,
    apply_override,
    flatten,
    load_recipe,
    read_toml,
)
from core.recipe.options import build_config, describe_fields
from core.recipe.registry import PluginInfo, Registry
from core.recipe.scaffold import write_package

__all__ = [
    "ModelConfig",
    "PluginChoice",
    "PluginInfo",
    "Recipe",
    "Registry",
    "TrainerConfig",
    "apply_override",
    "build_config",
    "describe_fields",
    "flatten",
    "load_recipe",
    "read_toml",
    "write_package",
]
