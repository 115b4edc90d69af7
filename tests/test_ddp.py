"""DDP under torchrun: two gloo processes on the CPU train, resume and test exactly like one process.

The recipe has 33 training windows in global batches of 8: four batches split 4 + 4 over the two ranks, then a
short batch of one window that both ranks take whole. The two-process run stops after epoch 1 and resumes
(again under torchrun) for epoch 2; weights, metrics and TensorBoard steps must equal the one-process run's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core.run import main
from tests.helpers import short_run

ROOT = Path(__file__).resolve().parents[1]


def recipe_text(out: Path, data: Path) -> str:
    """``short_run`` on every batch (33 training windows) of two epochs, without dropout, with a learned radius
    (the pooling's gradients are reduced too) and no schedule (a cosine one would follow the changed epoch count on
    resume)."""
    return short_run(
        "ddp",
        out,
        data,
        data={"train_stride": 24},
        model={"dropout": 0.0},
        pooling={"name": "learnable_radius"},
        trainer={"epochs": 2, "batch_size": 8, "max_batches_per_epoch": 0, "scheduler": "none", "eval_batch_size": 128},
    )


pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with gloo is not available",
)


NAN_ON_RANK_1 = """
import itertools, math, os, sys
import core.training.distributed
from core.run import main

metric, calls = core.training.distributed.masked_mean, itertools.count(1)

def masked_mean(*args):  # rank 1's own loss is NaN at step 3
    loss = metric(*args)
    return loss * math.nan if next(calls) == 3 and os.environ["RANK"] == "1" else loss

core.training.distributed.masked_mean = masked_mean
sys.exit(main(sys.argv[1:]))
"""


def torchrun(*args: str, program: tuple[str, ...] = ("-m", "core.run")) -> str:
    """``torchrun --standalone --nproc_per_node=2 -m core.run ARGS`` (a free port of its own); its stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *program, *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.slow
def test_two_processes_equal_one(small_h5, write_recipe, tmp_path, one_thread):
    assert main([str(write_recipe(recipe_text(tmp_path / "one", small_h5)))]) == 0
    (one,) = (tmp_path / "one").iterdir()

    recipe = write_recipe(recipe_text(tmp_path / "two", small_h5), name="two.toml")
    out = torchrun(str(recipe), "--set", "trainer.epochs=1")
    (two,) = (tmp_path / "two").iterdir()  # one run directory, made by rank 0
    assert out.count("run directory:") == 1  # only rank 0 prints
    torchrun("--resume", str(two), "--set", "trainer.epochs=2")
    assert list((tmp_path / "two").iterdir()) == [two]

    for name in ("best_model.pt", "last.pt"):
        got, want = (torch.load(d / name, weights_only=False)["model"] for d in (two, one))
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-5, msg=f"{name}: {key}")
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (two, one))
    assert got["best_epoch"] == want["best_epoch"] and got["epochs"] == want["epochs"] == 2
    assert got["test"] == pytest.approx(want["test"], rel=1e-5)
    history = [json.loads((d / "training_history.json").read_text()) for d in (two, one)]
    assert [h["step"] for h in history[0]] == [h["step"] for h in history[1]] == [5, 10]
    assert [h["val_mae"] for h in history[0]] == pytest.approx([h["val_mae"] for h in history[1]], rel=1e-5)

    got, want = scalars(two), scalars(one)
    assert got.keys() == want.keys()
    for tag in (
        "train/loss_step",
        "train/loss",
        "train/grad_norm",
        "train/samples_per_s",
        "val/mae@avg",
        "pooling/radius_m",
    ):
        assert [s for s, _ in got[tag]] == [s for s, _ in want[tag]], tag
        if tag != "train/samples_per_s":
            assert [v for _, v in got[tag]] == pytest.approx([v for _, v in want[tag]], rel=1e-5), tag
    assert got["test/mae@avg"][-1] == pytest.approx(
        want["test/mae@avg"][-1], rel=1e-5
    )  # (the 1-epoch run's test is at step 5)


@pytest.mark.slow
def test_a_nonfinite_loss_on_one_rank_is_skipped_by_both(small_h5, write_recipe, tmp_path):
    """Every rank sees the global loss, so both skip step 3 (neither waits forever for the other)."""
    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(NAN_ON_RANK_1)
    recipe = write_recipe(recipe_text(tmp_path / "runs", small_h5))
    out = torchrun(
        str(recipe), "--set", "trainer.epochs=1", "--set", "trainer.on_nonfinite=skip", program=(str(script),)
    )
    assert "skipped a step: non-finite loss (nan) at epoch 1, batch 3 (step 3)" in out
    (run_dir,) = (tmp_path / "runs").iterdir()
    steps = scalars(run_dir)
    assert [s for s, _ in steps["train/loss_step"]] == [1, 2, 4, 5] and steps["train/skipped_steps"] == [(5, 1.0)]


def test_batch_size_must_split_over_the_processes(small_h5, write_recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "3")
    recipe = write_recipe(recipe_text(tmp_path / "runs", small_h5))
    assert main([str(recipe)]) == 2
    assert capsys.readouterr().err == (
        f"error: {recipe}: [trainer] batch_size = 8 is the global batch, split evenly over the 3 processes "
        "(WORLD_SIZE): make it a multiple of 3\n"
    )
    assert not (tmp_path / "runs").exists()
