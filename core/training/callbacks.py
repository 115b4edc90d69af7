"""What an epoch's end does beyond the training loop's own bookkeeping: callbacks the trainer calls in order.

A callback takes the ``Epoch`` just ended and returns True to end the training there (the run is then tested as
usual), e.g. a study's pruner stopping a hopeless trial. They run before ``last.pt`` is written, so a crash
before it repeats the epoch and its callbacks, which log and write the same again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from core.api import Collator, DatasetSpec
from core.data.windows import Prepared
from core.io import save_json
from core.recipe import Recipe
from core.training.checkpoints import TrainState
from core.training.engine import Engine
from core.training.tensorboard import RunLogger


@attrs.frozen
class Epoch:
    """An epoch's end: its measures, and the training state (``state.history`` holds the epochs before)."""

    number: int
    step: int  # the TensorBoard step: batches trained so far
    train: dict[str, float]  # loss, grad_norm, samples_per_s
    val: dict[str, Any]  # loss, and the model's metrics under "model"
    lr: float  # the learning rate the epoch ended with
    seconds: float
    state: TrainState

    @property
    def val_mae(self) -> float:
        return self.val["model"]["mae@avg"]


Callback = Callable[[Epoch], bool]

# A study's pruner: (epoch, val MAE@avg) -> True to end the training there.
EpochEnd = Callable[[int, float], bool]


def asking(on_epoch_end: EpochEnd) -> Callback:
    """A callback that hands the epoch and its val MAE to ``on_epoch_end`` and stops when it says so."""
    return lambda epoch: on_epoch_end(epoch.number, epoch.val_mae)


class TensorBoard:
    """The epoch's scalars, the pooling's summary and map, and the forecast figure of the validation split."""

    def __init__(
        self,
        logger: RunLogger,
        engine: Engine,
        collator: Collator,
        prepared: Prepared,
        spec: DatasetSpec,
        recipe: Recipe,
    ):
        self.logger, self.engine, self.collator = logger, engine, collator
        self.prepared, self.spec = prepared, spec
        self.figure_vds, self.unit = recipe.trainer.figure_vds, recipe.data.target

    def __call__(self, epoch: Epoch) -> bool:
        train, step = epoch.train, epoch.step
        self.logger.scalars(
            {
                "train/loss": train["loss"],
                "val/loss": epoch.val["loss"],
                "train/lr": epoch.lr,
                "train/grad_norm": train["grad_norm"],
                "train/samples_per_s": train["samples_per_s"],
                "train/epoch": epoch.number,
                "train/skipped_steps": epoch.state.skipped_steps,
                **{f"val/{k}": v for k, v in epoch.val["model"].items()},
            },
            step,
        )
        pooling = self.engine.model.pooling  # first: its map is the mean over the validation pass just made
        self.logger.pooling(pooling.summary(), pooling.edges(), self.spec.positions_xy, self.figure_vds, step)
        self.forecast("val", step)
        return False

    def forecast(self, split: str, step: int) -> None:
        """The forecast of the split's first window beside its truth, with a distribution head's quantiles
        (``RunLogger.forecast``)."""
        if not self.figure_vds:
            return
        dataset = self.prepared.splits[split]
        ((_, forecast),) = self.engine.forecasts([self.collator(dataset[0])])
        quantiles = None if forecast.quantiles is None else forecast.quantiles[0].cpu().numpy()
        self.logger.forecast(
            f"forecast/{split}",
            self.prepared.series,
            int(dataset.starts[0]),
            forecast.point[0].cpu().numpy(),
            self.spec.vd_ids,
            self.figure_vds,
            step,
            self.unit,
            quantiles,
            self.engine.head.levels,
        )


class History:
    """The epoch's row of ``training_history.json`` (kept in ``last.pt`` too), the file rewritten by rank 0."""

    def __init__(self, run_dir: Path, is_main: bool):
        self.path, self.is_main = run_dir / "training_history.json", is_main

    def __call__(self, epoch: Epoch) -> bool:
        train = epoch.train
        epoch.state.history.append(
            {"epoch": epoch.number, "step": epoch.step, "train_loss": train["loss"], "val_loss": epoch.val["loss"]}
            | {"val_mae": epoch.val_mae, "lr": epoch.lr, "grad_norm": train["grad_norm"]}
            | {"samples_per_s": train["samples_per_s"], "seconds": epoch.seconds}
        )
        if self.is_main:
            save_json(epoch.state.history, self.path)
        return False
