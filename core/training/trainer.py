"""The training loop, readable top to bottom: fit, an epoch, one update, evaluation, early stopping.

Loss: the head's (MAE for a point forecast, e.g. the pinball loss for quantiles) on the z-scored target, missing
values masked. Metrics: MAE/RMSE/MAPE of the head's point forecast in the data's units, and for a distribution
head the coverage, width and CRPS of its quantiles.
Beside this module: the batches (``loaders``), the learning-rate schedule (``schedule``), what is saved and how a
run resumes (``checkpoints``), signals (``signals``), the progress bar (``progress``), TensorBoard
(``tensorboard``), the forecast figures and the final test (``report``). A resumed run repeats exactly what the
uninterrupted run would have done: the batch order depends on (seed, epoch) only, mid-epoch checkpoints record
how many batches are done, and the RNG is restored.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from tqdm import tqdm

from core.api import Batch, Collator, DatasetSpec
from core.data.windows import Prepared
from core.errors import TrainingError
from core.io import save_json
from core.model import Forecaster
from core.recipe import Recipe
from core.training import checkpoints, progress, report, schedule, signals
from core.training.baselines import Baselines
from core.training.checkpoints import TrainState
from core.training.device import AUTOCAST, resolve_device
from core.training.distributed import Distributed
from core.training.loaders import Loaders
from core.training.metrics import HorizonMetrics, masked_mean
from core.training.tensorboard import RunLogger

# Called after every epoch with (epoch, val MAE@avg) once the epoch is logged and saved; True ends the training
# there (the run is then tested as usual), e.g. a study's pruner stopping a hopeless trial.
EpochEnd = Callable[[int, float], bool]


class Trainer:
    def __init__(
        self,
        recipe: Recipe,
        model: Forecaster,
        collator: Collator,
        prepared: Prepared,
        spec: DatasetSpec,
        run_dir: Path,
        logger: RunLogger,
        dist: Distributed = Distributed(),
        on_epoch_end: EpochEnd | None = None,
    ):
        """``logger``: where this process logs (``distributed.Silent`` on ranks other than 0); ``on_epoch_end``: see
        ``EpochEnd``."""
        self.recipe, self.cfg, self.dist = recipe, recipe.trainer, dist
        self.prepared, self.spec, self.collator = prepared, spec, collator
        self.run_dir, self.logger = run_dir, logger
        self.device = resolve_device(self.cfg.device)
        self.model = model.to(self.device)
        self.forward = torch.compile(self.model) if self.cfg.compile else self.model  # same weights, same state dict
        # DDP under torchrun
        self.train_forward = dist.wrap(self.model, self.cfg.compile) if dist.enabled else self.forward
        self.autocast_dtype = AUTOCAST[self.cfg.precision]
        self.loaders = Loaders(prepared, collator, self.cfg, recipe.run.seed, self.device, dist)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.scheduler = schedule.build(self.cfg, self.optimizer, self.loaders.updates_per_epoch())
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.cfg.precision == "16-mixed")
        index = prepared.target_index
        self.target_mean = float(prepared.normaliser.mean[index])
        self.target_std = float(prepared.normaliser.std[index])
        self.state = TrainState()
        self.stop_signal = 0  # set by SIGINT/SIGTERM during fit
        self.saved = ""  # the position last.pt holds
        self.epoch_started = 0.0
        self.on_epoch_end = on_epoch_end

    # ----------------------------------------------------------------------------------------------- loop
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
                    val = self.dist.from_main(lambda: self.evaluate("val")[0])
                    progress.show_epoch(bar, train, val)
                seconds = time.perf_counter() - self.epoch_started
                self.state.train_seconds += seconds
                self.end_epoch(epoch, train, val, seconds)
                if stop := self.stopping():
                    raise signals.interrupted(stop, f"after epoch {epoch}", self.run_dir)
                if self.on_epoch_end and self.on_epoch_end(epoch, val["model"]["mae@avg"]):
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

    def train_step(self, batch: Batch, epoch: int, i: int, boundary: bool) -> float | None:
        """Forward and backward on batch ``i``, then at an accumulation ``boundary`` the update; returns the
        gradient norm of the update (None: none made)."""
        batch = batch.to(self.device).canonical()
        if self.cfg.whiten:  # SPIN's whitening: hide a random fraction of the observed inputs
            batch = batch.hide_inputs(self.cfg.whiten)
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

    def step_loss(self, batch: Batch) -> torch.Tensor:
        with self.autocast():
            output = self.train_forward(batch)
        return self.dist.masked_mean(self.model.head.loss(output.float(), batch.target), batch.target_mask)

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
        if self.cfg.scheduler == "onecycle":
            self.scheduler.step()
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

    def end_epoch(self, epoch: int, train: dict[str, float], val: dict[str, Any], seconds: float) -> None:
        """Log the epoch, step the scheduler, save ``best_model.pt`` if val MAE improved, then ``last.pt``."""
        val_mae = val["model"]["mae@avg"]
        lr = self.optimizer.param_groups[0]["lr"]
        state, step = self.state, self.state.global_step
        self.logger.scalars(
            {
                "train/loss": train["loss"],
                "val/loss": val["loss"],
                "train/lr": lr,
                "train/grad_norm": train["grad_norm"],
                "train/samples_per_s": train["samples_per_s"],
                "train/epoch": epoch,
                "train/skipped_steps": state.skipped_steps,
                **{f"val/{k}": v for k, v in val["model"].items()},
            },
            step,
        )
        pooling = self.model.pooling  # first: its map is the mean over the validation pass just made
        self.logger.pooling(pooling.summary(), pooling.edges(), self.spec.positions_xy, self.cfg.figure_vds, step)
        report.log_forecast(self, "val", step)
        state.epoch = epoch
        state.batch, state.epoch_losses, state.epoch_norms = 0, [], []
        state.epoch_samples, state.epoch_seconds = 0, 0.0
        state.history.append(
            {"epoch": epoch, "step": step, "train_loss": train["loss"], "val_loss": val["loss"], "val_mae": val_mae}
            | {"lr": lr, "grad_norm": train["grad_norm"], "samples_per_s": train["samples_per_s"], "seconds": seconds}
        )
        if self.cfg.scheduler in ("cosine", "plateau"):  # per epoch ("onecycle" steps with every update)
            self.scheduler.step(val_mae) if self.cfg.scheduler == "plateau" else self.scheduler.step()
        if val_mae < state.best_val_mae:
            state.best_val_mae, state.best_epoch, state.bad_epochs = val_mae, epoch, 0
            if self.dist.is_main:
                card = checkpoints.model_card(self.recipe, self.prepared, self.spec)
                checkpoints.save_best(self.run_dir, self.model.state_dict(), epoch, val_mae, card)
        else:
            state.bad_epochs += 1
        if self.dist.is_main:
            save_json(state.history, self.run_dir / "training_history.json")
        self.save_last()  # last: a crash before this repeats the epoch, which rewrites the files above identically

    def patience_ran_out(self) -> bool:
        if not (self.cfg.patience and self.state.bad_epochs >= self.cfg.patience):
            return False
        progress.note(
            f"early stop: val MAE has not improved for {self.cfg.patience} epochs "
            f"(best {self.state.best_val_mae:.4f} at epoch {self.state.best_epoch})"
        )
        return True

    # ----------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(
        self, split: str, baselines: Baselines | None = None
    ) -> tuple[dict[str, Any], dict[str, HorizonMetrics]]:
        """Metrics of the model (and of the baselines, if given) on a split, in the data's units, and the
        accumulators they were computed from (for per-step and per-VD errors)."""
        head, horizon = self.model.head, self.spec.horizon
        names = ("model", *(baselines.names if baselines else ()))
        metrics = {name: HorizonMetrics(horizon, levels=head.levels) for name in names}
        loss_sum, count = 0.0, 0
        for batch, output in self.outputs(split):
            loss_sum += masked_mean(head.loss(output, batch.target), batch.target_mask).item() * batch.size
            count += batch.size
            truth = self.denormalise(batch.target)
            quantiles = self.denormalise(head.quantiles(output)) if head.distribution else None
            metrics["model"].update(self.denormalise(head.point(output)), truth, batch.target_mask, quantiles)
            if baselines:
                start = batch.start.cpu()
                spreads = baselines.quantiles(start) if head.distribution else {}
                for name, forecast in baselines.predict(start).items():
                    spread = spreads[name].to(self.device) if spreads else None
                    metrics[name].update(forecast.to(self.device), truth, batch.target_mask, spread)
        return {"loss": loss_sum / max(count, 1), **{name: m.compute() for name, m in metrics.items()}}, metrics

    def outputs(self, split: str, stride: int = 1) -> Iterator[tuple[Batch, torch.Tensor]]:
        """Every batch of a split (with ``stride`` k, every k-th window) on the device, beside the model's output
        for it (float32, eval mode)."""
        self.model.eval()
        for batch in self.loaders.evaluate(split, stride):
            batch = batch.to(self.device).canonical()
            with self.autocast():
                output = self.forward(batch)
            yield batch, output.float()

    def autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.target_std + self.target_mean

    # ------------------------------------------------------------------------------- checkpoints, signals
    def state_dict(self) -> dict[str, Any]:
        """What ``last.pt`` holds of the trainer: weights, optimizer, schedule, scaler, progress and RNG."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
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
        self.scheduler = schedule.restore(
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
