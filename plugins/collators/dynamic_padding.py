"""Collator ``dynamic_padding``: pad to the batch, not to the dataset.

Time is padded on the left to the batch's longest history (so the last step is real for every VD) and cut
to ``max_sequence_length`` recent steps when set; the VD axis holds each sample's active VDs first, padded to
the batch's largest active set, with ``vd_index`` naming the VD in every slot. ``step_mask`` and ``node_mask``
mark what is real; targets keep all N VDs (inactive ones masked), so loss and metrics are unchanged.
"""

from __future__ import annotations

import attrs
import torch
from attrs.validators import gt, optional

from social_xlstm import Batch, Collator, Windows, hookimpl, real_steps


@attrs.frozen
class DynamicPaddingConfig:
    max_sequence_length: int | None = attrs.field(default=None, validator=optional(gt(0)))  # None = the history


class DynamicPaddingCollator(Collator):
    name = "dynamic_padding"
    Config = DynamicPaddingConfig
    layout = "centralized"
    pads_time = True
    uses_vd_slots = True

    def __call__(self, windows: Windows) -> Batch:
        b, t, n, f = windows.values.shape
        active = windows.active  # [B, N]
        lengths = windows.lengths if windows.lengths is not None else active * t
        if self.config.max_sequence_length:
            lengths = lengths.clamp(max=self.config.max_sequence_length)
        steps = max(int(lengths.max()), 1)
        if active.all():  # every VD in every sample: keep the VD axis as it is (no slot reordering)
            vd_index, slot_lengths, slots = None, lengths, n
        else:
            slots = max(int(active.sum(1).max()), 1)
            vd_index = torch.argsort((~active).to(torch.uint8), dim=1, stable=True)[:, :slots]  # active VDs first
            slot_lengths = lengths.gather(1, vd_index)
        step_mask = real_steps(slot_lengths, steps)  # [B, steps, M]

        def take(x: torch.Tensor) -> torch.Tensor:  # [B, T, N, F] → the last ``steps`` steps of the slots' VDs
            x = x[:, t - steps :]
            return (
                x if vd_index is None else x.gather(2, vd_index[:, None, :, None].expand(b, steps, slots, x.shape[-1]))
            )

        observed = take(windows.observed) & step_mask[..., None]
        return Batch(
            values=take(windows.values) * observed,
            observed=observed,
            covariates=windows.covariates[:, t - steps :],
            target=windows.target,
            target_mask=windows.target_mask & active[:, None],
            node_mask=active if vd_index is None else active.gather(1, vd_index),
            start=windows.start,
            positions_xy=self.spec.positions_xy,
            step_mask=step_mask,
            vd_index=vd_index,
            future_covariates=windows.future_covariates,
            target_profile=windows.target_profile,
        )


@hookimpl
def register_plugins(register):
    register(DynamicPaddingCollator)
