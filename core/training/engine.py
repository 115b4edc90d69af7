"""The engine: a trained or training model on its device and precision, with what every caller does with it.

Training, validation, calibration, the final test, the forecast figures and ``core.predict`` all go through it, so
each step is written once here: the forward pass of a batch (``run``: device, canonical layout, autocast, forward,
float32), and from the head's output to the loss against the target (``loss``), to the quantiles in z units
(``quantiles``, which calibration shifts) and to the forecast in the data's units (``forecast``).

The head forecasts the target less a base (``offset``): the target's mean, or with ``[model] residual =
"profile"`` each window's historical profile (``Batch.target_profile``), so that a model whose head outputs 0
forecasts exactly the historical average.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from typing import Any, NamedTuple

import torch

from core.api import Batch, DistributedBatch
from core.data.windows import Normaliser
from core.errors import TrainingError
from core.model import Forecaster
from core.recipe import TrainerConfig
from core.training.baselines import Baselines
from core.training.device import AUTOCAST, resolve_device
from core.training.distributed import Distributed
from core.training.metrics import HorizonMetrics, masked_mean


class Forecast(NamedTuple):
    """A batch's forecast in the data's units."""

    point: torch.Tensor  # [B, H, N] the head's point forecast (a distribution head's median)
    quantiles: torch.Tensor | None  # [B, H, N, L] at the head's levels (a distribution head), else None


class Engine:
    """``model`` on the device and precision of ``cfg`` (``trainer.device``, ``precision``, ``compile``,
    ``whiten``), its forecasts brought to the units of ``target`` by ``normaliser``; under torchrun (``dist``) the
    training forward pass goes through DDP."""

    def __init__(
        self,
        model: Forecaster,
        cfg: TrainerConfig,
        normaliser: Normaliser,
        target: str,
        dist: Distributed = Distributed(),
    ):
        self.device = resolve_device(cfg.device)
        self.model = model.to(self.device)
        self.head = model.head
        self.residual = model.residual
        self.forward = torch.compile(self.model) if cfg.compile else self.model  # same weights, same state dict
        self.train_forward = dist.wrap(self.model, cfg.compile) if dist.enabled else self.forward
        self.autocast_dtype = AUTOCAST[cfg.precision]
        self.whiten = cfg.whiten
        (mean,), (std,) = normaliser.select((target,))
        self.mean, self.std = float(mean), float(std)

    def run(self, batch: Batch | DistributedBatch, training: bool = False) -> tuple[Batch, torch.Tensor]:
        """The forward pass: the batch on the device in the canonical layout (in ``training``, with the
        ``trainer.whiten`` fraction of its inputs hidden: SPIN's whitening) and the model's output for it, float32."""
        batch = batch.to(self.device).canonical()
        if training and self.whiten:
            batch = batch.hide_inputs(self.whiten)
        with self.autocast():
            output = (self.train_forward if training else self.forward)(batch)
        return batch, output.float()

    @torch.no_grad()
    def outputs(self, batches: Iterable[Batch | DistributedBatch]) -> Iterator[tuple[Batch, torch.Tensor]]:
        """Every batch (on the device, canonical) beside the model's output for it, in eval mode."""
        self.model.eval()
        for batch in batches:
            yield self.run(batch)

    def offset(self, batch: Batch) -> torch.Tensor | float:
        """What the head's output is added to, in the data's units: the target's mean, or each window's profile
        ``[B, H, N]`` (``[model] residual = "profile"``)."""
        if self.residual == "none":
            return self.mean
        if batch.target_profile is None:
            raise TrainingError(
                '[model] residual = "profile" forecasts the deviation from the windows\' target_profile, and the '
                "batch has none: the collator must pass its windows' target_profile on"
            )
        return batch.target_profile

    def base(self, batch: Batch) -> torch.Tensor | float:
        """``offset`` in z units: 0, or the z-scored profile."""
        return 0.0 if self.residual == "none" else (self.offset(batch) - self.mean) / self.std

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The head's loss ``[B, H, N]`` of ``output`` against the batch's z-scored target less the ``base``, per
        entry (the caller averages it over ``target_mask``)."""
        return self.head.loss(output, batch.target - self.base(batch))

    def quantiles(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        """A distribution head's quantiles ``[B, H, N, L]`` in z units, calibrated (its ``offsets``)."""
        return self.head.quantiles(output) + per_level(self.base(batch))

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        """Values of the z-scored target in the data's units."""
        return z * self.std + self.mean

    def forecast(self, output: torch.Tensor, batch: Batch) -> Forecast:
        """The model's ``output`` for ``batch`` as a forecast in the data's units: the head's values scaled, plus
        the ``offset``."""
        offset = self.offset(batch)
        point = self.head.point(output) * self.std + offset
        if not self.head.distribution:
            return Forecast(point, None)
        return Forecast(point, self.head.quantiles(output) * self.std + per_level(offset))

    def forecasts(self, batches: Iterable[Batch | DistributedBatch]) -> Iterator[tuple[Batch, Forecast]]:
        """Every batch (on the device, canonical) beside its forecast in the data's units."""
        for batch, output in self.outputs(batches):
            yield batch, self.forecast(output, batch)

    @torch.no_grad()
    def evaluate(
        self, batches: Iterable[Batch | DistributedBatch], baselines: Baselines | None = None
    ) -> tuple[dict[str, Any], dict[str, HorizonMetrics]]:
        """The mean loss and the metrics of the model (and of the ``baselines``, if given) over ``batches``, in the
        data's units, and the accumulators they were computed from (for per-step and per-VD errors)."""
        levels = self.head.levels
        names = ("model", *(baselines.names if baselines else ()))
        metrics = {name: HorizonMetrics(self.head.horizon, levels=levels) for name in names}
        loss_sum, count = 0.0, 0
        for batch, output in self.outputs(batches):
            loss_sum += masked_mean(self.loss(output, batch), batch.target_mask).item() * batch.size
            count += batch.size
            truth, forecast = self.denormalise(batch.target), self.forecast(output, batch)
            metrics["model"].update(forecast.point, truth, batch.target_mask, forecast.quantiles)
            if baselines:
                start = batch.start.cpu()
                points = baselines.predict(start)
                spreads = baselines.quantiles(start, points) if levels else {}
                for name, point in points.items():
                    spread = spreads[name].to(self.device) if spreads else None
                    metrics[name].update(point.to(self.device), truth, batch.target_mask, spread)
        return {"loss": loss_sum / max(count, 1), **{name: m.compute() for name, m in metrics.items()}}, metrics

    def autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


def per_level(base: torch.Tensor | float) -> torch.Tensor | float:
    """A base ``[B, H, N]`` (or a scalar) broadcast over quantile levels."""
    return base[..., None] if torch.is_tensor(base) else base
