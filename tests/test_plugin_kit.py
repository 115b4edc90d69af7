"""The conformance kit: every registered plugin passes it (the list comes from the registry, so a new built-in
is checked by being added), and each way of breaking a contract fails the check that names it, by a number."""

from __future__ import annotations

import pytest

from core.host.registry import Registry
from core.plugins import main
from social_xlstm.testing import check_head, check_plugin, run_checks

MODULES = ["tests.kit_plugins"]


def failed(kind: str, name: str, config=None) -> dict[str, float]:
    return {r.name: r.value for r in run_checks(kind, name, config, MODULES) if r.passed is False}


@pytest.mark.parametrize(("kind", "name"), [(info.kind, info.name) for info in Registry.default()])
def test_every_registered_plugin_passes_the_kit(kind, name):
    results = check_plugin(kind, name)
    assert sum(r.passed is True for r in results) >= 5


@pytest.mark.parametrize(
    ("kind", "name", "config", "checked"),
    [
        ("encoder", "xlstm_shared", {"vd_embedding": True, "per_vd_output": True}, "vd_weights"),
        ("encoder", "xlstm_shared", {"recompute": True}, "padding.gradient"),
        ("encoder", "lstm", {"vd_embedding": True}, "vd_weights"),
        ("encoder", "spin_lite", {"n_layers": 2, "eta": 1, "temporal_self_attention": True}, "vd_weights"),
        ("encoder", "stid", {"calendar": "target", "holiday_dim": 4}, "padding.batched"),
        ("collator", "dynamic_padding", {"max_sequence_length": 4}, "forecast"),
        ("pooling", "road_graph", {"hops": 2, "learn_link_weights": True}, "absent.gradient"),
        ("pooling", "road_graph", {"directed": False, "weights": "uniform"}, "social.interleaved"),
        ("pooling", "radius", {"metric": "road", "radius_m": 2000.0}, "absent.junk"),
        ("pooling", "learned_graph", {"with_road": True, "k": 2}, "padding.gradient"),
        ("head", "quantile", {"levels": [0.25, 0.5, 0.75]}, "learns.coverage"),
        ("head", "laplace", {"levels": [0.02, 0.5, 0.98], "calibrate": True}, "quantiles"),
    ],
)
def test_options_that_change_what_is_checked_pass_too(kind, name, config, checked):
    results = {r.name: r for r in check_plugin(kind, name, config)}
    assert results[checked].passed is True


def test_a_gru_that_ignores_step_mask_fails_the_padding_checks_and_the_corrected_one_passes():
    fails = failed("encoder", "naive_gru")
    assert set(fails) == {"padding.batched", "padding.maximum", "padding.junk", "padding.gradient"}
    assert fails["padding.batched"] > 1e-3 and fails["padding.gradient"] > 0
    with pytest.raises(
        AssertionError,
        match=r"encoder 'naive_gru' fails 4 of 15 conformance checks:\n"
        r"FAIL  padding\.batched +max\|diff\| 0\.00\d+ \(limit 1e-05\)",
    ):
        check_plugin("encoder", "naive_gru", modules=MODULES)
    assert not failed("encoder", "gru")


def test_per_vd_weights_that_ignore_vd_index_fail():
    fails = failed("encoder", "slot_blind")
    assert set(fails) == {"vd_weights", "padding.maximum"} and fails["vd_weights"] > 0


def test_an_encoder_without_out_dim_fails_to_build():
    (result,) = run_checks("encoder", "no_out_dim", modules=MODULES)
    assert result.name == "build" and result.passed is False and "'out_dim'" in result.note


def test_a_pooling_that_reads_absent_vds_fails():
    assert {"isolated", "absent.junk", "absent.gradient"} <= set(failed("pooling", "leaky_mean"))


def test_collators_that_hide_slots_or_move_inputs_fail():
    assert set(failed("collator", "slot_hiding")) == {"flags"}
    fails = failed("collator", "reversed")
    assert set(fails) == {"content", "forecast"} and fails["content"] > 0


def test_heads_whose_quantiles_cross_whose_point_is_not_the_median_or_whose_loss_reads_masked_targets_fail():
    fails = failed("head", "unsorted_quantile")
    assert set(fails) == {"quantiles"} and fails["quantiles"] > 0
    fails = failed("head", "mean_point")
    assert set(fails) == {"point"} and fails["point"] > 1e-3
    fails = failed("head", "batch_scaled")
    assert set(fails) == {"mask"} and fails["mask"] > 1e-3
    with pytest.raises(
        AssertionError,
        match=r"head 'unsorted_quantile' fails 1 of 19 conformance checks:\n"
        r"FAIL  quantiles +max crossing \d+(\.\d+)? \(limit 0\) +cross with features; ",
    ):
        check_head("unsorted_quantile", modules=MODULES)
    assert not failed("head", "linear_quantile")  # the same linear quantiles, sorted by DistributionHead


def test_check_cli_prints_every_check_and_exits_1_on_a_failure(capsys, write_recipe):
    recipe = write_recipe('[encoder]\nname = "naive_gru"\n[plugins]\nmodules = ["tests.kit_plugins"]\n')
    assert main(["check", "naive_gru", "--recipe", str(recipe)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"encoder 'naive_gru'  [{recipe} module tests.kit_plugins]  "
        "honours_time_padding yes, honours_vd_slots yes, layerwise no"
    )
    assert len(lines) == 17 and lines[-1] == "7 passed, 4 failed, 4 skipped"
    assert any(line.startswith("FAIL  padding.batched    max|diff| ") for line in lines)
    assert main(["check", "gru", "--recipe", str(recipe)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "11 passed, 0 failed, 4 skipped"


def test_check_cli_takes_config_values_and_names_unknown_plugins(capsys):
    assert main(["check", "radius", "--set", "aggregation=max", "--set", "radius_m=900"]) == 0
    assert "pooling 'radius'  [built-in plugins.pooling.radius]  uses_positions yes" in capsys.readouterr().out
    assert main(["check", "radiu"]) == 2
    assert "error: no plugin 'radiu' (did you mean 'radius'?)" in capsys.readouterr().err
