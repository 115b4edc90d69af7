"""The CLI end to end: a short run, its run directory and TensorBoard tags, resume, and one-line errors."""

from __future__ import annotations

import json
import tomllib

import attrs
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core.data import write_hdf5
from core.run import main

RECIPE = """
[run]
name = "e2e"
output_dir = "{out}"
[data]
source = "{data}"
[encoder]
name = "lstm"
embedding_dim = 16
[pooling]
name = "radius"
radius_m = 1500.0
[trainer]
epochs = 1
batch_size = 16
max_batches_per_epoch = 5
figure_vds = 2
"""


def test_run_writes_everything_and_resumes(small_h5, write_recipe, tmp_path, capsys):
    recipe = write_recipe(RECIPE.format(out=tmp_path / "runs", data=small_h5))
    assert main([str(recipe)]) == 0
    out = capsys.readouterr().out
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert f"run directory: {run_dir}" in out and "tensorboard --logdir" in out
    assert "last_value" in out and "historical_average" in out
    for name in ("recipe.toml", "best_model.pt", "last.pt", "training_history.json", "metrics.json"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"mae@3", "mae@6", "mae@12", "mae@avg", "rmse@12", "mape@avg"}
    assert metrics["baselines"]["last_value"]["mae@avg"] > 0
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


def test_errors_are_one_line_and_write_nothing(write_recipe, tmp_path, capsys):
    recipe = write_recipe(RECIPE.format(out=tmp_path / "runs", data=tmp_path / "missing.h5"))
    assert main([str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'missing.h5'}: data file not found\n"
    assert not (tmp_path / "runs").exists()
    assert main([str(recipe), "--set", "trainer.epocs=1"]) == 2
    assert "unknown key 'epocs' (did you mean 'epochs'?)" in capsys.readouterr().err


def test_resume_with_other_vds_names_them(small_data, small_h5, write_recipe, tmp_path, capsys):
    """A per-VD model cannot go on with a data file whose VDs differ: the error names the VDs that differ."""
    recipe = write_recipe(
        RECIPE.format(out=tmp_path / "runs", data=small_h5).replace(
            'name = "lstm"', 'name = "xlstm_per_vd"\nnum_blocks = 1\nslstm_at = []'
        )
    )
    assert main([str(recipe)]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    ids = ("added_vd",) + small_data.vd_ids[1:]  # VD 0 dropped, one new VD
    other = write_hdf5(attrs.evolve(small_data, vd_ids=ids), tmp_path / "other.h5")
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "--set", f"data.source={other}"]) == 2
    err = capsys.readouterr().err
    assert f"only in checkpoint ['{small_data.vd_ids[0]}'], only in data ['added_vd']" in err
