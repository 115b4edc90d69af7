"""Collator ``centralized``: the whole network in one tensor, ``[B, T, N, F]`` + ``positions_xy [N, 2]``."""

from __future__ import annotations

import attrs
import torch

from core.api import Batch, Collator
from core.hookspecs import hookimpl


@attrs.frozen
class CentralizedConfig:
    pass


class CentralizedCollator(Collator):
    name = "centralized"
    Config = CentralizedConfig
    layout = "centralized"

    def __call__(self, windows) -> Batch:
        b, _, n, _ = windows.values.shape
        return Batch(
            values=windows.values,
            observed=windows.observed,
            covariates=windows.covariates,
            target=windows.target,
            target_mask=windows.target_mask,
            node_mask=torch.ones(b, n, dtype=torch.bool),
            start=windows.start,
            positions_xy=self.spec.positions_xy,
        )


@hookimpl
def register_plugins(register):
    register(CentralizedCollator)
