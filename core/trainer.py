"""The training loop, readable top to bottom: a step, an epoch, validation, checkpoints, the final test.

Loss: masked MAE on the z-scored target. Metrics: MAE/RMSE/MAPE in the data's units, missing values masked.
``last.pt`` (resumable) is written after every epoch and ``best_model.pt`` whenever val MAE improves, both
atomically.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

from core.api import Batch, Collator, DatasetSpec
from core.baselines import Baselines
from core.data.windows import Prepared
from core.errors import TrainingError
from core.io import save_checkpoint, save_json
from core.metrics import HorizonMetrics, masked_mae
from core.model import Forecaster
from core.neighbours import NeighbourPooling
from core.recipe import Recipe
from core.tensorboard import RunLogger

AUTOCAST = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"[trainer] device = '{name}' but CUDA is not available on this machine; use 'auto' or 'cpu'")
    return torch.device(name)


@attrs.define
class TrainState:
    """Progress that ``last.pt`` carries across a resume."""

    epoch: int = 0  # epochs completed
    global_step: int = 0
    best_val_mae: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    train_seconds: float = 0.0
    history: list[dict[str, float]] = attrs.Factory(list)


class Trainer:
    def __init__(self, recipe: Recipe, model: Forecaster, collator: Collator, prepared: Prepared, spec: DatasetSpec, run_dir: Path):
        self.recipe, self.cfg = recipe, recipe.trainer
        self.prepared, self.spec, self.collator = prepared, spec, collator
        self.run_dir = run_dir
        self.device = resolve_device(self.cfg.device)
        self.model = model.to(self.device)
        self.forward = torch.compile(self.model) if self.cfg.compile else self.model  # same weights, same state dict
        self.autocast_dtype = AUTOCAST[self.cfg.precision]
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.scheduler = {
            "none": lambda: None,
            "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=self.cfg.epochs),
            "plateau": lambda: torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=0.5, patience=2),
        }[self.cfg.scheduler]()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.cfg.precision == "16-mixed")
        index = prepared.target_index
        self.target_mean = float(prepared.normaliser.mean[index])
        self.target_std = float(prepared.normaliser.std[index])
        self.state = TrainState()
        self.logger: RunLogger | None = None

    # ----------------------------------------------------------------------------------------------- data
    def loader(self, split: str, epoch: int = 0) -> DataLoader:
        dataset = self.prepared.splits[split]
        training = split == "train"
        sampler = None
        if training:  # the order depends on (seed, epoch) only, so a resumed run sees the same batches
            sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(self.recipe.run.seed * 1000 + epoch))
        return DataLoader(
            dataset,
            batch_size=self.cfg.batch_size if training else self.cfg.eval_batch_size,
            sampler=sampler,
            collate_fn=self.collator,
            num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ----------------------------------------------------------------------------------------------- loop
    def fit(self, logger: RunLogger) -> None:
        self.logger = logger
        for epoch in range(self.state.epoch + 1, self.cfg.epochs + 1):
            started = time.perf_counter()
            loader = self.loader("train", epoch)
            batches = min(len(loader), self.cfg.max_batches_per_epoch or len(loader))
            # on a terminal the bar redraws; in a log file it prints little more than one line per epoch
            interval = 0.5 if sys.stderr.isatty() else 60.0
            with tqdm(total=batches, desc=f"epoch {epoch}/{self.cfg.epochs}", unit="batch", mininterval=interval, dynamic_ncols=True) as bar:
                train = self.train_epoch(epoch, loader, batches, bar)
                val = self.evaluate("val")
                bar.set_postfix(loss=f"{train['loss']:.4f}", val_mae=f"{val['model']['mae@avg']:.4f}", samples_s=f"{train['samples_per_s']:.0f}")
            seconds = time.perf_counter() - started
            self.state.train_seconds += seconds
            self.end_epoch(epoch, train, val, seconds)
            if self.cfg.patience and self.state.bad_epochs >= self.cfg.patience:
                tqdm.write(f"early stop: val MAE has not improved for {self.cfg.patience} epochs (best {self.state.best_val_mae:.4f} at epoch {self.state.best_epoch})")
                break

    def train_epoch(self, epoch: int, loader: DataLoader, total: int, bar: tqdm) -> dict[str, float]:
        self.model.train()
        losses, norms, samples, started = [], [], 0, time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(itertools.islice(loader, total), start=1):
            batch = batch.to(self.device).canonical()
            if self.cfg.whiten:  # SPIN's whitening: hide a random fraction of the observed inputs
                batch = batch.hide_inputs(self.cfg.whiten)
            loss = self.step_loss(batch)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"non-finite loss ({loss.item()}) at epoch {epoch}, batch {i}; stopped before the update. "
                    f"best_model.pt (epoch {self.state.best_epoch}) and last.pt (epoch {self.state.epoch}) are intact"
                )
            self.scaler.scale(loss / self.cfg.accumulate).backward()
            if i % self.cfg.accumulate == 0 or i == total:
                norms.append(self.optimizer_step())
            losses.append(loss.item())
            samples += batch.size
            self.state.global_step += 1
            rate = samples / (time.perf_counter() - started)
            self.logger.scalars({"train/loss_step": losses[-1]}, self.state.global_step)
            bar.set_postfix(loss=f"{np.mean(losses):.4f}", samples_s=f"{rate:.0f}", refresh=False)
            bar.update()
        return {"loss": float(np.mean(losses)), "grad_norm": float(np.mean(norms)), "samples_per_s": samples / (time.perf_counter() - started)}

    def step_loss(self, batch: Batch) -> torch.Tensor:
        with self.autocast():
            pred = self.forward(batch)
        return masked_mae(pred.float(), batch.target, batch.target_mask)

    def optimizer_step(self) -> float:
        self.scaler.unscale_(self.optimizer)
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def end_epoch(self, epoch: int, train: dict[str, float], val: dict[str, Any], seconds: float) -> None:
        val_mae = val["model"]["mae@avg"]
        lr = self.optimizer.param_groups[0]["lr"]
        step = self.state.global_step
        self.logger.scalars(
            {
                "train/loss": train["loss"],
                "val/loss": val["loss"],
                "train/lr": lr,
                "train/grad_norm": train["grad_norm"],
                "train/samples_per_s": train["samples_per_s"],
                "train/epoch": epoch,
                **{f"val/{k}": v for k, v in val["model"].items()},
            },
            step,
        )
        self.log_forecast_figure("val", step)
        self.log_pooling(step)
        improved = val_mae < self.state.best_val_mae
        self.state.epoch = epoch
        self.state.history.append(
            {"epoch": epoch, "step": step, "train_loss": train["loss"], "val_loss": val["loss"], "val_mae": val_mae,
             "lr": lr, "grad_norm": train["grad_norm"], "samples_per_s": train["samples_per_s"], "seconds": seconds}
        )
        if self.scheduler is not None:
            self.scheduler.step(val_mae) if self.cfg.scheduler == "plateau" else self.scheduler.step()
        if improved:
            self.state.best_val_mae, self.state.best_epoch, self.state.bad_epochs = val_mae, epoch, 0
            save_checkpoint(self.best_checkpoint(), self.run_dir / "best_model.pt")
        else:
            self.state.bad_epochs += 1
        save_checkpoint(self.last_checkpoint(), self.run_dir / "last.pt")
        save_json(self.state.history, self.run_dir / "training_history.json")
        self.logger.writer.flush()

    # ----------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, split: str, baselines: Baselines | None = None) -> dict[str, Any]:
        """Metrics of the model (and of the baselines, if given) on a split, in the data's units."""
        self.model.eval()
        horizon = self.spec.horizon
        metrics = {"model": HorizonMetrics(horizon)}
        metrics.update({name: HorizonMetrics(horizon) for name in (baselines.names if baselines else ())})
        loss_sum, count = 0.0, 0
        for batch in self.loader(split):
            batch = batch.to(self.device).canonical()
            with self.autocast():
                pred = self.forward(batch).float()
            loss_sum += masked_mae(pred, batch.target, batch.target_mask).item() * batch.size
            count += batch.size
            truth = self.denormalise(batch.target)
            metrics["model"].update(self.denormalise(pred), truth, batch.target_mask)
            if baselines:
                for name, forecast in baselines.predict(batch.start.cpu()).items():
                    metrics[name].update(forecast.to(self.device), truth, batch.target_mask)
        return {"loss": loss_sum / max(count, 1), **{name: m.compute() for name, m in metrics.items()}}

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.target_std + self.target_mean

    def test(self) -> dict[str, Any]:
        """Test metrics of the best checkpoint beside the baselines; writes metrics.json."""
        best = torch.load(self.run_dir / "best_model.pt", map_location=self.device, weights_only=False)
        self.model.load_state_dict(best["model"])
        result = self.evaluate("test", Baselines(self.prepared))
        metrics = {
            "test": result["model"],
            "baselines": {name: result[name] for name in Baselines.names},
            "best_epoch": self.state.best_epoch,
            "best_val_mae": self.state.best_val_mae,
            "epochs": self.state.epoch,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "train_seconds": self.state.train_seconds,
        }
        save_json(metrics, self.run_dir / "metrics.json")
        step = self.state.global_step
        self.logger.scalars({f"test/{k}": v for k, v in result["model"].items()}, step)
        for name in Baselines.names:
            self.logger.scalars({f"test_{name}/{k}": v for k, v in result[name].items()}, step)
        self.log_forecast_figure("test", step)
        return metrics

    @torch.no_grad()
    def log_forecast_figure(self, split: str, step: int) -> None:
        """Forecast vs truth on the split's first window, for the VDs whose truth varies most."""
        if not self.cfg.figure_vds:
            return
        dataset = self.prepared.splits[split]
        batch = self.collator(dataset.__getitems__([0])).to(self.device).canonical()
        self.model.eval()
        with self.autocast():
            forecast = self.denormalise(self.model(batch).float())[0].cpu().numpy()
        series = self.prepared.series
        start = int(dataset.starts[0])
        history = series.target_raw[start : start + series.history].numpy()
        truth = series.target_raw[start + series.history : start + series.history + series.horizon].numpy()
        window = series.target_raw[start : start + series.history + series.horizon]  # [T + H, N]
        observed = window.isfinite()
        spread = window.where(observed, -math.inf).amax(0) - window.where(observed, math.inf).amin(0)  # -inf if all NaN
        chosen = spread.argsort(descending=True)[: self.cfg.figure_vds].numpy()
        self.logger.forecast_figure(
            f"forecast/{split}", history[:, chosen], truth[:, chosen], forecast[:, chosen],
            [self.spec.vd_ids[i] for i in chosen], step, self.recipe.data.target,
        )
        self.model.train()

    def log_pooling(self, step: int) -> None:
        """The pooling's own scalars (e.g. a learned radius) and, for neighbour-list pooling, the map."""
        pooling = self.model.pooling
        self.logger.scalars(pooling.summary(), step)
        if not isinstance(pooling, NeighbourPooling) or not self.cfg.figure_vds:
            return
        lists = pooling.neighbours
        weights = pooling.edge_weights if pooling.edge_weights is not None else lists.valid.float()
        positions = self.spec.positions_xy.numpy()
        focus = np.linspace(0, len(positions) - 1, min(self.cfg.figure_vds, len(positions))).astype(int).tolist()
        self.logger.neighbour_map("pooling/map", positions, lists.index.cpu().numpy(), weights.cpu().numpy(), focus, step)

    # ---------------------------------------------------------------------------------------- checkpoints
    def best_checkpoint(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "epoch": self.state.epoch,
            "val_mae": self.state.best_val_mae,
            "recipe": self.recipe.to_dict(),
            "normaliser": self.prepared.normaliser.to_dict(),
            "vd_ids": list(self.spec.vd_ids),
            "input_features": list(self.prepared.input_features),
            "target": self.recipe.data.target,
        }

    def last_checkpoint(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "state": attrs.asdict(self.state),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "vd_ids": list(self.spec.vd_ids),
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from a ``last.pt``: weights, optimizer, scheduler, scaler, progress and RNG."""
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None and checkpoint["scheduler"] is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.state = TrainState(**checkpoint["state"])
        torch.set_rng_state(checkpoint["rng"])
        if checkpoint["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
