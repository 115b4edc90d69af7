"""Collator ``centralized``: the whole network in one tensor, ``[B, T, N, F]`` + ``positions_xy [N, 2]``.

Variable-length windows are padded to the full history (the global maximum), every VD kept.
"""

from __future__ import annotations

from social_xlstm import Batch, Collator, hookimpl


class CentralizedCollator(Collator):
    name = "centralized"
    layout = "centralized"

    def __call__(self, windows) -> Batch:
        return Batch(
            values=windows.values,
            observed=windows.observed,
            covariates=windows.covariates,
            target=windows.target,
            target_mask=windows.target_mask,
            node_mask=windows.active,
            start=windows.start,
            positions_xy=self.spec.positions_xy,
            step_mask=windows.step_mask(),  # variable-length windows: padded to the full history
        )


@hookimpl
def register_plugins(register):
    register(CentralizedCollator)
