"""The collator checks: the batch type of its layout, shapes and dtypes, every real input in its place and no
other, the flags it declares, and a fixed model's forecast the same as from ``centralized`` batches."""

from __future__ import annotations

import torch

from core.api import Batch, DatasetSpec, DistributedBatch, Windows
from core.host.construct import construct
from core.host.registry import PluginChoice, Registry
from social_xlstm.testing.data import BuiltinCollators, histories, last_steps, make_windows, reference, select
from social_xlstm.testing.forecaster import Check, forecaster
from social_xlstm.testing.result import TOLERANCE, CheckResult, at_most, gap

LAYOUTS = {"centralized": Batch, "distributed": DistributedBatch}


class CollatorChecks:
    def __init__(self, registry: Registry, choice: PluginChoice, spec: DatasetSpec):
        self.registry, self.spec = registry, spec
        self.collator = construct(registry, "collator", choice, spec)
        self.windows = make_windows(spec, histories(time=True, slots=True))
        self.raw = self.collator(self.windows)
        # the batch of 3, and sample 0 alone (short and narrow)
        self.cases = [
            (self.windows, self.raw.canonical()),
            (alone := select(self.windows, [0]), self.collator(alone).canonical()),
        ]

    def checks(self) -> list[Check]:
        return [
            ("layout", self.layout),
            ("shapes", self.shapes),
            ("content", self.content),
            ("flags", self.flags),
            ("forecast", self.forecast),
        ]

    def layout(self) -> CheckResult:
        layout, expected = self.collator.layout, LAYOUTS.get(self.collator.layout)
        problems = []
        if expected is None:
            problems.append(f"layout {layout!r} is none of {', '.join(LAYOUTS)}")
        elif not isinstance(self.raw, expected):
            problems.append(
                f"layout {layout!r} but the batch is a {type(self.raw).__name__}, expected {expected.__name__}"
            )
        if not isinstance(self.raw.canonical(), Batch):
            problems.append(f"canonical() gave a {type(self.raw.canonical()).__name__}, expected Batch")
        return at_most("problems", len(problems), 0, "; ".join(problems) or f"{layout}: {type(self.raw).__name__}")

    def shapes(self) -> CheckResult:
        problems = [
            problem for windows, batch in self.cases for problem in self.shape_problems(batch, windows.values.shape[0])
        ]
        note = (
            "; ".join(problems)
            or ", ".join(f"values {list(batch.values.shape)}" for _, batch in self.cases) + " (B, T, M, F)"
        )
        return at_most("problems", len(problems), 0, note)

    def shape_problems(self, batch: Batch, b: int) -> list[str]:
        spec = self.spec
        n, f, k = spec.num_vds, spec.num_features, spec.num_covariates
        _, t, m, _ = batch.values.shape if batch.values.dim() == 4 else (0, 0, 0, 0)
        expected = {
            "values": ((b, t, m, f), torch.float32),
            "observed": ((b, t, m, f), torch.bool),
            "covariates": ((b, t, k), torch.float32),
            "target": ((b, spec.horizon, n), torch.float32),
            "target_mask": ((b, spec.horizon, n), torch.bool),
            "node_mask": ((b, m), torch.bool),
            "step_mask": ((b, t, m), torch.bool),
            "vd_index": ((b, m), torch.long),
            "start": ((b,), torch.long),
            "future_covariates": ((b, spec.horizon, k), torch.float32),
            "target_profile": ((b, spec.horizon, n), torch.float32),
        }
        problems = [
            f"{name} {list(value.shape)} {value.dtype}, expected {list(shape)} {dtype}"
            for name, (shape, dtype) in expected.items()
            if (value := getattr(batch, name)) is not None and (tuple(value.shape) != shape or value.dtype != dtype)
        ]
        if not (0 < t <= spec.history and 0 < m <= n) or (batch.vd_index is None and m != n):
            problems.append(
                f"values [B, T, M, F] = {list(batch.values.shape)}: T ≤ {spec.history}, M ≤ {n}, M = {n} without "
                "vd_index"
            )
        if batch.future_covariates is None:
            problems.append("future_covariates missing: pass the windows' future_covariates on unchanged")
        if batch.vd_index is not None and not ((batch.vd_index >= 0) & (batch.vd_index < n)).all():
            problems.append("vd_index outside 0..N-1")
        return problems

    def content(self) -> CheckResult:
        """Each active VD in exactly one present slot; every real step's inputs those of the window (right-aligned
        in time), nothing observed elsewhere, the last step real; targets and their mask as in the windows."""
        counts: dict[str, int] = {}
        for windows, batch in self.cases:
            for what, count in self.content_problems(batch, windows).items():
                counts[what] = counts.get(what, 0) + count
        problems = [f"{count} {what}" for what, count in counts.items() if count]
        return at_most(
            "problems",
            sum(counts.values()),
            0,
            "; ".join(problems) or "varying histories and absent VDs, batched and alone",
        )

    def content_problems(self, batch: Batch, windows: Windows) -> dict[str, int]:
        b, t, m, f = batch.values.shape
        vds = torch.arange(m).expand(b, m) if batch.vd_index is None else batch.vd_index
        present = batch.node_mask[:, None].expand(b, t, m)
        real = present if batch.step_mask is None else present & batch.step_mask
        slots = torch.zeros(b, self.spec.num_vds, dtype=torch.long).scatter_add(1, vds, batch.node_mask.long())
        index = vds[:, None, :, None].expand(b, t, m, f)
        observed = windows.observed[:, -t:].gather(2, index) & real[..., None]
        return {
            "VDs not in exactly one present slot": int((slots != windows.active.long()).sum()),
            "present slots whose last step is padding": int((batch.node_mask & ~real[:, -1]).sum()),
            "observed flags unlike the window's": int((batch.observed != observed).sum()),
            "observed values unlike the window's": int(
                (batch.values != windows.values[:, -t:].gather(2, index))[observed].sum()
            ),
            "values not 0 where not observed": int((batch.values != 0)[~batch.observed].sum()),
            "targets unlike the window's": int((batch.target != windows.target)[windows.target_mask].sum()),
            "target_mask entries unlike the window's": int((batch.target_mask != windows.target_mask).sum()),
            "target-step covariates unlike the window's": differ(batch.future_covariates, windows.future_covariates),
            "target profile entries unlike the window's": differ(batch.target_profile, windows.target_profile),
        }

    def flags(self) -> CheckResult:
        """What a recipe is told the batches carry (``pads_time``, ``uses_vd_slots``) covers what they carry."""
        cls, problems = type(self.collator), []
        if not cls.uses_vd_slots and any(batch.vd_index is not None for _, batch in self.cases):
            problems.append("batches use VD slots (vd_index) but uses_vd_slots = False")
        fixed = self.collator(make_windows(self.spec, None)).canonical()
        if not cls.pads_time and fixed.step_mask is not None and not fixed.step_mask.all():
            problems.append("fixed-length windows get time padding but pads_time = False")
        return at_most(
            "problems",
            len(problems),
            0,
            "; ".join(problems) or f"pads_time = {cls.pads_time}, uses_vd_slots = {cls.uses_vd_slots}",
        )

    def forecast(self) -> CheckResult:
        """A fixed model forecasts the same from this collator's batch as from a ``centralized`` batch of the
        steps it keeps (all of them, unless an option such as ``max_sequence_length`` cuts the history)."""
        torch.manual_seed(0)
        encoder = reference(self.registry, "encoder", "lstm", self.spec, embedding_dim=8)
        pooling = lambda: reference(self.registry, "pooling", "radius", self.spec, 8)  # noqa: E731
        model = forecaster(encoder, pooling, "last", self.spec.horizon)
        batch = self.raw.canonical()
        kept = last_steps(self.windows, batch.values.shape[1])
        with torch.no_grad():
            mine, central = model(batch), model(BuiltinCollators.for_spec(self.registry, self.spec).centralized(kept))
        note = f"a fixed model's forecast vs from 'centralized' batches of the last {batch.values.shape[1]} steps"
        return at_most("max|diff|", gap(mine, central, self.windows.target_mask), TOLERANCE, note)


def differ(passed: torch.Tensor | None, given: torch.Tensor | None) -> int:
    """How many entries of what a collator ``passed`` on differ from what its windows ``given`` (all of them when
    one of the two is absent)."""
    if passed is None or given is None:
        return 0 if passed is given else (passed if passed is not None else given).numel()
    return int((passed != given).sum()) if passed.shape == given.shape else given.numel()
