"""Split-conformal calibration of a distribution head's quantiles on the validation split (``[head] calibrate``).

Each quantile is shifted, per horizon step, by the empirical quantile of its validation residuals (target −
quantile) at its own level, taken at the finite-sample rank ⌈(n + 1)·τ⌉ of the n observed targets: after the shift
a fraction τ of the validation targets lies at or below the τ quantile, and each central interval's two ends are
conformalized quantile regression's (CQR), each tail calibrated on its own. The shifts are the head's ``offsets``
buffer, saved with the model, so ``core.predict`` and the test use them.
"""

from __future__ import annotations

import math

import torch

from core.api import Head
from core.training.engine import Engine
from core.training.loaders import Loaders

MAX_ENTRIES = 500_000  # per horizon step: a larger validation split is calibrated on every k-th window


def requested(head: Head) -> bool:
    """Whether the head is a distribution head whose recipe asks for calibration."""
    return head.distribution and getattr(head.config, "calibrate", False)


@torch.no_grad()
def calibrate(engine: Engine, loaders: Loaders) -> torch.Tensor:
    """Set the engine's head's ``offsets`` ``[H, L]`` (z units) from the validation split; returns them."""
    head = engine.head
    head.offsets.zero_()
    windows = len(loaders.prepared.splits["val"])
    stride = max(1, math.ceil(windows * len(loaders.prepared.data.vd_ids) / MAX_ENTRIES))
    residuals, masks = [], []
    for batch, output in engine.outputs(loaders.evaluate("val", stride)):
        residual = batch.target[..., None] - engine.quantiles(output, batch)  # [B, H, N, L]
        residuals.append(residual.transpose(0, 1).flatten(1, 2).cpu())  # [H, B·N, L]
        masks.append(batch.target_mask.transpose(0, 1).flatten(1).cpu())
    residual, mask = torch.cat(residuals, 1), torch.cat(masks, 1)
    levels = torch.tensor(head.levels, dtype=residual.dtype)
    offsets = torch.zeros_like(head.offsets, device="cpu")
    for h in range(residual.shape[0]):  # one sort per horizon step
        observed = residual[h][mask[h]]  # [n, L]
        n = observed.shape[0]
        if n:
            rank = (torch.ceil((n + 1) * levels).long() - 1).clamp(0, n - 1)
            offsets[h] = observed.sort(0).values.gather(0, rank[None])[0]
    head.offsets.copy_(offsets)
    return offsets
