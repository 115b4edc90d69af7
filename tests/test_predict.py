"""``python -m core.predict``: forecasts of a tiny trained run equal the model's own on the same windows, with the
right times; a distribution head's calibrated quantiles beside them; ``--latest``; the normaliser is the run's;
mismatching files are refused; the output is atomic."""

from __future__ import annotations

import shutil
import tomllib

import attrs
import h5py
import numpy as np
import pytest
import torch

from core.data import write_hdf5
from core.experiments.predict import main
from core.io import load_checkpoint
from core.model import build_forecaster
from core.recipe import load_recipe
from core.run import main as run_main
from core.run import prepare_data
from tests.helpers import short_run

torch.set_num_threads(1)

RADIUS = {"name": "radius", "radius_m": 1500.0}
RUNS = {
    "centralized": {"collator": {"name": "centralized"}},
    "dynamic_padding": {"collator": {"name": "dynamic_padding"}, "data": {"min_history": 6, "gap_steps": 3}},
    "quantile": {
        "collator": {"name": "dynamic_padding"},
        "data": {"min_history": 6, "gap_steps": 3},
        "head": {"name": "quantile", "calibrate": True},
    },
    "gaussian": {"head": {"name": "gaussian", "calibrate": True, "levels": [0.1, 0.25, 0.5, 0.75, 0.9]}},
    # the deviation from the profile, which is an input too: predict rebuilds both from the checkpoint's profile
    "residual": {"model": {"residual": "profile"}, "data": {"profile_input": True}},
    "residual_quantile": {"model": {"residual": "profile"}, "head": {"name": "quantile", "calibrate": True}},
}


@pytest.fixture(scope="module", params=RUNS)
def run_dir(request, small_h5, tmp_path_factory):
    """A one-epoch run of the recipe above on the small synthetic file."""
    root = tmp_path_factory.mktemp(request.param)
    recipe = root / "recipe.toml"
    recipe.write_text(short_run("predict", root / "runs", small_h5, pooling=RADIUS, **RUNS[request.param]))
    assert run_main([str(recipe)]) == 0
    (path,) = (root / "runs").iterdir()
    return path


def read(path):
    with h5py.File(path, "r") as f:
        return {key: f[key][()] for key in f} | {"attrs": dict(f.attrs)}


def reference(run_dir, split="test"):
    """The trained model's de-normalised point forecasts of a split's windows, straight from the training data path,
    its head's quantiles (None for a point head) and the windows."""
    recipe, registry = load_recipe(run_dir / "recipe.toml")
    prepared = prepare_data(recipe)
    windows = prepared.splits[split].__getitems__(list(range(len(prepared.splits[split]))))
    model, collator = build_forecaster(recipe, registry, prepared.spec(), "test")
    model.load_state_dict(load_checkpoint(run_dir / "best_model.pt")["model"])
    with torch.no_grad():
        output = model.eval()(collator(windows).canonical())
    index = prepared.target_index
    mean, std = float(prepared.normaliser.mean[index]), float(prepared.normaliser.std[index])
    head = model.head
    offset = windows.target_profile if model.residual == "profile" else torch.tensor(mean)  # the data's units
    quantiles = (head.quantiles(output) * std + offset[..., None]).numpy() if head.distribution else None
    return (head.point(output) * std + offset).numpy(), quantiles, windows


def test_round_trip_matches_the_model_on_the_test_windows(run_dir, small_h5, small_data, capsys):
    assert main([str(run_dir), "--data", str(small_h5)]) == 0
    assert f"-> {run_dir / 'predictions.h5'}" in capsys.readouterr().out
    out = read(run_dir / "predictions.h5")
    history, horizon = 12, 12
    steps, n = small_data.num_steps, len(small_data.vd_ids)
    w = len(out["issued_at"])
    assert out["forecast"].shape == (w, horizon, n) and out["forecast"].dtype == np.float32
    assert out["target_time"].shape == (w, horizon)
    assert [v.decode() for v in out["vd_ids"]] == list(small_data.vd_ids)
    assert out["attrs"]["target"] == "speed" and out["attrs"]["step_seconds"] == 300

    starts = np.searchsorted(small_data.timestamps, out["issued_at"]) - history + 1
    np.testing.assert_array_equal(small_data.timestamps[starts + history - 1], out["issued_at"])
    assert starts[-1] == steps - history  # the last window ends at the file's last step
    inside = starts + history + horizon <= steps
    np.testing.assert_array_equal(
        out["target_time"][inside], small_data.timestamps[starts[inside, None] + history + np.arange(horizon)]
    )

    expected, _, windows = reference(run_dir)
    rows = np.searchsorted(starts, windows.start.numpy())
    np.testing.assert_array_equal(starts[rows], windows.start.numpy())
    active = np.broadcast_to(windows.active.numpy()[:, None, :], expected.shape)
    forecast = out["forecast"][rows]
    np.testing.assert_allclose(forecast[active], expected[active], atol=1e-5, rtol=1e-5)
    assert np.isnan(forecast[~active]).all()
    if windows.lengths is not None:
        assert not active.all()  # the variable-length run really has VDs sitting windows out


