"""Masked metrics: missing targets count nowhere (not in the loss, not in MAE/RMSE/MAPE)."""

from __future__ import annotations

import torch

HORIZONS = (3, 6, 12)
METRICS = ("mae", "rmse", "mape")


def masked_mae(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the entries where ``mask`` is True."""
    mask = mask.to(pred.dtype)
    return ((pred - target).abs() * mask).sum() / mask.sum().clamp_min(1.0)


class HorizonMetrics:
    """MAE, RMSE and MAPE (%) at horizon steps 3, 6, 12 and on average, accumulated over batches; MAE per
    horizon step and per VD too."""

    def __init__(self, horizon: int, min_abs_target: float = 1e-3):
        self.horizon = horizon
        self.min_abs_target = min_abs_target
        self.sums = torch.zeros(5, horizon, dtype=torch.float64)  # abs, squared, ape, count, ape count
        self.vd_sums: torch.Tensor | None = None  # abs, count per VD [2, N] (sized by the first batch)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        """``pred``, ``target``, ``mask``: ``[B, H, N]`` in the data's units."""
        pred, target = pred.double(), target.double()
        ape_mask = mask & (target.abs() > self.min_abs_target)
        err = (pred - target).where(mask, 0.0)
        ape = (err.abs() / target.abs().clamp_min(self.min_abs_target)).where(ape_mask, 0.0)
        self.sums += torch.stack([err.abs(), err.square(), ape, mask.double(), ape_mask.double()]).sum((1, 3)).cpu()
        per_vd = torch.stack([err.abs(), mask.double()]).sum((1, 2)).cpu()
        self.vd_sums = per_vd if self.vd_sums is None else self.vd_sums + per_vd

    def mae_by_step(self) -> list[float]:
        """MAE at every horizon step 1..H (NaN where nothing was observed)."""
        return (self.sums[0] / self.sums[3]).tolist()

    def mae_by_vd(self) -> list[float]:
        """MAE of every VD over all horizon steps, in the data's VD order (NaN where nothing was observed)."""
        return [] if self.vd_sums is None else (self.vd_sums[0] / self.vd_sums[1]).tolist()

    def compute(self) -> dict[str, float]:
        steps = {f"@{h}": slice(h - 1, h) for h in HORIZONS if h <= self.horizon}
        steps["@avg"] = slice(None)
        result = {}
        for label, s in steps.items():
            abs_, sq, ape, count, ape_count = self.sums[:, s].sum(1).tolist()
            result[f"mae{label}"] = abs_ / count if count else float("nan")
            result[f"rmse{label}"] = (sq / count) ** 0.5 if count else float("nan")
            result[f"mape{label}"] = 100.0 * ape / ape_count if ape_count else float("nan")
        return result
