"""A resumed run's learning rate is its schedule's own: after ``--set trainer.epochs=N`` the schedule for N epochs,
fast-forwarded to the update the run has reached; after any other safe change (``SAFE_ON_RESUME``) the schedule
of the uninterrupted run. Read from the ``train/lr_step`` the run logs, whose step axis counts batches."""

from __future__ import annotations

import math
import shutil
import signal
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core.run import main
from core.training.checkpoints import SAFE_ON_RESUME
from core.training.trainer import Trainer
from tests.helpers import short_run

BATCHES, LR = 4, 0.01

pytestmark = pytest.mark.usefixtures("one_thread")


def write(folder: Path, source: Path, **trainer) -> Path:
    """The short run, ``BATCHES`` batches an epoch at lr ``LR``; ``trainer`` over its [trainer] table."""
    path = folder / "recipe.toml"
    defaults = {"epochs": 1, "max_batches_per_epoch": BATCHES, "lr": LR}
    path.write_text(short_run("resume", folder / "runs", source, trainer=defaults | trainer))
    return path


def logged(run_dir: Path) -> tuple[list[int], list[float]]:
    """The steps and values of ``train/lr_step`` (the lr after each update), by step: a resume in the same second
    can write an event file that sorts before the first one."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload().Scalars("train/lr_step")
    events = sorted(events, key=lambda e: e.step)
    return [e.step for e in events], [e.value for e in events]


def schedule(name: str, epochs: int, updates_per_epoch: int) -> list[float]:
    """The lr after every update of a run of ``epochs`` epochs, from torch's own scheduler (stepped per epoch, or
    per update for one-cycle) on a stand-in optimizer."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    lrs = []
    if name == "onecycle":
        one_cycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, LR, total_steps=epochs * updates_per_epoch + 1)
        for _ in range(epochs * updates_per_epoch):
            optimizer.step()
            one_cycle.step()
            lrs.append(optimizer.param_groups[0]["lr"])
        return lrs
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs) if name == "cosine" else None
    for _ in range(epochs):
        lrs += [optimizer.param_groups[0]["lr"]] * updates_per_epoch  # plateau: no epoch here is 3 without gain
        optimizer.step()
        if cosine:
            cosine.step()
    return lrs


def only_run(root: Path) -> Path:
    (run_dir,) = root.iterdir()
    return run_dir


@pytest.mark.parametrize(
    "scheduler, accumulate",
    [("onecycle", 1), ("onecycle", 2), ("cosine", 1), ("cosine", 2), ("plateau", 1), ("none", 1)],
)
def test_more_epochs_continue_on_the_schedule_of_the_new_length(scheduler, accumulate, small_h5, tmp_path):
    """1 epoch, then ``--resume --set trainer.epochs=3``: epoch 1 on the 1-epoch schedule, epochs 2-3 on the
    3-epoch one (one-cycle climbs again to its peak, cosine keeps falling)."""
    recipe = write(tmp_path, small_h5, scheduler=scheduler, accumulate=accumulate)
    assert main([str(recipe)]) == 0
    run_dir = only_run(tmp_path / "runs")
    assert main(["--resume", str(run_dir), "--set", "trainer.epochs=3"]) == 0
    steps, lrs = logged(run_dir)
    updates = math.ceil(BATCHES / accumulate)
    assert steps == list(range(accumulate, 3 * BATCHES + 1, accumulate))  # batches: an update every `accumulate`
    expected = schedule(scheduler, 1, updates) + schedule(scheduler, 3, updates)[updates:]
    assert lrs == pytest.approx(expected, rel=1e-6)
    if scheduler == "cosine":
        assert lrs[-1] < lrs[updates] < lrs[0]


def test_fewer_updates_than_a_one_cycle_run_has_made_are_refused(small_h5, tmp_path, capsys):
    recipe = write(tmp_path, small_h5, scheduler="onecycle", epochs=2)
    assert main([str(recipe)]) == 0
    run_dir = only_run(tmp_path / "runs")
    before = (run_dir / "last.pt").read_bytes()
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "--set", "trainer.epochs=1"]) == 2
    assert capsys.readouterr().err == (
        f"error: --resume {run_dir}: trainer.epochs = 1: the run has made 8 updates, more than a one-cycle "
        "schedule of 1 epochs holds (4); resume with trainer.epochs >= 2\n"
    )
    assert (run_dir / "last.pt").read_bytes() == before


def test_more_patience_trains_an_early_stopped_run_on_to_the_end_of_its_schedule(small_h5, tmp_path, capsys):
    """lr 1e-20 leaves the weights as they are: patience 1 stops after epoch 2 of 4; patience 5 trains 3 and 4."""
    recipe = write(tmp_path, small_h5, scheduler="cosine", epochs=4, patience=1, lr=1e-20)
    assert main([str(recipe)]) == 0
    run_dir = only_run(tmp_path / "runs")
    assert len(logged(run_dir)[1]) == 2 * BATCHES
    assert main(["--resume", str(run_dir), "--set", "trainer.patience=5"]) == 0
    assert logged(run_dir)[1] == pytest.approx([lr * 1e-18 for lr in schedule("cosine", 4, BATCHES)], rel=1e-6)


OTHER_CHANGES = {
    "run.name": "renamed",
    "run.output_dir": "elsewhere",
    "trainer.patience": 1,
    "trainer.figure_vds": 1,
    "trainer.checkpoint_every": 1,
    "trainer.num_workers": 1,
    "trainer.eval_batch_size": 7,
    "trainer.on_nonfinite": "skip",
    "trainer.max_skipped_steps": 3,
    "trainer.device": "cpu",
    "trainer.compile": True,
}


def test_every_safe_change_is_checked_here():
    assert set(OTHER_CHANGES) | {"trainer.epochs"} == SAFE_ON_RESUME


@pytest.fixture(scope="module")
def interrupted(small_h5, tmp_path_factory) -> Path:
    """A one-cycle run of 2 epochs stopped by SIGTERM after update 3, mid-epoch."""
    folder = tmp_path_factory.mktemp("interrupted")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "stopping", lambda self: signal.SIGTERM if self.state.global_step == 3 else 0)
        assert main([str(write(folder, small_h5, scheduler="onecycle", epochs=2))]) == 128 + signal.SIGTERM
    torch.set_num_threads(threads)
    return only_run(folder / "runs")


@pytest.mark.parametrize(
    "key, value",
    [
        pytest.param(key, value, marks=[pytest.mark.slow] if key == "trainer.compile" else [])
        for key, value in OTHER_CHANGES.items()
    ],
)
def test_a_safe_change_keeps_the_uninterrupted_schedule(key, value, interrupted, tmp_path, capsys):
    run_dir = Path(shutil.copytree(interrupted, tmp_path / "run"))
    assert logged(run_dir)[0] == [1, 2, 3]
    text = str(tmp_path / value) if key == "run.output_dir" else repr(value).lower().replace("'", '"')
    assert main(["--resume", str(run_dir), "--set", f"{key}={text}"]) == 0
    assert f"resuming with {key} " in capsys.readouterr().out
    steps, lrs = logged(run_dir)
    assert steps == list(range(1, 2 * BATCHES + 1))
    assert lrs == pytest.approx(schedule("onecycle", 2, BATCHES), rel=1e-6)