def test_a_distribution_head_writes_its_calibrated_quantiles(run_dir, small_h5, small_data):
    """``forecast_quantiles`` [W, H, N, L] at ``quantile_levels``: the model's calibrated quantiles (the offsets saved
    in best_model.pt), ascending, their 0.5 level the forecast; a point head writes none."""
    assert main([str(run_dir), "--data", str(small_h5)]) == 0
    out = read(run_dir / "predictions.h5")
    expected_forecast, expected, windows = reference(run_dir)
    head = tomllib.loads((run_dir / "recipe.toml").read_text())["head"]
    assert out["attrs"]["head"] == head["name"]
    if expected is None:
        assert "forecast_quantiles" not in out and "quantile_levels" not in out
        return
    levels = out["quantile_levels"]
    np.testing.assert_array_equal(levels, head["levels"])
    quantiles = out["forecast_quantiles"]
    assert quantiles.shape == (*out["forecast"].shape, len(levels)) and quantiles.dtype == np.float32
    observed = np.isfinite(out["forecast"])
    np.testing.assert_array_equal(np.isfinite(quantiles).all(-1), observed)  # NaN where the forecast is
    np.testing.assert_array_equal(quantiles[..., list(levels).index(0.5)], out["forecast"])
    assert (np.diff(quantiles[observed], axis=-1) >= 0).all()

    rows = np.searchsorted(out["issued_at"], small_data.timestamps[windows.start.numpy() + 11])
    active = np.broadcast_to(windows.active.numpy()[:, None, :], expected_forecast.shape)
    np.testing.assert_allclose(quantiles[rows][active], expected[active], atol=1e-4, rtol=1e-5)
    offsets = load_checkpoint(run_dir / "best_model.pt")["model"]["head.offsets"]
    assert offsets.abs().max() > 0  # calibrated: the quantiles matched are the shifted ones


def test_latest_is_one_window_ending_at_the_last_step(run_dir, small_h5, small_data, tmp_path):
    main([str(run_dir), "--data", str(small_h5), "--out", str(tmp_path / "all.h5")])
    assert main([str(run_dir), "--data", str(small_h5), "--latest", "--out", str(tmp_path / "latest.h5")]) == 0
    latest, every = read(tmp_path / "latest.h5"), read(tmp_path / "all.h5")
    last = small_data.timestamps[-1]
    np.testing.assert_array_equal(latest["issued_at"], [last])
    np.testing.assert_array_equal(latest["target_time"], [last + 300 * np.arange(1, 13)])
    np.testing.assert_allclose(latest["forecast"], every["forecast"][-1:], atol=1e-5, rtol=1e-5, equal_nan=True)


def test_latest_reads_only_the_last_steps_its_window_needs(run_dir, small_h5, small_data, tmp_path):
    """Readings and a time jump before the latest window's steps (its history, and with min_history the steps a
    gap ending in it may start at) change nothing in its forecast: they are never read (a forecast of every
    window refuses the jump)."""
    data = tomllib.loads((run_dir / "recipe.toml").read_text())["data"]
    needed = data["history"] + (data["gap_steps"] - 1 if data["min_history"] else 0)
    before = slice(0, small_data.num_steps - needed)
    features, timestamps = small_data.features.copy(), small_data.timestamps.copy()
    features[before] = 1e4
    timestamps[before] -= 3600  # a step an hour too long where the needed steps begin
    changed = write_hdf5(attrs.evolve(small_data, features=features, timestamps=timestamps), tmp_path / "changed.h5")
    for path in (small_h5, changed):
        out = tmp_path / f"{path.stem}.out.h5"
        assert main([str(run_dir), "--data", str(path), "--latest", "--out", str(out)]) == 0
    original, edited = read(tmp_path / "small.out.h5"), read(tmp_path / "changed.out.h5")
    np.testing.assert_array_equal(edited["forecast"], original["forecast"])
    np.testing.assert_array_equal(edited["issued_at"], original["issued_at"])
    assert main([str(run_dir), "--data", str(changed), "--out", str(tmp_path / "every.h5")]) != 0


