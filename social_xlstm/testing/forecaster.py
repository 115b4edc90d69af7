"""Checks of a forecaster built around the plugin under test: finite, every parameter trained, exact under the
padding it declares, round-tripped, reproducible, under bf16 autocast, and the same in the social modes. The loss
is the model's head's, masked as the trainer masks it."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

import attrs
import torch
from torch import nn

from core.api import Batch, DatasetSpec, Encoder, Head, LayerwiseEncoder, Pooling
from core.host.registry import Registry
from core.model import Forecaster, inner_layers
from core.recipe import ModelConfig
from core.training.metrics import masked_mean
from social_xlstm.testing.data import BuiltinCollators, histories, make_windows, select
from social_xlstm.testing.result import BF16_LIMIT, TOLERANCE, CheckResult, at_most, gap, skipped

Check = tuple[str, Callable[[], CheckResult]]


def forecaster(
    encoder: Encoder,
    pooling: Callable[[], Pooling],
    social: str,
    horizon: int,
    head: Callable[[int], Head] | None = None,
) -> Forecaster:
    """``encoder`` + ``pooling()`` (and one more per inner layer in the social modes, whose injections are
    randomised: they start at zero, which would hide them) + ``head(dim)`` (default: ``point``), in eval mode."""
    inner = {layer: pooling() for layer in inner_layers(social, encoder)}
    model = Forecaster(encoder, pooling(), ModelConfig(hidden_dim=8), inner, head)
    for inject in model.inject.values():
        nn.init.normal_(inject.weight, std=0.5)
    return model.eval()


def loss(model: Forecaster, output: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The model's head's loss over the observed targets, as the trainer computes it (MAE for ``point``)."""
    return masked_mean(model.head.loss(output, batch.target), batch.target_mask)


def padding_of(batch: Batch) -> torch.Tensor:
    """``[B, T, M]`` True where an input is padding: a padded step or a slot with no VD."""
    present = batch.node_mask[:, None].expand(-1, batch.values.shape[1], -1)
    return ~(present if batch.step_mask is None else present & batch.step_mask)


