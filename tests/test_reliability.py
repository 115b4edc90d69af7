"""Crash and resume, signals, corrupt checkpoints, divergence, atomic writes and concurrent run directories.

The crash tests run ``python -m core.run`` in subprocesses (one thread each, so that float results are
bit-identical) on four days of the synthetic network with a tiny LSTM and dropout, so that the RNG matters.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core.errors import run_cli
from core.io import atomic_write, save_checkpoint, save_json
from core.recipe import load_recipe
from core.run import create_run_dir, main
from core.training.engine import Engine
from core.training.trainer import Trainer
from tests.helpers import short_run

ROOT = Path(__file__).resolve().parents[1]
EPOCHS, BATCHES = 3, 8


pytestmark = pytest.mark.usefixtures("one_thread")  # in-process runs on one thread too: faster on a busy 2-core machine


@pytest.fixture(scope="module")
def make_recipe(small_h5):
    """``make_recipe(folder, every)``: write the short run with dropout, EPOCHS epochs of BATCHES batches of 8 and a
    checkpoint every ``every`` batches (runs in folder/runs)."""

    def make(folder: Path, every: int = 2) -> Path:
        trainer = {"epochs": EPOCHS, "batch_size": 8, "max_batches_per_epoch": BATCHES, "checkpoint_every": every}
        path = folder / "recipe.toml"
        path.write_text(short_run("crash", folder / "runs", small_h5, model={"dropout": 0.3}, trainer=trainer))
        return path

    return make


def last_line(err: str) -> str:
    """The last line of stderr (the progress bars come before it)."""
    return err.splitlines()[-1] + "\n"


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "core.run", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=300)
    return process.returncode, err


def only_run(root: Path) -> Path:
    (run_dir,) = root.iterdir()
    return run_dir


def last_state(run_dir: Path) -> dict | None:
    try:
        return torch.load(run_dir / "last.pt", weights_only=False)["state"]
    except (FileNotFoundError, RuntimeError, EOFError):
        return None


def wait_for(run_dir_root: Path, ready, process: subprocess.Popen) -> Path:
    """Poll until ``ready(last.pt state)``; the process must still be running."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended before it could be stopped: {process.communicate()[1][-2000:]}"
        dirs = list(run_dir_root.iterdir()) if run_dir_root.exists() else []
        if dirs and (state := last_state(dirs[0])) is not None and ready(state):
            return dirs[0]
        time.sleep(0.01)
    raise AssertionError("no checkpoint appeared")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, make_recipe) -> Path:
    """The uninterrupted run."""
    root = tmp_path_factory.mktemp("reference")
    code, err = finish(start(str(make_recipe(root))))
    assert code == 0, err
    return only_run(root / "runs")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, make_recipe) -> Path:
    """The same run, trained in this process (for the tests that only need a finished run: no subprocess)."""
    root = tmp_path_factory.mktemp("finished")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main([str(make_recipe(root))]) == 0
    finally:
        torch.set_num_threads(threads)
    return only_run(root / "runs")


def assert_same_run(run_dir: Path, reference: Path) -> None:
    """Weights, metrics and history equal to the reference run's (wall-clock figures aside)."""
    for name in ("best_model.pt", "last.pt"):
        got, want = (torch.load(d / name, weights_only=False)["model"] for d in (run_dir, reference))
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want), name
    clock = {"train_seconds", "seconds", "samples_per_s"}
    strip = lambda table: {k: v for k, v in table.items() if k not in clock}  # noqa: E731
    metrics = [strip(json.loads((d / "metrics.json").read_text())) for d in (run_dir, reference)]
    assert metrics[0] == metrics[1]
    history = [[strip(h) for h in json.loads((d / "training_history.json").read_text())] for d in (run_dir, reference)]
    assert history[0] == history[1] and len(history[0]) == EPOCHS


def assert_tensorboard_steps(run_dir: Path) -> None:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    assert [e.step for e in events.Scalars("train/loss_step")] == list(range(1, EPOCHS * BATCHES + 1))
    assert [e.step for e in events.Scalars("val/mae@avg")] == [BATCHES * e for e in range(1, EPOCHS + 1)]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(reference, make_recipe, tmp_path):
    process = start(str(make_recipe(tmp_path)))
    run_dir = wait_for(tmp_path / "runs", lambda s: s["epoch"] == 1 and s["batch"] >= 2, process)
    process.send_signal(signal.SIGKILL)
    assert finish(process)[0] == -signal.SIGKILL
    state = last_state(run_dir)
    assert state["epoch"] == 1 and 0 < state["batch"] < BATCHES  # killed in the middle of epoch 2

    process = start("--resume", str(run_dir))
    code, err = finish(process)
    assert code == 0, err
    assert_same_run(run_dir, reference)
    assert_tensorboard_steps(run_dir)