def test_uses_the_runs_normaliser_and_the_models_vd_order(run_dir, small_data, tmp_path):
    """A tail of the file with its VDs reversed gives the full file's forecasts: nothing is re-fitted on it."""
    tail = 400
    reversed_tail = attrs.evolve(
        small_data,
        features=small_data.features[-tail:, ::-1].copy(),
        timestamps=small_data.timestamps[-tail:],
        vd_ids=small_data.vd_ids[::-1],
        latlon=small_data.latlon[::-1].copy(),
        vd_attributes={k: v[::-1] for k, v in small_data.vd_attributes.items()},
    )
    whole = write_hdf5(small_data, tmp_path / "whole.h5")
    part = write_hdf5(reversed_tail, tmp_path / "tail.h5")
    assert main([str(run_dir), "--data", str(whole), "--out", str(tmp_path / "whole_pred.h5")]) == 0
    assert main([str(run_dir), "--data", str(part), "--out", str(tmp_path / "tail_pred.h5")]) == 0
    every, some = read(tmp_path / "whole_pred.h5"), read(tmp_path / "tail_pred.h5")
    np.testing.assert_array_equal(some["vd_ids"], every["vd_ids"])
    rows = np.searchsorted(every["issued_at"], some["issued_at"])
    np.testing.assert_array_equal(every["issued_at"][rows], some["issued_at"])
    np.testing.assert_allclose(some["forecast"], every["forecast"][rows], atol=1e-5, rtol=1e-5, equal_nan=True)


def test_refuses_other_vds_or_missing_features_naming_them(run_dir, small_data, tmp_path, capsys):
    renamed = write_hdf5(attrs.evolve(small_data, vd_ids=("VD-NEW",) + small_data.vd_ids[1:]), tmp_path / "renamed.h5")
    refused = tmp_path / "refused.h5"
    assert main([str(run_dir), "--data", str(renamed), "--out", str(refused)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"error: {renamed}: the VDs differ from the model's: 1 missing ({small_data.vd_ids[0]}); 1 extra (VD-NEW)\n"
    )

    keep = [i for i, name in enumerate(small_data.feature_names) if name != "occupancy"]
    fewer = attrs.evolve(
        small_data,
        features=small_data.features[:, :, keep],
        feature_names=tuple(small_data.feature_names[i] for i in keep),
    )
    path = write_hdf5(fewer, tmp_path / "fewer.h5")
    assert main([str(run_dir), "--data", str(path), "--out", str(refused)]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {path}: missing feature(s) the model reads: occupancy; the file has speed, volume\n"
    )
    assert not refused.exists()


def test_a_run_on_chosen_vds_forecasts_them_from_the_whole_file(small_h5, small_data, tmp_path, capsys):
    """A ``[data] vds`` run reads its VDs out of a file that holds more (and refuses one that lacks them)."""
    chosen = small_data.vd_ids[4:1:-1]
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(short_run("predict", tmp_path / "runs", small_h5, pooling=RADIUS, data={"vds": list(chosen)}))
    assert run_main([str(recipe)]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert main([str(run_dir), "--data", str(small_h5)]) == 0
    out = read(run_dir / "predictions.h5")
    assert [v.decode() for v in out["vd_ids"]] == list(chosen) and out["forecast"].shape[2] == 3
    expected, _, windows = reference(run_dir)
    rows = np.searchsorted(out["issued_at"], small_data.timestamps[windows.start.numpy() + 11])
    np.testing.assert_allclose(out["forecast"][rows], expected, atol=1e-5, rtol=1e-5)

    lacking = write_hdf5(small_data.select(small_data.vd_ids[3:]), tmp_path / "lacking.h5")
    assert main([str(run_dir), "--data", str(lacking), "--out", str(tmp_path / "no.h5")]) == 2
    assert f"1 missing ({small_data.vd_ids[2]}); 0 extra" in capsys.readouterr().err


def test_output_is_written_atomically(run_dir, small_h5, tmp_path, monkeypatch, capsys):
    out = tmp_path / "preds.h5"
    assert main([str(run_dir), "--data", str(small_h5), "--out", str(out)]) == 0
    before = out.read_bytes()

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(h5py, "string_dtype", fail)  # fails after the forecast is in the temporary file
    assert main([str(run_dir), "--data", str(small_h5), "--out", str(out)]) == 1
    assert "disk full" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main([str(run_dir), "--data", str(small_h5), "--out", str(tmp_path / "new.h5")]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.h5"]  # no partial new.h5, no temporary file left


def test_forecasts_use_every_reading_even_when_the_run_hid_inputs_in_training(run_dir, small_h5, tmp_path):
    """``hide_inputs`` is a training experiment: the forecast of a run trained with it sees every observed reading."""
    copy = tmp_path / "hiding"
    shutil.copytree(run_dir, copy)
    recipe = (copy / "recipe.toml").read_text()
    (copy / "recipe.toml").write_text(recipe.replace("hide_inputs = 0.0", "hide_inputs = 0.5"))
    assert main([str(copy), "--data", str(small_h5), "--out", str(tmp_path / "hiding.h5")]) == 0
    assert main([str(run_dir), "--data", str(small_h5), "--out", str(tmp_path / "plain.h5")]) == 0
    np.testing.assert_array_equal(read(tmp_path / "hiding.h5")["forecast"], read(tmp_path / "plain.h5")["forecast"])
