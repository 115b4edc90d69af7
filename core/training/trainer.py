"""The training loop, readable top to bottom: fit, an epoch, one update, the checkpoints.

The loss is the engine's (``Engine.loss``: the head's, on the z-scored target), missing values masked. After every
epoch the engine evaluates the validation split, the callbacks run in their order (``callbacks``: TensorBoard,
history, a study's pruner), the schedule steps, ``best_model.pt`` is saved if val MAE improved, and ``last.pt``.
Beside this module: the batches (``loaders``), the schedule (``schedule``), what is saved and how a run resumes
(``checkpoints``), signals (``signals``), the progress bar (``progress``). A resumed run repeats exactly what the
uninterrupted run would have done: the batch order depends on (seed, epoch) only, mid-epoch checkpoints record how
many batches are done, and the RNG is restored.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from tqdm import tqdm

from core.api import Batch, DatasetSpec, DistributedBatch
from core.data.windows import Prepared
from core.errors import TrainingError
from core.recipe import Recipe
from core.training import checkpoints, progress, schedule, signals
from core.training.callbacks import Callback, Epoch
from core.training.checkpoints import TrainState
from core.training.distributed import Distributed
from core.training.engine import Engine
from core.training.loaders import Loaders
from core.training.tensorboard import RunLogger


class Trainer:
    def __init__(
        self,
        recipe: Recipe,
        engine: Engine,
        loaders: Loaders,
        prepared: Prepared,
        spec: DatasetSpec,
        run_dir: Path,
        logger: RunLogger,
        dist: Distributed = Distributed(),
        callbacks: Sequence[Callback] = (),
    ):
        """``logger``: where this process logs its steps (``distributed.Silent`` on ranks other than 0)."""
        self.recipe, self.cfg, self.dist = recipe, recipe.trainer, dist
        self.engine, self.model, self.loaders = engine, engine.model, loaders
        self.prepared, self.spec = prepared, spec
        self.run_dir, self.logger, self.callbacks = run_dir, logger, callbacks
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.schedule = schedule.LearningRate(self.cfg, self.optimizer, loaders.updates_per_epoch())
        self.scaler = torch.amp.GradScaler(engine.device.type, enabled=self.cfg.precision == "16-mixed")
        self.state = TrainState()
        self.stop_signal = 0  # set by SIGINT/SIGTERM during fit
        self.saved = ""  # the position last.pt holds
        self.epoch_started = 0.0

    def fit(self) -> None:
        """Train the remaining epochs (from the middle of one after a mid-epoch checkpoint)."""
        batches = self.loaders.batches_per_epoch()
        with signals.deferred(self.on_signal):
            for epoch in range(self.state.epoch + 1, self.cfg.epochs + 1):
                if self.patience_ran_out():  # checked here, so a resumed run stops too
                    break
                self.epoch_started = time.perf_counter() - self.state.epoch_seconds
                with progress.bar(epoch, self.cfg.epochs, batches, self.state.batch, self.dist.is_main) as bar:
                    train = self.train_epoch(epoch, batches, bar)
                    val = self.dist.from_main(lambda: self.engine.evaluate(self.loaders.evaluate("val"))[0])
                    progress.show_epoch(bar, train, val)
                seconds = time.perf_counter() - self.epoch_started
                self.state.train_seconds += seconds
                lr = self.optimizer.param_groups[0]["lr"]
                done = self.end_epoch(Epoch(epoch, self.state.global_step, train, val, lr, seconds, self.state))
                if stop := self.stopping():
                    raise signals.interrupted(stop, f"after epoch {epoch}", self.run_dir)
                if done:
                    break

    def train_epoch(self, epoch: int, total: int, bar: tqdm) -> dict[str, float]:
        """Batches ``state.batch + 1 .. total`` of an epoch; checkpoints mid-epoch every ``checkpoint_every``
        batches and when a signal asks to stop (at an accumulation boundary, where no gradient is pending)."""
        self.model.train()
        state = self.state
        self.optimizer.zero_grad(set_to_none=True)
        for batch in itertools.islice(self.loaders.train(epoch, skip=state.batch), total - state.batch):
            i = state.batch = state.batch + 1
            state.global_step += 1  # the TensorBoard step: batches
            boundary = i % self.cfg.accumulate == 0 or i == total
            norm = self.train_step(batch, epoch, i, boundary)
            state.epoch_samples += self.loaders.samples(i)
            rate = state.epoch_samples / (time.perf_counter() - self.epoch_started)
            if boundary:
                per_step = {"train/lr_step": self.optimizer.param_groups[0]["lr"], "train/samples_per_s_step": rate}
                self.logger.scalars(
                    per_step | ({} if norm is None else {"train/grad_norm_step": norm}), state.global_step
                )
            progress.show_batch(bar, state.epoch_losses, rate)
            stop = self.stopping()
            due = stop or (self.cfg.checkpoint_every and i % self.cfg.checkpoint_every == 0)
            if boundary and due and i < total:
                self.save_last()
                if stop:
                    raise signals.interrupted(stop, f"at epoch {epoch}, batch {i} of {total}", self.run_dir)
        mean = lambda values: float(np.mean(values)) if values else math.nan  # noqa: E731 - every step skipped
        return {
            "loss": mean(state.epoch_losses),
            "grad_norm": mean(state.epoch_norms),
            "samples_per_s": state.epoch_samples / (time.perf_counter() - self.epoch_started),
        }

    def train_step(self, batch: Batch | DistributedBatch, epoch: int, i: int, boundary: bool) -> float | None:
        """Forward and backward on batch ``i``, then at an accumulation ``boundary`` the update; returns the
        gradient norm of the update (None: none made)."""
        loss = self.step_loss(batch)
        if torch.isfinite(loss):
            self.scaler.scale(loss / self.cfg.accumulate).backward()
            self.state.epoch_losses.append(loss.item())
            self.logger.scalars({"train/loss_step": self.state.epoch_losses[-1]}, self.state.global_step)
        else:
            self.nonfinite(f"loss ({loss.item()})", epoch, i)
        norm = self.optimizer_step(epoch, i) if boundary else None
        if norm is not None:
            self.state.epoch_norms.append(norm)
        return norm

    def step_loss(self, batch: Batch | DistributedBatch) -> torch.Tensor:
        batch, output = self.engine.run(batch, training=True)
        return self.dist.masked_mean(self.engine.loss(output, batch), batch.target_mask)

    def optimizer_step(self, epoch: int, batch: int) -> float | None:
        """Unscale, clip and step; returns the gradient norm, or None when there is no step to take (every loss
        since the last step was skipped) or a non-finite gradient skipped it. Under 16-mixed the scaler itself
        skips steps with inf gradients (normal while it finds its scale)."""
        if all(p.grad is None for p in self.model.parameters()):
            return None
        self.scaler.unscale_(self.optimizer)
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        if not math.isfinite(norm) and not self.scaler.is_enabled():
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite(f"gradient norm ({norm})", epoch, batch)
            return None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.updated()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.skipped_in_a_row = 0
        return norm

    def nonfinite(self, what: str, epoch: int, batch: int) -> None:
        """A non-finite loss or gradient: stop the run, or (``on_nonfinite = "skip"``) count a skipped step,
        stopping after ``max_skipped_steps`` in a row. The checkpoints on disk are never touched."""
        state = self.state
        where = f"at epoch {epoch}, batch {batch} (step {state.global_step})"
        kept = (
            f"best_model.pt (epoch {state.best_epoch}) and last.pt ({self.saved}) are intact"
            if self.saved
            else "no checkpoint written yet"
        )
        if self.cfg.on_nonfinite == "stop":
            raise TrainingError(
                f"non-finite {what} {where}; stopped before the update. {kept} "
                '(trainer.on_nonfinite = "skip" skips such steps)'
            )
        state.skipped_steps += 1
        state.skipped_in_a_row += 1
        if state.skipped_in_a_row >= self.cfg.max_skipped_steps:
            raise TrainingError(
                f"non-finite {what} {where}: {state.skipped_in_a_row} steps in a row skipped "
                f"(trainer.max_skipped_steps); stopped. {kept}"
            )
        progress.note(f"skipped a step: non-finite {what} {where}")

    def end_epoch(self, epoch: Epoch) -> bool:
        """The callbacks in order, the epoch's schedule step, ``best_model.pt`` if val MAE improved, then
        ``last.pt``; True if a callback ends the training."""
        state = self.state
        state.epoch = epoch.number
        state.batch, state.epoch_losses, state.epoch_norms = 0, [], []
        state.epoch_samples, state.epoch_seconds = 0, 0.0
        done = [callback(epoch) for callback in self.callbacks]  # every one, even after one that says stop
        self.schedule.epoch_ended(epoch.val_mae)
        if epoch.val_mae < state.best_val_mae:
            state.best_val_mae, state.best_epoch, state.bad_epochs = epoch.val_mae, epoch.number, 0
            if self.dist.is_main:
                card = checkpoints.model_card(self.recipe, self.prepared, self.spec)
                checkpoints.save_best(self.run_dir, self.model.state_dict(), epoch.number, epoch.val_mae, card)
        else:
            state.bad_epochs += 1
        self.save_last()  # last: a crash before this repeats the epoch, which rewrites the files above identically
        return any(done)

    def patience_ran_out(self) -> bool:
        if not (self.cfg.patience and self.state.bad_epochs >= self.cfg.patience):
            return False
        progress.note(
            f"early stop: val MAE has not improved for {self.cfg.patience} epochs "
            f"(best {self.state.best_val_mae:.4f} at epoch {self.state.best_epoch})"
        )
        return True

    # ------------------------------------------------------------------------------- checkpoints, signals
    def state_dict(self) -> dict[str, Any]:
        """What ``last.pt`` holds of the trainer: weights, optimizer, schedule, scaler, progress and RNG."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "state": attrs.asdict(self.state),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue from a ``state_dict()`` (a ``last.pt``); a changed ``trainer.epochs`` gets the schedule of the
        new length, fast-forwarded (``schedule.restore``)."""
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule = schedule.LearningRate(
            self.cfg, self.optimizer, self.loaders.updates_per_epoch(), saved["scheduler"]
        )
        self.scaler.load_state_dict(saved["scaler"])
        self.state = TrainState(**saved["state"])
        torch.set_rng_state(saved["rng"])
        if saved["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        self.saved = self.state.position()

    def save_last(self) -> None:
        """Flush the TensorBoard events up to now, then write ``last.pt`` (``checkpoints.save_last``)."""
        self.state.epoch_seconds = time.perf_counter() - self.epoch_started if self.state.batch else 0.0
        if self.dist.is_main:  # the other ranks hold the same state
            self.logger.writer.flush()
            checkpoints.save_last(self.run_dir, self.state_dict(), self.recipe, self.spec.vd_ids)
        self.saved = self.state.position()

    def on_signal(self, signum: int) -> None:
        self.stop_signal = signum

    def stopping(self) -> int:
        """The signal that stops the run (0: none), agreed by all processes so that they stop at the same batch."""
        return self.dist.any_signal(self.stop_signal)
