"""The pooling checks: the context's shape, zeros for a VD with no neighbour, absent VDs that neither count nor
get gradient, what it reports to TensorBoard, and the forecaster checks around a fixed 2-layer ``lstm``."""

from __future__ import annotations

import math

import torch

from core.api import DatasetSpec
from core.host.construct import construct
from core.host.registry import PluginChoice, Registry
from social_xlstm.testing.data import N_VDS, reference
from social_xlstm.testing.forecaster import Check, ForecasterChecks, forecaster
from social_xlstm.testing.result import TOLERANCE, CheckResult, at_most, gap

DIM = 8  # the fixed encoder's state size


class PoolingChecks:
    def __init__(self, registry: Registry, choice: PluginChoice, spec: DatasetSpec):
        self.spec = spec

        def make(seed: int, social: str):
            torch.manual_seed(seed)
            encoder = reference(registry, "encoder", "lstm", spec, embedding_dim=DIM, num_layers=2)
            return forecaster(encoder, lambda: construct(registry, "pooling", choice, spec, DIM), social, spec.horizon)

        self.common = ForecasterChecks(make, registry, spec, time=True, slots=True)
        self.pooling = self.common.model.pooling
        self.hidden = torch.randn(4, N_VDS, DIM, generator=torch.Generator().manual_seed(2))
        # every VD; some absent; VD 1 alone (no present neighbour); nobody
        self.node_mask = torch.tensor(
            [[1] * N_VDS, [1, 0, 1, 1, 0, 0, 1, 0, 1], [0, 1, 0, 0, 0, 0, 0, 0, 0], [0] * N_VDS], dtype=torch.bool
        )

    def checks(self) -> list[Check]:
        own = [("shapes", self.shapes), ("isolated", self.isolated), ("absent.junk", self.absent_junk)]
        return own + [("absent.gradient", self.absent_gradient), ("summary", self.summary), *self.common.checks()]

    def context(self, hidden: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.pooling(hidden, self.node_mask)

    def shapes(self) -> CheckResult:
        context = self.context(self.hidden)
        forecast = self.common.forecast(self.common.model)
        problems = []
        if context.shape != self.hidden.shape:
            problems.append(f"context {list(context.shape)}, expected {list(self.hidden.shape)}")
        if context.dtype != torch.float32:
            problems.append(f"context dtype {context.dtype}")
        if forecast.shape[1:] != (self.spec.horizon, self.spec.num_vds):
            problems.append(f"forecast {list(forecast.shape)}, expected [B, {self.spec.horizon}, {self.spec.num_vds}]")
        return at_most("problems", len(problems), 0, "; ".join(problems) or f"context {list(context.shape)} (B, N, E)")

    def isolated(self) -> CheckResult:
        context = self.context(self.hidden)
        finite = bool(torch.isfinite(context).all())
        return at_most(
            "max|context|",
            context[2, 1].abs().max(),
            0.0,
            "of a VD with no present neighbour (finite everywhere)",
            also=finite,
        )

    def absent_junk(self) -> CheckResult:
        junk = (
            self.hidden
            + torch.randn(self.hidden.shape, generator=torch.Generator().manual_seed(3))
            * 100
            * ~self.node_mask[..., None]
        )
        return at_most(
            "max|diff|",
            gap(self.context(junk), self.context(self.hidden), self.node_mask),
            TOLERANCE,
            "present VDs' context, junk in absent VDs",
        )

    def absent_gradient(self) -> CheckResult:
        hidden = self.hidden.clone().requires_grad_()
        weights = torch.randn(self.hidden.shape, generator=torch.Generator().manual_seed(4))
        context = self.pooling(hidden, self.node_mask)
        if context.requires_grad:
            (context * weights * self.node_mask[..., None]).sum().backward()
        grad = torch.zeros(self.node_mask.shape) if hidden.grad is None else hidden.grad.abs().amax(-1)
        return at_most(
            "max|grad|",
            grad[~self.node_mask].max(),
            0.0,
            f"of absent VDs' states; present {float(grad[self.node_mask].max()):.3g}",
        )

    def summary(self) -> CheckResult:
        """``summary()`` gives finite floats by name; ``edges()`` None or ``(index, weights)`` ``[N, K]``, after
        an evaluation pass."""
        self.common.forecast(self.common.model)
        scalars, edges = self.pooling.summary(), self.pooling.edges()
        problems = [
            f"summary {key!r}: {value!r}"
            for key, value in scalars.items()
            if not (isinstance(key, str) and isinstance(value, float) and math.isfinite(value))
        ]
        if edges is not None:
            index, weights = edges
            n = self.spec.num_vds
            if (
                index.dim() != 2
                or index.shape[0] != n
                or index.dtype not in (torch.long, torch.int32)
                or not ((index >= 0) & (index < n)).all()
            ):
                problems.append(f"edges index {list(index.shape)} {index.dtype}, expected [N, K] VD indices")
            if weights.shape != index.shape or not torch.isfinite(weights).all():
                problems.append(f"edges weights {list(weights.shape)}, expected finite [N, K]")
        note = (
            "; ".join(problems)
            or f"summary {sorted(scalars)}, edges {'none' if edges is None else list(edges[0].shape)}"
        )
        return at_most("problems", len(problems), 0, note)
