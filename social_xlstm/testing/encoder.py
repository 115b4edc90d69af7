"""The encoder checks: the states' shapes, both layouts, per-VD weights that follow their VD, the layer-wise
form, and the forecaster checks with no pooling (radius pooling inside the encoder in the social modes)."""

from __future__ import annotations

import torch

from core.api import DatasetSpec, EncoderInput, LayerwiseEncoder
from core.host.construct import construct
from core.host.registry import PluginChoice, Registry
from social_xlstm.testing.data import HISTORY, make_windows, reference, select
from social_xlstm.testing.forecaster import Check, ForecasterChecks, forecaster
from social_xlstm.testing.result import TOLERANCE, CheckResult, at_most, gap, skipped


class EncoderChecks:
    def __init__(self, registry: Registry, choice: PluginChoice, spec: DatasetSpec):
        self.cls, self.spec = registry.get("encoder", choice.name).cls, spec

        def make(seed: int, social: str):
            torch.manual_seed(seed)
            encoder = construct(registry, "encoder", choice, spec)
            pooling = "none" if social == "last" else "radius"
            return forecaster(
                encoder, lambda: reference(registry, "pooling", pooling, spec, encoder.out_dim), social, spec.horizon
            )

        self.common = ForecasterChecks(make, registry, spec, self.cls.honours_time_padding, self.cls.honours_vd_slots)
        self.model, self.encoder = self.common.model, self.common.model.encoder

    def checks(self) -> list[Check]:
        own = [
            ("shapes", self.shapes),
            ("layouts", self.layouts),
            ("vd_weights", self.vd_weights),
            ("layerwise", self.layerwise),
        ]
        return own + self.common.checks()

    def inputs(self) -> EncoderInput:
        return EncoderInput.from_batch(self.common.batch)

    def shapes(self) -> CheckResult:
        """On sample 0 alone: fewer slots and steps than the data has, where the encoder declares it honours them."""
        batch = self.common.collators.dynamic(select(self.common.windows, [0]))
        inputs = EncoderInput.from_batch(batch)
        b, m, t = inputs.values.shape[:3]
        e = self.encoder.out_dim
        with torch.no_grad():
            states = self.encoder(inputs)
        forecast = self.common.forecast(self.model, batch)
        problems = []
        if tuple(states.shape) not in ((b, m, t, e), (b, m, e)):
            problems.append(f"states {list(states.shape)}, expected [{b}, {m}, {t}, {e}] or [{b}, {m}, {e}]")
        if tuple(forecast.shape) != (b, self.spec.horizon, self.spec.num_vds):
            problems.append(
                f"forecast {list(forecast.shape)}, expected [{b}, {self.spec.horizon}, {self.spec.num_vds}]"
            )
        problems += [
            f"{what} dtype {x.dtype}"
            for what, x in (("states", states), ("forecast", forecast))
            if x.dtype != torch.float32
        ]
        note = "; ".join(problems) or f"states {list(states.shape)} (B, M, T, E), forecast {list(forecast.shape)}"
        return at_most("problems", len(problems), 0, note)

    def layouts(self) -> CheckResult:
        if not {"centralized", "distributed"} <= self.cls.layouts:
            return skipped(f"takes only the {', '.join(sorted(self.cls.layouts))} layout")
        collators, windows = self.common.collators, self.common.windows
        central = self.common.forecast(self.model, collators.centralized(windows))
        distributed = self.common.forecast(self.model, collators.distributed(windows).canonical())
        return at_most("max|diff|", gap(central, distributed), TOLERANCE, "centralized vs distributed batches")

    def vd_weights(self) -> CheckResult:
        """A sample holding VD j alone: its forecast reaches VD j's rows of every per-VD weight, and no other."""
        n = self.spec.num_vds
        per_vd = {name: p for name, p in self.encoder.named_parameters() if p.dim() and p.shape[0] == n}
        if not per_vd:
            return skipped(f"no parameter with a leading axis of N = {n} VDs")
        j = n - 2
        lengths = torch.zeros(1, n, dtype=torch.long)
        lengths[0, j] = HISTORY
        collators = self.common.collators
        collator = collators.dynamic if self.cls.honours_vd_slots else collators.centralized
        self.model.zero_grad()
        self.model(collator(make_windows(self.spec, lengths)))[..., j].pow(2).sum().backward()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.abs() for p in per_vd.values()]
        others = max(float(torch.cat([g[:j], g[j + 1 :]]).max()) for g in grads)
        own = max(float(g[j].max()) for g in grads)
        self.model.zero_grad()
        note = f"{len(per_vd)} per-VD parameter(s); VD {j} alone in slot 0, its own rows {own:.3g}"
        return at_most("max|grad|", others, 0.0, note, also=own > 0)

    def layerwise(self) -> CheckResult:
        if not isinstance(self.encoder, LayerwiseEncoder):
            return skipped("not a LayerwiseEncoder")
        layers = self.encoder.num_layers
        with torch.no_grad():
            diff = gap(self.encoder(self.inputs()), self.encoder.run_layers(self.inputs()))
        valid = isinstance(layers, int) and layers > 0
        return at_most("max|diff|", diff, TOLERANCE, f"forward vs run_layers, num_layers = {layers!r}", also=valid)
