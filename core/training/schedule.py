"""The learning-rate schedule (``trainer.scheduler``): when it steps (``LearningRate``) and how a resumed run
continues it.

``cosine`` and ``plateau`` step once per epoch, ``onecycle`` with every update. The length of ``cosine`` and
``onecycle`` comes from ``trainer.epochs``: a resume that changes it (``--resume RUN --set trainer.epochs=N``)
continues on the schedule for the new length, fast-forwarded to the step the run has reached, exactly as a run
started with N epochs would be there. ``plateau`` has no length: it goes on from its saved state.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from core.errors import TrainingError
from core.recipe import TrainerConfig

Scheduler = LRScheduler | ReduceLROnPlateau | None

LENGTH = {"cosine": "T_max", "onecycle": "total_steps"}  # the state entry that holds a schedule's length


class LearningRate:
    """The recipe's schedule over the optimizer, continued from a ``saved`` state (``restore``), and the one place
    that says when it steps: ``onecycle`` after every update, ``cosine`` after every epoch, ``plateau`` after every
    epoch on the validation MAE."""

    def __init__(
        self,
        cfg: TrainerConfig,
        optimizer: torch.optim.Optimizer,
        updates_per_epoch: int,
        saved: dict[str, Any] | None = None,
    ):
        self.name = cfg.scheduler
        self.scheduler = restore(cfg, optimizer, updates_per_epoch, saved)

    def updated(self) -> None:
        """After an optimizer step."""
        if self.name == "onecycle":
            self.scheduler.step()

    def epoch_ended(self, val_mae: float) -> None:
        if self.name == "cosine":
            self.scheduler.step()
        elif self.name == "plateau":
            self.scheduler.step(val_mae)

    def state_dict(self) -> dict[str, Any] | None:
        return None if self.scheduler is None else self.scheduler.state_dict()


def build(cfg: TrainerConfig, optimizer: torch.optim.Optimizer, updates_per_epoch: int) -> Scheduler:
    """The recipe's schedule over ``cfg.epochs`` epochs of ``updates_per_epoch`` updates."""
    return {
        "none": lambda: None,
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs),
        "plateau": lambda: torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2),
        # from lr / 25 up to lr, then down to lr / 2.5e5 after the last update (+ 1: that final position)
        "onecycle": lambda: torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * updates_per_epoch + 1
        ),
    }[cfg.scheduler]()


def restore(
    cfg: TrainerConfig, optimizer: torch.optim.Optimizer, updates_per_epoch: int, saved: dict[str, Any] | None
) -> Scheduler:
    """The schedule a resumed run continues on, ``optimizer`` already restored: the saved one, or, when
    ``trainer.epochs`` changed its length, the schedule of the new length stepped as often as the saved one
    was. Refused when the run is already past the end of the new schedule."""
    schedule = build(cfg, optimizer, updates_per_epoch)
    if schedule is None or saved is None:
        return schedule
    length = LENGTH.get(cfg.scheduler)
    if length is None or saved[length] == getattr(schedule, length):
        schedule.load_state_dict(saved)
        return schedule
    done = saved["last_epoch"]  # steps taken: epochs (cosine) or updates (onecycle)
    if cfg.scheduler == "onecycle" and done > schedule.total_steps:
        raise TrainingError(
            f"trainer.epochs = {cfg.epochs}: the run has made {done} updates, more than a one-cycle schedule of "
            f"{cfg.epochs} epochs holds ({schedule.total_steps - 1}); resume with trainer.epochs >= "
            f"{math.ceil(done / updates_per_epoch)}"
        )
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"]  # cosine starts from the optimizer's lr (onecycle sets its own)
    schedule = build(cfg, optimizer, updates_per_epoch)
    with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": a fast-forward, on purpose
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(done):
            schedule.step()
    return schedule
