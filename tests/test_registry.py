"""The registry's three discovery routes (built-in, entry point, recipe module), all through one pluggy hook."""

from __future__ import annotations

import sys
import textwrap

import attrs
import pytest
import torch

import core.api
import core.host.hookspecs
import core.sequence
import social_xlstm
from core.errors import PluginError, RecipeError
from core.host.registry import Registry
from core.model import build_forecaster, build_model
from core.recipe import load_recipe
from core.run import main as run_main
from tests.conftest import make_spec, registry_with
from tests.helpers import short_run

THIRD_PARTY = '''
"""A throw-away third-party pooling: the mean state of every other present VD."""
import attrs
import torch
from social_xlstm import Pooling, hookimpl


@attrs.frozen
class GlobalMeanConfig:
    scale: float = 1.0


class GlobalMeanPooling(Pooling):
    name = "{name}"
    Config = GlobalMeanConfig
    uses_positions = False

    def forward(self, hidden, node_mask):
        weights = node_mask.to(hidden.dtype)
        total = (hidden * weights[..., None]).sum(1, keepdim=True) - hidden * weights[..., None]
        others = (weights.sum(1, keepdim=True) - weights).clamp_min(1.0)
        return self.config.scale * total / others[..., None]


@hookimpl
def register_plugins(register):
    register(GlobalMeanPooling)
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("thirdparty_")]:
        del sys.modules[name]


def write_module(directory, module: str, plugin_name: str) -> None:
    (directory / f"{module}.py").write_text(THIRD_PARTY.format(name=plugin_name))


def test_builtins_are_registered_with_their_source():
    registry = Registry.default()
    assert {"lstm", "xlstm_shared", "xlstm_per_vd"} <= set(registry.names("encoder"))
    assert {"none", "radius"} <= set(registry.names("pooling"))
    assert registry.get("pooling", "radius").source == "built-in plugins.pooling.radius"


def test_recipe_module_route_used_by_name(plugin_dir, write_recipe):
    write_module(plugin_dir, "thirdparty_recipe", "global_mean")
    path = write_recipe(
        """
        [encoder]
        name = "lstm"
        embedding_dim = 8
        [pooling]
        name = "global_mean"
        scale = 2.0
        [plugins]
        modules = ["thirdparty_recipe"]
        """
    )
    recipe, registry = load_recipe(path)
    info = registry.get("pooling", "global_mean")
    assert info.source == f"{path} module thirdparty_recipe"
    assert recipe.pooling.config.scale == 2.0
    model = build_model(recipe, registry, make_spec(n=4))
    hidden = torch.arange(8.0).reshape(1, 4, 2)
    context = model.pooling(hidden, torch.ones(1, 4, dtype=torch.bool))
    expected = 2.0 * (hidden.sum(1, keepdim=True) - hidden) / 3
    assert torch.allclose(context, expected)


def test_entry_point_route(plugin_dir):
    write_module(plugin_dir, "thirdparty_ep", "ep_mean")
    dist = plugin_dir / "thirdparty_ep-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-ep\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[social_xlstm]\nep_mean = thirdparty_ep\n")
    registry = Registry.default()
    info = registry.get("pooling", "ep_mean")
    assert info.source == "entry point 'ep_mean = thirdparty_ep' of package thirdparty-ep"
    assert info.cls.__module__ == "thirdparty_ep"


THIRD_PARTY_HEAD = '''
"""A throw-away third-party head: every level's quantile from a linear layer (sorted by DistributionHead), trained
by the pinball loss."""
import torch
from torch import nn
from social_xlstm import DistributionHead, hookimpl


class LinearQuantileHead(DistributionHead):
    name = "ep_quantiles"

    def __init__(self, config, spec, dim):
        super().__init__(config, spec, dim)
        self.linear = nn.Linear(dim, spec.horizon * len(self.levels))

    def forward(self, features):
        b, n, _ = features.shape
        return self.linear(features).reshape(b, n, self.horizon, len(self.levels)).transpose(1, 2)

    def raw_quantiles(self, output):
        return output

    def loss(self, output, target):
        error = target[..., None] - output
        levels = self.level_values.to(output.dtype)
        return torch.maximum(levels * error, (levels - 1) * error).mean(-1)


