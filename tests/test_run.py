"""The CLI end to end: a short run, its run directory and TensorBoard tags, resume, and one-line errors."""

from __future__ import annotations

import json
import tomllib

import attrs
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core.data import write_hdf5
from core.recipe import load_recipe
from core.run import main, prepare_data
from tests.helpers import short_run


def recipe_text(out, source, **tables) -> str:
    """The short run with an lstm of E 16, 1.5 km radius pooling, 5 batches and 2 VDs in the figures."""
    encoder = {"name": "lstm", "embedding_dim": 16} | tables.pop("encoder", {})
    trainer = {"max_batches_per_epoch": 5, "figure_vds": 2}
    return short_run("e2e", out, source, encoder=encoder, pooling={"radius_m": 1500.0}, trainer=trainer, **tables)


def test_run_writes_everything_and_resumes(small_h5, write_recipe, tmp_path, capsys):
    recipe = write_recipe(recipe_text(tmp_path / "runs", small_h5))
    assert main([str(recipe)]) == 0
    out = capsys.readouterr().out
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert f"run directory: {run_dir}" in out and "tensorboard --logdir" in out
    assert "last_value" in out and "historical_average" in out
    for name in ("recipe.toml", "best_model.pt", "last.pt", "training_history.json", "metrics.json"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"mae@3", "mae@6", "mae@12", "mae@avg", "rmse@12", "mape@avg"}
    assert metrics["baselines"]["last_value"]["mae@avg"] == pytest.approx(last_value_mae(run_dir), rel=1e-6)
    assert tomllib.loads((run_dir / "recipe.toml").read_text())["encoder"]["num_layers"] == 2

    assert main(["--resume", str(run_dir), "--set", "trainer.epochs=2"]) == 0
    history = json.loads((run_dir / "training_history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["step"] == 10  # the step count went on from the checkpoint

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {
        "train/loss",
        "val/loss",
        "train/lr",
        "train/grad_norm",
        "train/samples_per_s",
        "val/mae@3",
        "test/mae@12",
        "test_last_value/mae@avg",
    } <= scalars
    assert {"forecast/val", "forecast/test"} <= set(events.Tags()["images"])
    assert "recipe/text_summary" in events.Tags()["tensors"]
    assert [e.step for e in events.Scalars("val/loss")] == [5, 10]  # no duplicated or missing steps


def last_value_mae(run_dir) -> float:
    """The last-value baseline's test MAE, computed here: each VD's last reading in the window's history (its
    training mean if it has none), held for the horizon, against every observed target step."""
    recipe, _ = load_recipe(run_dir / "recipe.toml")
    prepared = prepare_data(recipe)
    raw = prepared.data.features[..., prepared.target_index].astype(np.float64)
    history, horizon = recipe.data.history, recipe.data.horizon
    train_mean = np.nanmean(raw[: prepared.boundaries[0]], 0)
    total, count = 0.0, 0
    for start in prepared.splits["test"].starts.tolist():
        for vd in range(raw.shape[1]):
            past = raw[start : start + history, vd]
            last = past[np.isfinite(past)][-1] if np.isfinite(past).any() else train_mean[vd]
            truth = raw[start + history : start + history + horizon, vd]
            total += np.abs(last - truth[np.isfinite(truth)]).sum()
            count += int(np.isfinite(truth).sum())
    return total / count


def test_errors_are_one_line_and_write_nothing(write_recipe, tmp_path, capsys):
    recipe = write_recipe(recipe_text(tmp_path / "runs", tmp_path / "missing.h5"))
    assert main([str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'missing.h5'}: data file not found\n"
    assert not (tmp_path / "runs").exists()
    assert main([str(recipe), "--set", "trainer.epocs=1"]) == 2
    assert "unknown key 'epocs' (did you mean 'epochs'?)" in capsys.readouterr().err


def test_resume_with_other_vds_names_them(small_data, small_h5, write_recipe, tmp_path, capsys):
    """A per-VD model cannot go on with a data file whose VDs differ: the error names the VDs that differ."""
    recipe = write_recipe(
        recipe_text(tmp_path / "runs", small_h5, encoder={"name": "xlstm_per_vd", "num_blocks": 1, "slstm_at": []})
    )
    assert main([str(recipe)]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    ids = ("added_vd",) + small_data.vd_ids[1:]  # VD 0 dropped, one new VD
    other = write_hdf5(attrs.evolve(small_data, vd_ids=ids), tmp_path / "other.h5")
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "--set", f"data.source={other}"]) == 2
    err = capsys.readouterr().err
    assert f"only in checkpoint ['{small_data.vd_ids[0]}'], only in data ['added_vd']" in err
