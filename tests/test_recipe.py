from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from core.errors import PluginError, RecipeError
from core.recipe import load_recipe

BASE = """
[run]
name = "t"
[encoder]
name = "lstm"
embedding_dim = 16
[pooling]
name = "radius"
radius_m = 800.0
[trainer]
epochs = 2
"""


def test_recipe_values_defaults_and_overrides(write_recipe):
    recipe, _ = load_recipe(write_recipe(BASE), ["trainer.epochs=3", "encoder.embedding_dim=32", "data.source=some/file.h5"])
    assert recipe.trainer.epochs == 3
    assert recipe.encoder.config.embedding_dim == 32
    assert recipe.data.source == "some/file.h5"  # a bare word is a string
    assert recipe.pooling.config.radius_m == 800.0
    assert recipe.trainer.batch_size == 32  # default
    assert recipe.collator.name == "centralized"  # default plugin


def test_resolved_recipe_round_trips(write_recipe, tmp_path):
    recipe, _ = load_recipe(write_recipe(BASE))
    resolved = tmp_path / "resolved.toml"
    resolved.write_text(recipe.to_toml())
    again, _ = load_recipe(resolved)
    assert again.to_dict() == recipe.to_dict()
    assert tomllib.loads(recipe.to_toml())["encoder"]["num_layers"] == 2  # defaults written out


def test_integer_is_accepted_where_a_float_is_expected(write_recipe):
    recipe, _ = load_recipe(write_recipe(BASE), ["pooling.radius_m=900"])
    assert recipe.pooling.config.radius_m == 900.0 and isinstance(recipe.pooling.config.radius_m, float)


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        ("[run\nname=1", [], "malformed TOML"),
        (BASE + "[traner]\n", [], "unknown table [traner] (did you mean 'trainer'?)"),
        (BASE, ["trainer.epocs=3"], "[trainer]: unknown key 'epocs' (did you mean 'epochs'?)"),
        (BASE, ["trainer.epochs='3'"], "[trainer] epochs = '3' has the wrong type, expected int"),
        (BASE, ["trainer.epochs=2.5"], "epochs = 2.5 has the wrong type, expected int"),
        (BASE, ["trainer.batch_size=0"], "'batch_size' must be > 0: 0"),
        (BASE, ["pooling.radius_m=-5"], "[pooling] (radius): 'radius_m' must be > 0.0: -5.0"),
        (BASE, ["data.horizon=0"], "'horizon' must be > 0: 0"),
        (BASE, ["trainer.precision=bf16"], "precision = 'bf16' is not allowed (did you mean 'bf16-mixed'?)"),
        (BASE, ["encoder.name=xlstm_shard"], "unknown encoder 'xlstm_shard' (did you mean 'xlstm_shared'?); registered: lstm, "),
        (BASE, ["data.split=[0.5, 0.5]"], "three positive fractions"),
        (BASE, ["trainer.epochs"], "expected TABLE.KEY=VALUE"),
        ("[pooling]\nname='none'\n", [], "[encoder] needs a 'name'"),
    ],
)
def test_bad_recipes_name_file_table_and_key(write_recipe, text, overrides, expected):
    path = write_recipe(text)
    with pytest.raises(RecipeError) as error:
        load_recipe(path, overrides)
    message = str(error.value)
    assert expected in message
    if not message.startswith("--set"):
        assert message.startswith(str(path))


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.toml")


def test_plugin_module_that_fails_to_import_is_named(write_recipe):
    with pytest.raises(PluginError, match=r"\[plugins\] modules: 'no_such_module_xyz' failed to import: ModuleNotFoundError"):
        load_recipe(write_recipe(BASE + '[plugins]\nmodules = ["no_such_module_xyz"]\n'))


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "recipes").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(path):
    recipe, registry = load_recipe(path)
    for kind in ("encoder", "pooling", "collator"):
        assert registry.get(kind, getattr(recipe, kind).name)