class ForecasterChecks:
    """``make(seed, social)`` builds the model (seeded, eval mode); ``time`` / ``slots``: the model declares it
    honours time padding / VD slots, so the data has that padding (and no other)."""

    def __init__(
        self, make: Callable[[int, str], Forecaster], registry: Registry, spec: DatasetSpec, time: bool, slots: bool
    ):
        self.make, self.time, self.slots = make, time, slots
        self.windows = make_windows(spec, histories(time, slots) if time or slots else None)
        self.collators = BuiltinCollators.for_spec(registry, spec)
        self.batch = self.collators.dynamic(self.windows)
        self.model = make(0, "last")

    def checks(self) -> list[Check]:
        return [
            ("finite", self.finite),
            ("gradients", self.gradients),
            ("padding.batched", lambda: self.padding(0)),
            ("padding.maximum", lambda: self.padding(1)),
            ("padding.junk", self.junk),
            ("padding.gradient", self.padding_gradient),
            ("state_dict", self.state_dict),
            ("seed", self.seed),
            ("bf16", self.bf16),
            ("social.every_step", lambda: self.social("every_step")),
            ("social.interleaved", lambda: self.social("interleaved")),
        ]

    def forecast(self, model: Forecaster, batch: Batch | None = None) -> torch.Tensor:
        with torch.no_grad():
            return model(self.batch if batch is None else batch)

    @functools.cached_property
    def trained(self) -> tuple[Forecaster, torch.Tensor]:
        """A model in train mode after one backward pass of the loss, and its forecast."""
        model = self.make(0, "last").train()
        forecast = model(self.batch)
        loss(model, forecast, self.batch).backward()
        return model, forecast.detach()

    def finite(self) -> CheckResult:
        model, forecast = self.trained
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        bad = int((~torch.isfinite(forecast)).sum()) + sum(int((~torch.isfinite(g)).sum()) for g in grads)
        return at_most("non-finite", bad, 0, "forecast and gradients, train mode")

    def gradients(self) -> CheckResult:
        model, _ = self.trained
        missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
        note = f"without: {', '.join(missing[:4])}" if missing else "every trainable parameter (DDP needs them all)"
        return at_most("parameters", len(missing), 0, note)

    def _padded(self) -> bool:
        return self.time or self.slots

    def alone_batched_maximum(self, model: Forecaster) -> tuple[float, float]:
        """max |diff| of sample 0's forecast alone against batched with longer and wider samples (dynamic
        padding), and against padded to the global maximum (all N VDs, the full history)."""
        alone = self.forecast(model, self.collators.dynamic(select(self.windows, [0])))[0]
        mask = self.windows.target_mask[0]
        batched = self.forecast(model)[0]
        maximum = self.forecast(model, self.collators.centralized(self.windows))[0]
        return gap(alone, batched, mask), gap(alone, maximum, mask)

    def padding(self, which: int) -> CheckResult:
        if not self._padded():
            return skipped("declares neither honours_time_padding nor honours_vd_slots (recipes that pad refuse it)")
        note = ("alone vs batched with longer and wider samples", "alone vs padded to the global maximum")[which]
        return at_most("max|diff|", self.alone_batched_maximum(self.model)[which], TOLERANCE, note)

    def junk_gap(self, model: Forecaster) -> float:
        """max |diff| of the forecasts when padded steps and absent VDs' slots hold junk (values and flags)."""
        padding = padding_of(self.batch)[..., None]
        g = torch.Generator().manual_seed(1)
        values = self.batch.values + torch.randn(self.batch.values.shape, generator=g) * 100 * padding
        observed = self.batch.observed | (torch.rand(self.batch.observed.shape, generator=g) > 0.5) & padding
        return gap(
            self.forecast(model, attrs.evolve(self.batch, values=values, observed=observed)), self.forecast(model)
        )

    def junk(self) -> CheckResult:
        if not self._padded():
            return skipped("no padding declared")
        return at_most("max|diff|", self.junk_gap(self.model), TOLERANCE, "junk in padded steps and absent VDs")

    def padding_gradient(self) -> CheckResult:
        if not self._padded():
            return skipped("no padding declared")
        padding = padding_of(self.batch)
        values = self.batch.values.clone().requires_grad_()
        loss(self.model, self.model(attrs.evolve(self.batch, values=values)), self.batch).backward()
        grad = values.grad.abs().amax(-1)
        real = float(grad[~padding].max())
        return at_most("max|grad|", grad[padding].max(), 0.0, f"on padding; real inputs {real:.3g}", also=real > 0)

    def state_dict(self) -> CheckResult:
        other = self.make(1, "last")
        before = gap(self.forecast(other), self.forecast(self.model))
        buffer = io.BytesIO()
        torch.save(self.model.state_dict(), buffer)
        buffer.seek(0)
        other.load_state_dict(torch.load(buffer, weights_only=True))
        after = gap(self.forecast(other), self.forecast(self.model))
        return at_most(
            "max|diff|", after, TOLERANCE, f"saved, loaded into a model of another seed ({before:.3g} before)"
        )

    def seed(self) -> CheckResult:
        return at_most(
            "max|diff|",
            gap(self.forecast(self.make(0, "last")), self.forecast(self.model)),
            TOLERANCE,
            "built twice with seed 0",
        )

    def bf16(self) -> CheckResult:
        model = self.make(0, "last")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            forecast = model(self.batch)
        loss(model, forecast.float(), self.batch).backward()
        bad = int((~torch.isfinite(forecast)).sum()) + sum(
            int((~torch.isfinite(p.grad)).sum()) for p in model.parameters() if p.grad is not None
        )
        diff = gap(forecast.detach(), self.forecast(self.model), self.batch.target_mask)
        return at_most("max|diff|", diff, BF16_LIMIT, f"bf16 autocast vs float32; {bad} non-finite", also=bad == 0)

    def social(self, mode: str) -> CheckResult:
        encoder = self.model.encoder
        if not isinstance(encoder, LayerwiseEncoder):
            return skipped('not a LayerwiseEncoder: [model] social = "last" only')
        if mode == "interleaved" and encoder.num_layers < 2:
            return skipped("1 layer: interleaved needs 2")
        model = self.make(0, mode)
        gaps = [*self.alone_batched_maximum(model), self.junk_gap(model)] if self._padded() else []
        finite = bool(torch.isfinite(self.forecast(model)).all())
        note = "alone / batched / maximum / junk" if gaps else "finite (no padding declared)"
        return at_most("max|diff|", max(gaps, default=0.0), TOLERANCE, note, also=finite)
