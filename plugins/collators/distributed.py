"""Collator ``distributed``: per-VD dictionaries, ``{vd_id: [B, T, F]}`` features and so on.

"Distributed" here is the batch layout (spread over VDs), not multi-process training (``core.training.distributed``).
"""

from __future__ import annotations

import torch

from social_xlstm import Collator, DistributedBatch, hookimpl


class DistributedCollator(Collator):
    name = "distributed"
    layout = "distributed"

    def __call__(self, windows) -> DistributedBatch:
        ids = self.spec.vd_ids
        b, t, n, _ = windows.values.shape

        def per_vd(tensor: torch.Tensor, dim: int) -> dict[str, torch.Tensor]:
            return dict(zip(ids, tensor.unbind(dim)))  # views, no copies

        positions = self.spec.positions_xy
        return DistributedBatch(
            features=per_vd(windows.values, 2),
            observed=per_vd(windows.observed, 2),
            targets=per_vd(windows.target, 2),
            target_masks=per_vd(windows.target_mask, 2),
            vd_masks=per_vd(windows.active, 1),
            positions=None if positions is None else per_vd(positions[None, None].expand(b, t, n, 2), 2),
            covariates=windows.covariates,
            start=windows.start,
            step_masks=None if windows.lengths is None else per_vd(windows.step_mask(), 2),
            future_covariates=windows.future_covariates,
            target_profiles=None if windows.target_profile is None else per_vd(windows.target_profile, 2),
        )


@hookimpl
def register_plugins(register):
    register(DistributedCollator)
