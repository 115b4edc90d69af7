"""Collator ``centralized``: the whole network in one tensor, ``[B, T, N, F]`` + ``positions_xy [N, 2]``.

Variable-length windows are padded to the full history (the global maximum), every VD kept.
"""

from __future__ import annotations

from social_xlstm import Batch, Collator, Windows, hookimpl


class CentralizedCollator(Collator):
    name = "centralized"
    layout = "centralized"

    def __call__(self, windows: Windows) -> Batch:
        return windows.centralized(self.spec.positions_xy)  # variable-length windows: padded to the full history


@hookimpl
def register_plugins(register):
    register(CentralizedCollator)
