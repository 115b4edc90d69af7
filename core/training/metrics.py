"""Masked metrics: missing targets count nowhere (not in the loss, not in MAE/RMSE/MAPE, not in the scores of a
distribution's quantiles)."""

from __future__ import annotations

import re

import scoringrules
import torch

from core.heads import central_intervals

HORIZONS = (3, 6, 12)
METRICS = ("mae", "rmse", "mape")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over the entries where ``mask`` is True (0 where none is)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def masked_mae(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the entries where ``mask`` is True."""
    return masked_mean((pred - target).abs(), mask)


def widest_intervals(values: dict[str, float], count: int = 2) -> list[int]:
    """The percents of the ``count`` widest central intervals whose coverage ``values`` (a ``compute()`` result,
    e.g. metrics.json's ``test``) holds, widest first: [90, 80] for the default levels, [] for a point forecast."""
    percents = (int(key[len("coverage") : -len("@avg")]) for key in values if re.fullmatch(r"coverage\d+@avg", key))
    return sorted(percents, reverse=True)[:count]


class HorizonMetrics:
    """MAE, RMSE and MAPE (%) at horizon steps 3, 6, 12 and on average, accumulated over batches; MAE per
    horizon step and per VD too. With quantile ``levels`` (a distribution's forecast): per horizon step also the
    coverage (%) and mean width of each central interval (``coverage90@12``, ``width90@12``: the 0.05 and 0.95
    levels), the CRPS from the quantiles (``crps@12``; scoringrules' ``crps_quantile``: twice the mean pinball
    loss over the levels) and the observed frequency below each level (``reliability()``)."""

    def __init__(self, horizon: int, min_abs_target: float = 1e-3, levels: tuple[float, ...] = ()):
        self.horizon = horizon
        self.min_abs_target = min_abs_target
        self.levels = levels
        self.sums = torch.zeros(5, horizon, dtype=torch.float64)  # abs, squared, ape, count, ape count
        self.vd_sums: torch.Tensor | None = None  # abs, count per VD [2, N] (sized by the first batch)
        self.below = torch.zeros(horizon, len(levels), dtype=torch.float64)  # targets at or below each quantile
        self.quantile_sums = torch.zeros(horizon, len(levels), dtype=torch.float64)
        self.crps_sums = torch.zeros(horizon, dtype=torch.float64)

    @torch.no_grad()
    def update(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, quantiles: torch.Tensor | None = None
    ) -> None:
        """``pred``, ``target``, ``mask``: ``[B, H, N]`` in the data's units; ``quantiles`` ``[B, H, N, L]`` at
        ``levels`` (needed when there are levels)."""
        pred, target = pred.double(), target.double()
        ape_mask = mask & (target.abs() > self.min_abs_target)
        err = (pred - target).where(mask, 0.0)
        ape = (err.abs() / target.abs().clamp_min(self.min_abs_target)).where(ape_mask, 0.0)
        self.sums += torch.stack([err.abs(), err.square(), ape, mask.double(), ape_mask.double()]).sum((1, 3)).cpu()
        per_vd = torch.stack([err.abs(), mask.double()]).sum((1, 2)).cpu()
        self.vd_sums = per_vd if self.vd_sums is None else self.vd_sums + per_vd
        if self.levels:
            q, weight = quantiles.double(), mask.double()[..., None]
            self.below += ((target[..., None] <= q) * weight).sum((0, 2)).cpu()
            self.quantile_sums += (q * weight).sum((0, 2)).cpu()
            levels = torch.tensor(self.levels, dtype=q.dtype, device=q.device)
            crps = scoringrules.crps_quantile(
                target.where(mask, 0.0), q.where(mask[..., None], 0.0), levels, backend="torch"
            )
            self.crps_sums += crps.where(mask, 0.0).sum((0, 2)).cpu()

    def mae_by_step(self) -> list[float]:
        """MAE at every horizon step 1..H (NaN where nothing was observed)."""
        return (self.sums[0] / self.sums[3]).tolist()

    def mae_by_vd(self) -> list[float]:
        """MAE of every VD over all horizon steps, in the data's VD order (NaN where nothing was observed)."""
        return [] if self.vd_sums is None else (self.vd_sums[0] / self.vd_sums[1]).tolist()

    def reliability(self) -> list[list[float]]:
        """``[H][L]``: the fraction of targets at or below each level's quantile, per horizon step (the level itself
        for a calibrated forecast)."""
        return (self.below / self.sums[3, :, None]).tolist()

    def compute(self) -> dict[str, float]:
        steps = {f"@{h}": slice(h - 1, h) for h in HORIZONS if h <= self.horizon}
        steps["@avg"] = slice(None)
        result = {}
        for label, s in steps.items():
            abs_, sq, ape, count, ape_count = self.sums[:, s].sum(1).tolist()
            result[f"mae{label}"] = abs_ / count if count else float("nan")
            result[f"rmse{label}"] = (sq / count) ** 0.5 if count else float("nan")
            result[f"mape{label}"] = 100.0 * ape / ape_count if ape_count else float("nan")
            if not self.levels:
                continue
            below, quantile_sums = self.below[s].sum(0), self.quantile_sums[s].sum(0)
            for low, high, percent in central_intervals(self.levels):
                covered = float(below[high] - below[low])
                result[f"coverage{percent}{label}"] = 100.0 * covered / count if count else float("nan")
                width = float(quantile_sums[high] - quantile_sums[low])
                result[f"width{percent}{label}"] = width / count if count else float("nan")
            result[f"crps{label}"] = float(self.crps_sums[s].sum()) / count if count else float("nan")
        return result


def floor(mae_by_step: dict[str, list[float]]) -> str:
    """Where the model loses to a baseline, from the test MAE at every horizon step of the model and of each
    baseline (metrics.json's ``test_mae_by_step``): ``"worse than historical_average at @9..@12"``, one clause per
    baseline it loses to, or ``"not worse than any baseline at any horizon step"``; a baseline without MAE
    (NaN: e.g. seasonal_naive on data shorter than two weeks) is left out."""
    model = mae_by_step["model"]
    clauses = []
    for name, baseline in mae_by_step.items():
        worse = [h for h, (m, b) in enumerate(zip(model, baseline), 1) if m > b]  # NaN compares False
        if name != "model" and worse:
            clauses.append(f"worse than {name} at {step_ranges(worse)}")
    return "; ".join(clauses) or "not worse than any baseline at any horizon step"


def step_ranges(steps: list[int]) -> str:
    """Horizon steps as runs: [1, 2, 3, 9, 10, 12] → "@1..@3, @9..@10, @12"."""
    runs: list[list[int]] = []
    for step in steps:
        if runs and step == runs[-1][-1] + 1:
            runs[-1].append(step)
        else:
            runs.append([step])
    return ", ".join(f"@{run[0]}" if len(run) == 1 else f"@{run[0]}..@{run[-1]}" for run in runs)
