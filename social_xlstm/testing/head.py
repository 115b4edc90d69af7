"""The head checks: on generated features ``[B, N, D]`` and targets ``[B, H, N]`` (some masked), the output's and
the loss's shapes, a loss that is elementwise, differentiable and blind to masked targets, and for a distribution
head its levels, quantiles that never cross (extreme features, random calibration offsets), a point forecast that
is the median and offsets saved with it; a short training on targets of known spread; then the forecaster checks
around a fixed 1-layer ``lstm`` with this head."""

from __future__ import annotations

import functools
import io

import torch

from core.api import DatasetSpec, Head
from core.heads import central_intervals
from core.host.construct import construct
from core.host.registry import PluginChoice, Registry
from core.training.metrics import masked_mean
from social_xlstm.testing.data import reference
from social_xlstm.testing.forecaster import Check, ForecasterChecks, forecaster
from social_xlstm.testing.result import TOLERANCE, CheckResult, at_most, gap, skipped

DIM = 16  # D, the size of the generated features
BATCH = 4
NOISE = 0.5  # the spread of the targets around their mean in the learning check (z units)
TRAIN_BATCH, FRESH_BATCH, STEPS, LR = 256, 512, 300, 0.05
COVERAGE_MARGIN = 10.0  # percentage points around the interval's nominal coverage