@pytest.mark.slow
def test_sigterm_saves_a_resumable_checkpoint_and_exits_143(reference, make_recipe, tmp_path):
    process = start(str(make_recipe(tmp_path, every=0)))  # checkpoints only at epoch ends, and on the signal
    run_dir = wait_for(tmp_path / "runs", lambda s: s["epoch"] == 1, process)
    process.send_signal(signal.SIGTERM)
    code, err = finish(process)
    assert code == 128 + signal.SIGTERM
    # almost always mid-epoch 2 (the in-process SIGINT test pins that case down); after epoch 2 is right too
    assert re.fullmatch(
        rf"interrupted by SIGTERM (at epoch 2, batch [1-7] of {BATCHES}|after epoch 2); saved "
        rf"{re.escape(str(run_dir / 'last.pt'))}; "
        rf"resume with: python -m core.run --resume {re.escape(str(run_dir))}\n",
        last_line(err),
    ), err

    code, err = finish(start("--resume", str(run_dir)))
    assert code == 0, err
    assert_same_run(run_dir, reference)
    assert_tensorboard_steps(run_dir)


def test_sigint_in_process_stops_at_the_batch_boundary_and_resumes(make_recipe, tmp_path, monkeypatch, capsys):
    """Ctrl-C during batch 3 of epoch 1: last.pt holds 3 batches, exit 130; the resumed run logs every step once."""
    original = Trainer.step_loss

    def step_loss(self, batch):
        if self.state.global_step == 3 and not self.stop_signal:
            signal.raise_signal(signal.SIGINT)  # this thread: handled before the batch ends
        return original(self, batch)

    monkeypatch.setattr(Trainer, "step_loss", step_loss)
    recipe = make_recipe(tmp_path, every=0)
    before = signal.getsignal(signal.SIGINT)  # Python's, or SIG_IGN under a shell's background job
    assert main([str(recipe)]) == 128 + signal.SIGINT
    run_dir = only_run(tmp_path / "runs")
    assert last_line(capsys.readouterr().err).startswith(
        f"interrupted by SIGINT at epoch 1, batch 3 of {BATCHES}; saved {run_dir / 'last.pt'}"
    )
    assert last_state(run_dir)["batch"] == 3 and signal.getsignal(signal.SIGINT) is before  # restored
    monkeypatch.setattr(Trainer, "step_loss", original)
    assert main(["--resume", str(run_dir)]) == 0
    assert_tensorboard_steps(run_dir)


@pytest.mark.slow
def test_corrupt_last_falls_back_to_previous_checkpoint(reference, tmp_path):
    """last.prev.pt of the reference is its mid-epoch checkpoint at epoch 3, batch 6: resuming from it ends the same."""
    run_dir = Path(shutil.copytree(reference, tmp_path / "run"))
    (run_dir / "last.pt").write_bytes((run_dir / "last.pt").read_bytes()[:1000])  # truncated
    code, err = finish(start("--resume", str(run_dir)))
    assert code == 0, err
    assert f"warning: {run_dir / 'last.pt'}: unreadable checkpoint (" in err
    assert f"; falling back to {run_dir / 'last.prev.pt'} (epoch 2, batch 6 done)" in err
    assert_same_run(run_dir, reference)