@hookimpl
def register_plugins(register):
    register(LinearQuantileHead)
'''


def test_a_head_from_an_entry_point_trains_from_a_recipe(plugin_dir, small_h5, tmp_path, capsys):
    """A third-party head, installed (a dist-info with the entry point on sys.path), named by ``[head]`` with its
    options: one short epoch on the synthetic data, its quantiles scored."""
    (plugin_dir / "thirdparty_head.py").write_text(THIRD_PARTY_HEAD)
    dist = plugin_dir / "thirdparty_head-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-head\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[social_xlstm]\nep_quantiles = thirdparty_head\n")
    recipe = tmp_path / "recipe.toml"
    head = {"name": "ep_quantiles", "levels": [0.1, 0.5, 0.9]}
    recipe.write_text(short_run("ep_head", tmp_path / "runs", small_h5, head=head))
    assert run_main([str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "best epoch 1" in out and "intervals (speed)" in out and "cov80" in out  # its 10%-90% interval scored
    (run_dir,) = (tmp_path / "runs").iterdir()
    saved, registry = load_recipe(run_dir / "recipe.toml")
    assert saved.head.name == "ep_quantiles" and saved.head.config.levels == (0.1, 0.5, 0.9)
    assert registry.get("head", "ep_quantiles").source == (
        "entry point 'ep_quantiles = thirdparty_head' of package thirdparty-head"
    )


def test_duplicate_name_names_both_sources(plugin_dir, write_recipe):
    write_module(plugin_dir, "thirdparty_dup", "radius")
    path = write_recipe('[encoder]\nname = "lstm"\n[plugins]\nmodules = ["thirdparty_dup"]\n')
    with pytest.raises(PluginError) as error:
        load_recipe(path)
    assert str(error.value) == (
        f"pooling plugin 'radius' is registered twice: by built-in plugins.pooling.radius and by {path} module "
        "thirdparty_dup"
    )


def test_misspelt_hook_is_an_error(plugin_dir):
    (plugin_dir / "thirdparty_typo.py").write_text(
        "from social_xlstm import hookimpl\n\n@hookimpl\ndef register_plugin(register):\n    pass\n"
    )
    with pytest.raises(PluginError, match="thirdparty_typo.*register_plugin"):
        Registry.default(["thirdparty_typo"], origin="test")


def test_registering_a_non_plugin_is_an_error(plugin_dir):
    (plugin_dir / "thirdparty_bad.py").write_text(
        "from social_xlstm import hookimpl\n\n@hookimpl\ndef register_plugins(register):\n    register(dict)\n"
    )
    with pytest.raises(PluginError, match="not a subclass of Encoder, Pooling, Collator or Head"):
        Registry.default(["thirdparty_bad"], origin="test")


def test_plugin_that_raises_at_construction_is_named(plugin_dir, write_recipe):
    source = THIRD_PARTY.format(name="boom").replace(
        "    def forward",
        "    def __init__(self, *args):\n        raise RuntimeError('no GPU here')\n\n    def forward",
    )
    (plugin_dir / "thirdparty_boom.py").write_text(source)
    recipe, registry = load_recipe(
        write_recipe('[encoder]\nname="lstm"\n[pooling]\nname="boom"\n[plugins]\nmodules=["thirdparty_boom"]\n')
    )
    with pytest.raises(
        PluginError, match=r"pooling 'boom' \(.*module thirdparty_boom\) failed to build: RuntimeError: no GPU here"
    ):
        build_model(recipe, registry, make_spec())


def test_unknown_plugin_lists_registered_names(write_recipe):
    with pytest.raises(
        RecipeError,
        match=r"unknown pooling 'raduis' \(did you mean 'radius'\?\); "
        r"registered: attention, learnable_radius, learned_graph, none, radius",
    ):
        load_recipe(write_recipe('[encoder]\nname="lstm"\n[pooling]\nname="raduis"\n'))


def test_listing_cli_shows_fields_types_defaults_and_source(capsys):
    from core.plugins import main

    assert main([]) == 0
    out = capsys.readouterr().out
    assert "pooling 'radius'  [built-in plugins.pooling.radius]" in out
    assert textwrap.dedent("    radius_m               float") in out
    assert "default 1500.0" in out


def test_listing_shows_each_head_whole_with_whether_it_forecasts_a_distribution(capsys):
    from core.plugins import main

    assert main([]) == 0
    out = capsys.readouterr().out
    assert (
        "head 'quantile'  [built-in plugins.heads.quantile]\n"
        "    Head ``quantile``: the forecast's quantiles at ``levels``, trained by the pinball loss, non-crossing by\n"
        "    construction (the median plus positive gaps, added upwards and subtracted downwards).\n"
        "    capabilities: distribution yes\n"
        "    parameters: 5,460 (defaults, horizon 12, features of size 64)\n"
        "    levels                 list[float]                        default (0.05, "
    ) in out
    assert "head 'point'  [built-in plugins.heads.point]\n    Head ``point``: one number" in out
    assert "    capabilities: distribution no\n    parameters: 780 (defaults, horizon 12, features of size 64)\n" in out
    assert run_main(["--list-plugins"]) == 0
    assert capsys.readouterr().out == out


def test_the_public_api_is_core_re_exported_and_the_old_imports_still_work():
    assert social_xlstm.Encoder is core.api.Encoder and social_xlstm.Batch is core.api.Batch
    assert social_xlstm.hookimpl is core.host.hookspecs.hookimpl
    assert social_xlstm.causal_over_padding is core.sequence.causal_over_padding
    assert all(hasattr(social_xlstm, name) for name in social_xlstm.__all__)


class _Options(social_xlstm.Pooling):
    name = "options"
    uses_positions = False

    def forward(self, hidden, node_mask):
        return torch.zeros_like(hidden)


def test_a_config_field_of_an_unsupported_type_is_refused_when_it_registers():
    @attrs.frozen
    class ListConfig:
        names: list[str] = attrs.Factory(list)
        scale: float = 1.0

    listed = type("Listed", (_Options,), {"Config": ListConfig})
    with pytest.raises(PluginError) as error:
        registry_with(listed)
    assert str(error.value) == (
        "test module: pooling 'options' Config field(s) 'names: list[str]': a recipe cannot give this type; "
        "supported: bool, int, float, str, Literal[...], tuple[X, ...], X | None"
    )


def test_a_plugin_without_config_has_no_options(write_recipe):
    registry = registry_with(_Options)
    recipe, _ = load_recipe(write_recipe('[encoder]\nname = "lstm"\n[pooling]\nname = "options"\n'), registry=registry)
    assert recipe.pooling.config == social_xlstm.NoOptions()
    with pytest.raises(
        RecipeError,
        match=r"\[pooling\] \(options\): unknown key 'scale'; allowed keys: none \(the plugin has no options\)",
    ):
        load_recipe(
            write_recipe('[encoder]\nname = "lstm"\n[pooling]\nname = "options"\nscale = 2.0\n'), registry=registry
        )


class _NoOutDim(social_xlstm.Encoder):
    name = "no_out_dim"
    honours_time_padding = honours_vd_slots = True

    def forward(self, inputs):
        return inputs.values


class _BrokenCollator(social_xlstm.Collator):
    name = "broken"
    layout = "centralized"

    def __init__(self, config, spec):
        raise ValueError("needs a GPU")


def test_encoder_without_out_dim_and_collator_that_raises_are_named_like_any_plugin(write_recipe):
    registry = registry_with(_NoOutDim, _BrokenCollator)
    recipe, _ = load_recipe(write_recipe('[encoder]\nname = "no_out_dim"\n'), registry=registry)
    with pytest.raises(PluginError) as error:
        build_model(recipe, registry, make_spec())
    assert str(error.value) == (
        "encoder 'no_out_dim' (test module) built without a valid 'out_dim' (None): its __init__ must set "
        "self.out_dim = E, the size of its states"
    )
    recipe, _ = load_recipe(write_recipe('[encoder]\nname = "lstm"\n[collator]\nname = "broken"\n'), registry=registry)
    with pytest.raises(
        PluginError, match=r"^collator 'broken' \(test module\) failed to build: ValueError: needs a GPU$"
    ):
        build_forecaster(recipe, registry, make_spec(), "data.h5")
