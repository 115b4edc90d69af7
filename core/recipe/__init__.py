"""Recipes, the start of the flow: TOML read, overridden and validated into options (the plugins they name looked
up in the plugin host's registry, ``core.host``)."""

from core.recipe.load import (
    ModelConfig,
    Recipe,
    TrainerConfig,
    apply_override,
    flatten,
    load_recipe,
    read_toml,
)

__all__ = ["ModelConfig", "Recipe", "TrainerConfig", "apply_override", "flatten", "load_recipe", "read_toml"]