def test_unusable_checkpoints_are_named(finished, tmp_path, capsys):
    run_dir = Path(shutil.copytree(finished, tmp_path / "run"))
    (run_dir / "best_model.pt").write_bytes(b"garbage")
    assert main(["--resume", str(run_dir)]) == 2  # nothing left to train: straight to the test, which loads best
    assert capsys.readouterr().err.startswith(f"error: {run_dir / 'best_model.pt'}: unreadable checkpoint (")
    (run_dir / "last.pt").write_bytes(b"")
    (run_dir / "last.prev.pt").unlink()
    assert main(["--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: --resume {run_dir}: no usable checkpoint: {run_dir / 'last.pt'}: unreadable checkpoint"
    )
    assert err.rstrip().endswith(f"{run_dir / 'last.prev.pt'}: checkpoint not found") and err.count("\n") == 1


def test_resuming_an_early_stopped_run_trains_no_further(make_recipe, tmp_path, capsys):
    """lr 1e-30 leaves the weights as they are: val MAE stops improving after epoch 1, patience 1 stops after 2."""
    recipe = make_recipe(tmp_path)
    assert (
        main([str(recipe), "--set", "trainer.lr=1e-30", "--set", "trainer.patience=1", "--set", "trainer.epochs=4"])
        == 0
    )
    run_dir = only_run(tmp_path / "runs")
    assert len(json.loads((run_dir / "training_history.json").read_text())) == 2
    assert main(["--resume", str(run_dir), "--set", "trainer.epochs=6"]) == 0
    assert "early stop: val MAE has not improved for 1 epochs" in capsys.readouterr().out
    assert len(json.loads((run_dir / "training_history.json").read_text())) == 2


# ------------------------------------------------------------------------------------------- divergence
class NanGradient(torch.autograd.Function):
    """0 in the forward pass, a NaN gradient in the backward pass: a finite loss whose gradient is not."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.new_zeros(())

    @staticmethod
    def backward(ctx, grad):
        return torch.full(ctx.shape, math.nan)


@pytest.fixture
def inject(monkeypatch):
    """``inject(kind, steps)``: at these global steps the loss (kind "loss") or its gradient ("grad") is NaN."""

    def setup(kind: str, steps: set[int]) -> None:
        original = Trainer.step_loss

        def step_loss(self, batch):
            loss = original(self, batch)
            if self.state.global_step not in steps:
                return loss
            return loss * math.nan if kind == "loss" else loss + NanGradient.apply(next(self.model.parameters()))

        monkeypatch.setattr(Trainer, "step_loss", step_loss)

    return setup


def test_nonfinite_loss_stops_and_leaves_the_checkpoints_intact(inject, make_recipe, tmp_path, capsys):
    recipe = make_recipe(tmp_path, every=0)
    assert main([str(recipe), "--set", "trainer.epochs=1"]) == 0
    run_dir = only_run(tmp_path / "runs")
    before = {name: (run_dir / name).read_bytes() for name in ("best_model.pt", "last.pt")}
    inject("loss", {BATCHES + 3})
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "--set", "trainer.epochs=2"]) == 2
    assert last_line(capsys.readouterr().err) == (
        "error: non-finite loss (nan) at epoch 2, batch 3 (step 11); stopped before the update. best_model.pt (epoch "
        "1) "
        'and last.pt (end of epoch 1) are intact (trainer.on_nonfinite = "skip" skips such steps)\n'
    )
    assert {name: (run_dir / name).read_bytes() for name in before} == before


def test_nonfinite_gradient_stops(inject, make_recipe, tmp_path, capsys):
    recipe = make_recipe(tmp_path)
    inject("grad", {2})
    assert main([str(recipe), "--set", "trainer.epochs=1"]) == 2
    assert last_line(capsys.readouterr().err).startswith(
        "error: non-finite gradient norm (nan) at epoch 1, batch 2 (step 2); stopped"
    )
    assert not any((tmp_path / "runs").iterdir())  # failed before its first checkpoint: no run directory left


def test_skip_drops_nonfinite_steps_and_stops_after_too_many_in_a_row(inject, make_recipe, tmp_path, capsys):
    recipe = make_recipe(tmp_path)
    skip = ["--set", "trainer.epochs=1", "--set", "trainer.on_nonfinite=skip", "--set", "trainer.max_skipped_steps=3"]
    inject("grad", {2, 3})
    inject("loss", {5})
    assert main([str(recipe), *skip]) == 0
    out = capsys.readouterr().out
    for batch, what in ((2, "gradient norm (nan)"), (3, "gradient norm (nan)"), (5, "loss (nan)")):
        assert f"skipped a step: non-finite {what} at epoch 1, batch {batch} (step {batch})" in out
    run_dir = only_run(tmp_path / "runs")
    weights = torch.load(run_dir / "best_model.pt", weights_only=False)["model"]
    assert all(torch.isfinite(w).all() for w in weights.values())
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    assert [e.value for e in events.Scalars("train/skipped_steps")] == [3]
    assert [e.step for e in events.Scalars("train/loss_step")] == [1, 2, 3, 4, 6, 7, 8]  # step 5's loss was NaN

    inject("loss", set(range(1, 100)))
    assert main([str(recipe), *skip]) == 2
    assert (
        "non-finite loss (nan) at epoch 1, batch 3 (step 3): 3 steps in a row skipped (trainer.max_skipped_steps); "
        "stopped" in last_line(capsys.readouterr().err)
    )


# ------------------------------------------------------------------------------ atomic writes, run dirs
@pytest.mark.parametrize(
    "write",
    [
        lambda path: save_json({"new": 1}, path),
        lambda path: save_checkpoint({"new": torch.ones(3)}, path),
        lambda path: __import__("core.data", fromlist=["write_hdf5"]).write_hdf5(
            __import__("core.data.synthetic", fromlist=["generate"]).generate(0, 1), path
        ),
    ],
    ids=["json", "checkpoint", "hdf5"],
)
def test_a_crash_while_writing_leaves_the_previous_file(write, tmp_path, monkeypatch):
    """The temporary file is complete but the process dies before the rename (simulated at the fsync)."""
    path = tmp_path / "file"
    path.write_bytes(b"previous good content")

    def crash(fd):
        raise OSError(5, "simulated crash")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(Exception, match="simulated crash|Input/output error"):
        write(path)
    assert path.read_bytes() == b"previous good content"
    assert [p.name for p in tmp_path.iterdir()] == ["file"]  # no temporary file left


def test_atomic_write_keeps_the_replaced_file_as_previous(tmp_path):
    path, previous = tmp_path / "last.pt", tmp_path / "last.prev.pt"
    atomic_write(path, lambda tmp: tmp.write_text("1"), previous)
    assert path.read_text() == "1" and not previous.exists()
    atomic_write(path, lambda tmp: tmp.write_text("2"), previous)
    assert (path.read_text(), previous.read_text()) == ("2", "1")


def test_concurrent_runs_never_share_a_run_directory(make_recipe, tmp_path, monkeypatch):
    recipe, _ = load_recipe(make_recipe(tmp_path))
    monkeypatch.setattr(time, "strftime", lambda fmt: "20260101-000000")  # all in the same second
    barrier = threading.Barrier(8)
    made: list[Path] = []

    def one():
        barrier.wait()
        made.append(create_run_dir(recipe))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 8 and sorted(p.name for p in made) == sorted(
        ["crash-20260101-000000"] + [f"crash-20260101-000000-{k}" for k in range(2, 9)]
    )
    assert all((p / "recipe.toml").is_file() for p in made)


def test_resume_refuses_a_recipe_that_changes_what_the_checkpoint_means(finished, tmp_path, capsys):
    run_dir = Path(shutil.copytree(finished, tmp_path / "run"))
    before = (run_dir / "last.pt").read_bytes()
    assert main(["--resume", str(run_dir), "--set", "trainer.batch_size=4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: --resume {run_dir}: the recipe changes trainer.batch_size 8 -> 4: that changes what the saved model"
    )
    assert main(["--resume", str(run_dir), "--set", "encoder.embedding_dim=16", "--set", "data.train_stride=2"]) == 2
    assert "the recipe changes data.train_stride 1 -> 2; encoder.embedding_dim 8 -> 16:" in capsys.readouterr().err
    assert (run_dir / "last.pt").read_bytes() == before and "batch_size = 8" in (run_dir / "recipe.toml").read_text()
    assert main(["--resume", str(run_dir), "--set", "trainer.epochs=4", "--set", "trainer.patience=2"]) == 0
    out = capsys.readouterr().out
    assert "resuming with trainer.epochs 3 -> 4\nresuming with trainer.patience 5 -> 2\n" in out
    assert len(json.loads((run_dir / "training_history.json").read_text())) == 4


def test_a_signal_during_the_final_test_says_what_is_saved_and_how_to_resume(
    make_recipe, tmp_path, monkeypatch, capsys
):
    original = Engine.evaluate

    def evaluate(self, batches, baselines=None):
        if baselines is not None:  # the final test: beside the baselines
            signal.raise_signal(signal.SIGTERM)  # in this thread, at once
        return original(self, batches, baselines)

    monkeypatch.setattr(Engine, "evaluate", evaluate)
    before = signal.getsignal(signal.SIGTERM)
    assert main([str(make_recipe(tmp_path)), "--set", "trainer.epochs=1"]) == 128 + signal.SIGTERM
    run_dir = only_run(tmp_path / "runs")
    assert last_line(capsys.readouterr().err) == (
        f"interrupted by SIGTERM during the final test; the training is finished and saved in {run_dir / 'last.pt'}; "
        f"resume with: python -m core.run --resume {run_dir} (it repeats the test)\n"
    )
    assert not (run_dir / "metrics.json").exists() and signal.getsignal(signal.SIGTERM) is before
    monkeypatch.setattr(Engine, "evaluate", original)
    assert main(["--resume", str(run_dir)]) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 1


def test_sigterm_outside_training_stops_a_command_as_sigint_does(capsys):
    """Loading the data, building the model: SIGTERM stops at once with one line and 143, like Ctrl-C's 130."""

    def body() -> int:
        signal.raise_signal(signal.SIGTERM)  # in this thread, at once
        raise AssertionError("SIGTERM did not stop the command")

    before = signal.getsignal(signal.SIGTERM)
    assert run_cli(body) == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "interrupted by SIGTERM\n"
    assert signal.getsignal(signal.SIGTERM) is before