class HeadChecks:
    def __init__(self, registry: Registry, choice: PluginChoice, spec: DatasetSpec):
        self.spec = spec
        self.cls = registry.get("head", choice.name).cls
        self.build_head = lambda dim: construct(registry, "head", choice, spec, dim)
        self.head = self.make_head(0)
        g = torch.Generator().manual_seed(2)
        b, h, n = BATCH, spec.horizon, spec.num_vds
        self.features = torch.randn(b, n, DIM, generator=g)
        self.target = torch.randn(b, h, n, generator=g)
        self.mask = torch.rand(b, h, n, generator=g) > 0.3
        self.junk = torch.randn(b, h, n, generator=g) * 100 * ~self.mask  # added to the masked targets only

        def make(seed: int, social: str):
            torch.manual_seed(seed)
            encoder = reference(registry, "encoder", "lstm", spec, embedding_dim=8, num_layers=1)
            return forecaster(
                encoder, lambda: reference(registry, "pooling", "none", spec, 8), social, spec.horizon, self.build_head
            )

        self.common = ForecasterChecks(make, registry, spec, time=True, slots=True)

    def checks(self) -> list[Check]:
        own = [
            ("shapes", self.shapes),
            ("loss", self.loss),
            ("loss.gradient", self.loss_gradient),
            ("mask", self.masked_targets),
            ("levels", self.levels),
            ("point", self.point),
            ("quantiles", self.quantiles),
            ("offsets", self.offsets),
            ("learns.point", self.learns_point),
            ("learns.coverage", self.learns_coverage),
        ]
        return own + [(name, check) for name, check in self.common.checks() if not name.startswith("social.")]

    def make_head(self, seed: int) -> Head:
        torch.manual_seed(seed)
        return self.build_head(DIM).eval()

    @property
    def distribution(self) -> bool:
        return bool(self.cls.distribution)

    def output(self, head: Head, features: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            return head(self.features if features is None else features)

    def shapes(self) -> CheckResult:
        b, h, n = self.target.shape
        output = self.output(self.head)
        problems = []
        if output.dim() not in (3, 4) or output.shape[:3] != (b, h, n):
            problems.append(f"output {list(output.shape)}, expected [{b}, {h}, {n}] or [{b}, {h}, {n}, P]")
        with torch.no_grad():
            named = {"output": output, "point": self.head.point(output)}
            if self.distribution:
                named["quantiles"] = self.head.quantiles(output)
        if named["point"].shape != (b, h, n):
            problems.append(f"point {list(named['point'].shape)}, expected [{b}, {h}, {n}]")
        if self.distribution and named["quantiles"].shape != (b, h, n, len(self.head.levels)):
            problems.append(
                f"quantiles {list(named['quantiles'].shape)}, expected [{b}, {h}, {n}, {len(self.head.levels)}] "
                f"({len(self.head.levels)} levels)"
            )
        problems += [f"{what} dtype {x.dtype}" for what, x in named.items() if x.dtype != torch.float32]
        problems += [f"{what} not finite" for what, x in named.items() if not torch.isfinite(x).all()]
        note = "; ".join(problems) or ", ".join(f"{what} {list(x.shape)}" for what, x in named.items())
        return at_most("problems", len(problems), 0, note)

    def loss(self) -> CheckResult:
        """Elementwise and finite (a likelihood's may be negative)."""
        loss = self.head.loss(self.output(self.head), self.target)
        problems = []
        if loss.shape != self.target.shape:
            problems.append(f"loss {list(loss.shape)}, expected {list(self.target.shape)} (elementwise)")
        bad = int((~torch.isfinite(loss)).sum())
        if bad:
            problems.append(f"{bad} non-finite")
        note = "; ".join(problems) or f"[B, H, N] elementwise, from {float(loss.min()):.3g} to {float(loss.max()):.3g}"
        return at_most("problems", len(problems), 0, note)

    def masked_loss(self, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The masked mean loss of a fresh head (seed 0, train mode) on ``target`` and its parameters' gradients
        (None where a parameter got none)."""
        head = self.make_head(0).train()
        loss = masked_mean(head.loss(head(self.features), target), self.mask)
        loss.backward()
        return loss.detach(), {name: p.grad for name, p in head.named_parameters() if p.requires_grad}

    def loss_gradient(self) -> CheckResult:
        loss, grads = self.masked_loss(self.target)
        without = [name for name, grad in grads.items() if grad is None or not torch.isfinite(grad).all()]
        if not grads:
            return at_most("parameters", 1, 0, "the head has no trainable parameter")
        note = (
            f"without a finite gradient: {', '.join(without[:4])}"
            if without
            else f"{len(grads)} parameter(s), through masked_mean(loss, mask) = {float(loss):.3g}"
        )
        return at_most("parameters", len(without), 0, note, also=bool(torch.isfinite(loss)))

    def masked_targets(self) -> CheckResult:
        """Junk (×100) in the masked targets changes neither the masked loss nor any gradient."""
        loss, grads = self.masked_loss(self.target)
        junk_loss, junk_grads = self.masked_loss(self.target + self.junk)
        pairs = [(grads[name], junk_grads[name]) for name in grads]
        diffs = [gap(loss, junk_loss)] + [gap(a, b) for a, b in pairs if a is not None and b is not None]
        return at_most("max|diff|", max(diffs), TOLERANCE, "masked loss and gradients, junk in the masked targets")

    def levels(self) -> CheckResult:
        if not self.distribution:
            return skipped("a point head: no levels")
        levels = self.head.levels
        problems = []
        if not levels or not all(isinstance(level, float) and 0.0 < level < 1.0 for level in levels):
            problems.append(f"levels {levels!r}: floats strictly between 0 and 1 expected")
        elif any(b <= a for a, b in zip(levels, levels[1:], strict=False)):
            problems.append(f"levels {list(levels)} not strictly increasing")
        if 0.5 not in levels:
            problems.append(f"levels {list(levels)} lack 0.5 (the median, the point forecast MAE scores)")
        return at_most("problems", len(problems), 0, "; ".join(problems) or f"{list(levels)}")

    def point(self) -> CheckResult:
        if not self.distribution:
            return skipped("a point head: its point forecast is its own")
        if 0.5 not in self.head.levels:
            return at_most("max|diff|", float("nan"), TOLERANCE, "no 0.5 level to compare with")
        output = self.output(self.head)
        with torch.no_grad():
            median = self.head.quantiles(output)[..., self.head.levels.index(0.5)]
            return at_most("max|diff|", gap(self.head.point(output), median), TOLERANCE, "point vs the 0.5 quantile")

    def random_offsets(self, head: Head, seed: int) -> bool:
        """Give ``head`` random calibration offsets (they cross: neighbours shift in opposite directions); False
        if it has no ``offsets`` buffer ``[H, L]``."""
        offsets = getattr(head, "offsets", None)
        shape = (self.spec.horizon, len(head.levels))
        if not isinstance(offsets, torch.Tensor) or offsets.shape != shape:
            return False
        with torch.no_grad():
            offsets.copy_(torch.randn(shape, generator=torch.Generator().manual_seed(seed)))
        return True

    def quantiles(self) -> CheckResult:
        """The largest fall between neighbouring levels: on the features, on features ×100, and with random
        offsets (as calibration sets them)."""
        if not self.distribution:
            return skipped("a point head: no quantiles")
        cases = {"features": (self.head, self.features), "features x100": (self.head, self.features * 100)}
        calibrated = self.make_head(0)
        if self.random_offsets(calibrated, 3):
            cases["random offsets"] = (calibrated, self.features)
        crossing, problems = 0.0, []
        for what, (head, features) in cases.items():
            with torch.no_grad():
                q = head.quantiles(head(features))
            if not torch.isfinite(q).all():
                problems.append(f"non-finite with {what}")
            elif q.shape[-1] > 1:
                fall = float((q[..., :-1] - q[..., 1:]).max())
                if fall > 0:
                    problems.append(f"cross with {what}")
                crossing = max(crossing, fall)
        note = "; ".join(problems) or f"never cross: {', '.join(cases)}"
        return at_most("max crossing", crossing, 0.0, note, also=not problems)

    def offsets(self) -> CheckResult:
        """Random offsets saved with the head's state dict and loaded into a fresh head of another seed: the same
        quantiles."""
        if not self.distribution:
            return skipped("a point head: nothing to calibrate")
        head = self.make_head(0)
        if not self.random_offsets(head, 4):
            shape = [self.spec.horizon, len(head.levels)]
            found = getattr(head, "offsets", None)
            found = list(found.shape) if isinstance(found, torch.Tensor) else repr(found)
            return at_most("max|diff|", float("nan"), TOLERANCE, f"no 'offsets' buffer {shape} (found {found})")
        if "offsets" not in head.state_dict():
            return at_most("max|diff|", float("nan"), TOLERANCE, "'offsets' is not in the state dict")
        other = self.make_head(1)
        with torch.no_grad():
            before = gap(other.quantiles(other(self.features)), head.quantiles(head(self.features)))
        buffer = io.BytesIO()
        torch.save(head.state_dict(), buffer)
        buffer.seek(0)
        other.load_state_dict(torch.load(buffer, weights_only=True))
        with torch.no_grad():
            after = gap(other.quantiles(other(self.features)), head.quantiles(head(self.features)))
        note = f"quantiles with random offsets, saved, loaded into a head of another seed ({before:.3g} before)"
        return at_most("max|diff|", after, TOLERANCE, note)

    @functools.cached_property
    def learned(self) -> tuple[Head, Head, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """An untrained head, the same after ``STEPS`` Adam steps on targets = a linear map of the features + noise
        of spread ``NOISE`` (20% masked, 0 there as in the data), and fresh samples ``(features, mean, target)``."""
        g = torch.Generator().manual_seed(5)
        weights = torch.randn(DIM, self.spec.horizon, generator=g) / DIM**0.5

        def samples(b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            features = torch.randn(b, self.spec.num_vds, DIM, generator=g)
            mean = (features @ weights).transpose(1, 2)  # [B, H, N]
            return features, mean, mean + NOISE * torch.randn(mean.shape, generator=g)

        features, _, target = samples(TRAIN_BATCH)
        mask = torch.rand(target.shape, generator=g) > 0.2
        target = target * mask
        fresh = samples(FRESH_BATCH)
        untrained, head = self.make_head(0), self.make_head(0).train()
        optimiser = torch.optim.Adam(head.parameters(), lr=LR)
        for _ in range(STEPS):
            optimiser.zero_grad()
            masked_mean(head.loss(head(features), target), mask).backward()
            optimiser.step()
        return untrained, head.eval(), fresh

    def learns_point(self) -> CheckResult:
        """The point forecast's MAE to the targets' mean on fresh samples, trained / untrained."""
        untrained, trained, (features, mean, _) = self.learned
        with torch.no_grad():
            before = float((untrained.point(untrained(features)) - mean).abs().mean())
            after = float((trained.point(trained(features)) - mean).abs().mean())
        note = f"MAE to the mean on fresh samples: {before:.3g} untrained, {after:.3g} after {STEPS} Adam steps"
        return at_most("trained/untrained", after / max(before, 1e-12), 0.5, note)

    def learns_coverage(self) -> CheckResult:
        """The central interval nearest 80% covers its share of fresh targets, within ``COVERAGE_MARGIN``."""
        if not self.distribution:
            return skipped("a point head: no intervals")
        intervals = central_intervals(tuple(self.head.levels))
        if not intervals:
            return skipped(f"levels {list(self.head.levels)} hold no symmetric pair: no central interval")
        low, high, percent = min(intervals, key=lambda interval: abs(interval[2] - 80))
        _, trained, (features, _, target) = self.learned
        with torch.no_grad():
            q = trained.quantiles(trained(features))
        covered = 100 * float(((target >= q[..., low]) & (target <= q[..., high])).float().mean())
        note = f"{covered:.1f}% of fresh targets (noise N(0, {NOISE}²)) in the central {percent}% interval"
        return at_most(f"|coverage - {percent}|", abs(covered - percent), COVERAGE_MARGIN, note)
