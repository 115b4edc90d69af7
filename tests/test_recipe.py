from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch

from core.errors import PluginError, RecipeError
from core.recipe import load_recipe
from social_xlstm import Encoder, EncoderInput
from tests.conftest import registry_with

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
    recipe, _ = load_recipe(
        write_recipe(BASE), ["trainer.epochs=3", "encoder.embedding_dim=32", "data.source=some/file.h5"]
    )
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
        (
            BASE,
            ["encoder.name=xlstm_shard"],
            "unknown encoder 'xlstm_shard' (did you mean 'xlstm_shared'?); registered: lstm, ",
        ),
        (BASE, ["data.split=[0.5, 0.5]"], "three positive fractions"),
        (BASE, ["data.holidays=XX"], "[data]: holidays = 'XX': 'XX' is not a country the holidays library knows; "),
        (
            BASE,
            ["data.holidays=US-ZZ"],
            "'ZZ' is not a subdivision of US the holidays library knows; US's subdivisions: ",
        ),
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
    assert "--set" in message if overrides else message.startswith(str(path))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["trainer.epocs=3"], "--set trainer.epocs=3: [trainer]: unknown key 'epocs' (did you mean 'epochs'?)"),
        (
            ["encoder.embedding_dim=big"],
            "--set encoder.embedding_dim=big: [encoder] (lstm) embedding_dim = 'big' has the wrong type, expected int",
        ),
        (
            ["pooling={name = 'radius', radius_m = 'far'}"],
            "--set pooling={name = 'radius', radius_m = 'far'}: [pooling] (radius) radius_m = 'far'",
        ),
        (["traner.epochs=3"], "--set traner.epochs=3: unknown table [traner] (did you mean 'trainer'?)"),
        (["trainer.lr=-1"], "PATH (with --set trainer.lr=-1): [trainer]: 'lr' must be > 0.0: -1.0"),
    ],
)
def test_an_error_from_a_set_value_names_the_set(write_recipe, overrides, expected):
    path = write_recipe(BASE)
    with pytest.raises(RecipeError) as error:
        load_recipe(path, overrides)
    assert str(error.value).startswith(expected.replace("PATH", str(path)))


def test_an_error_from_the_file_names_the_file_even_with_other_sets(write_recipe):
    path = write_recipe(BASE + "batch_size = 0\n")
    with pytest.raises(RecipeError) as error:
        load_recipe(path, ["encoder.embedding_dim=32"])
    assert str(error.value).startswith(f"{path}: [trainer]: 'batch_size' must be > 0: 0")


def test_switching_a_plugin_by_set_suggests_the_inline_table(write_recipe):
    path = write_recipe(BASE.replace("embedding_dim = 16", "num_layers = 1"))  # an lstm key that xlstm_shared lacks
    with pytest.raises(RecipeError) as error:
        load_recipe(path, ["encoder.name=xlstm_shared"])
    assert str(error.value).startswith(f"{path}: [encoder] (xlstm_shared): unknown key 'num_layers'")
    assert str(error.value).endswith(
        "; --set encoder.name=xlstm_shared keeps the file's other [encoder] keys (num_layers): "
        "to replace the whole table use --set 'encoder={name = \"xlstm_shared\"}'"
    )
    recipe, _ = load_recipe(path, ["encoder={name = 'xlstm_shared', num_blocks = 2}"])
    assert recipe.encoder.name == "xlstm_shared" and recipe.encoder.config.num_blocks == 2


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.toml")


def test_plugin_module_that_fails_to_import_is_named(write_recipe):
    with pytest.raises(
        PluginError, match=r"\[plugins\] modules: 'no_such_module_xyz' failed to import: ModuleNotFoundError"
    ):
        load_recipe(write_recipe(BASE + '[plugins]\nmodules = ["no_such_module_xyz"]\n'))


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "recipes").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(path, tmp_path):
    recipe, registry = load_recipe(path)
    for kind in ("encoder", "pooling", "collator"):
        choice = getattr(recipe, kind)
        assert type(choice.config) is registry.get(kind, choice.name).cls.Config  # built as the plugin's options
    resolved = tmp_path / "resolved.toml"
    resolved.write_text(recipe.to_toml())
    assert load_recipe(resolved)[0].to_dict() == recipe.to_dict()


class PlainEncoder(Encoder):
    """Declares no capability: one linear map of every step's features."""

    name = "plain"

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.out_dim = 4
        self.linear = torch.nn.Linear(EncoderInput.num_features(spec), 4)

    def forward(self, inputs):
        return self.linear(inputs.features())


@pytest.mark.parametrize(
    ("overrides", "missing"),
    [
        (
            ["collator.name=dynamic_padding"],
            "honours_time_padding (needed: collator 'dynamic_padding' pads time) nor honours_vd_slots (needed: "
            "collator 'dynamic_padding' uses VD slots)",
        ),
        (
            ["data.min_history=3"],
            "honours_time_padding (needed: [data] min_history = 3 makes histories vary in length)",
        ),
    ],
)
def test_an_encoder_lacking_a_capability_is_refused_naming_it(write_recipe, overrides, missing):
    path = write_recipe('[encoder]\nname = "plain"\n')
    registry = registry_with(PlainEncoder)
    assert load_recipe(path, registry=registry)[0].encoder.name == "plain"  # fixed windows, centralized: fine
    with pytest.raises(RecipeError) as error:
        load_recipe(path, overrides, registry=registry)
    assert str(error.value) == (
        f"{path} (with --set {overrides[0]}): encoder 'plain' does not declare {missing}; honour it in the encoder "
        "(docs/writing-a-plugin.md), declare it, and check it with `python -m core.plugins check plain`, "
        "or use collator 'centralized' with [data] min_history = 0"
    )


def test_declared_capabilities_are_accepted(write_recipe):
    honest = type(
        "HonestEncoder", (PlainEncoder,), {"name": "honest", "honours_time_padding": True, "honours_vd_slots": True}
    )
    recipe, _ = load_recipe(
        write_recipe('[encoder]\nname = "honest"\n[collator]\nname = "dynamic_padding"\n[data]\nmin_history = 3\n'),
        registry=registry_with(honest),
    )
    assert recipe.collator.name == "dynamic_padding"
