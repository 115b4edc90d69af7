"""Plugins for the kit's own tests: a correct GRU and a correct quantile head, and plugins that each break their
contract in one way; and ``held_gru``, with which a test catches runs in their middle."""

from __future__ import annotations

import os
import time
from pathlib import Path

import attrs
import torch
from torch import nn

from social_xlstm import (
    Collator,
    DistributionHead,
    Encoder,
    EncoderInput,
    Head,
    Pooling,
    Windows,
    causal_over_padding,
    hookimpl,
)


class GruEncoder(Encoder):
    """A GRU shared by every VD, run over left-padded histories through ``causal_over_padding``."""

    name = "gru"
    honours_time_padding = True
    honours_vd_slots = True

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.out_dim = 8
        self.gru = nn.GRU(EncoderInput.num_features(spec), 8, batch_first=True)

    def forward(self, inputs):
        x = inputs.features()
        b, m, t, f = x.shape
        step_mask = None if inputs.step_mask is None else inputs.step_mask.reshape(b * m, t)
        return causal_over_padding(lambda s: self.gru(s)[0], x.reshape(b * m, t, f), step_mask).reshape(b, m, t, -1)


class NaiveGruEncoder(GruEncoder):
    """The same GRU reading the padded steps as if they were real (``step_mask`` ignored)."""

    name = "naive_gru"

    def forward(self, inputs):
        x = inputs.features()
        b, m, t, f = x.shape
        return self.gru(x.reshape(b * m, t, f))[0].reshape(b, m, t, -1)


class SlotBlindEncoder(GruEncoder):
    """Per-VD output scales indexed by slot position, not by the VD in the slot (``vd_index`` ignored)."""

    name = "slot_blind"

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.scale = nn.Parameter(torch.rand(spec.num_vds, 8) + 0.5)

    def forward(self, inputs):
        return super().forward(inputs) * self.scale[: inputs.values.shape[1], None]


class HeldGruEncoder(GruEncoder):
    """The GRU, which after its first epoch waits before each training batch while the file named by
    ``$HOLD_FILE`` exists (signals are still recorded meanwhile); ``$HOLD_FILE.held`` says that it waits."""

    name = "held_gru"

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.validated = False  # a validation has run in this process: the first epoch is over

    def forward(self, inputs):
        if not self.training:
            self.validated = True
        elif self.validated:
            hold = Path(os.environ.get("HOLD_FILE", ""))
            if hold.is_file():
                hold.with_name(hold.name + ".held").touch()
            while hold.is_file():
                time.sleep(0.05)
        return super().forward(inputs)


class NoOutDimEncoder(Encoder):
    name = "no_out_dim"

    def forward(self, inputs):
        return inputs.features()


class LeakyMeanPooling(Pooling):
    """The mean state of all VDs, absent ones included."""

    name = "leaky_mean"
    uses_positions = False

    def forward(self, hidden, node_mask):
        return hidden.mean(1, keepdim=True).expand_as(hidden)


def reversed_inputs(windows: Windows) -> Windows:
    """The VD axis of the inputs reversed (the targets kept)."""
    lengths = None if windows.lengths is None else windows.lengths.flip(1)
    return attrs.evolve(windows, values=windows.values.flip(2), observed=windows.observed.flip(2), lengths=lengths)


class SlotHidingCollator(Collator):
    """The VDs in reverse order in the slots, named by ``vd_index``, without declaring ``uses_vd_slots``."""

    name = "slot_hiding"
    layout = "centralized"

    def __call__(self, windows):
        b, n = windows.active.shape
        vd_index = torch.arange(n - 1, -1, -1).expand(b, n)
        return attrs.evolve(reversed_inputs(windows).centralized(self.spec.positions_xy), vd_index=vd_index)


class ReversedCollator(Collator):
    """The VD axis of the inputs reversed, without a ``vd_index`` saying so."""

    name = "reversed"
    layout = "centralized"

    def __call__(self, windows):
        reversed_values = attrs.evolve(windows, values=windows.values.flip(2), observed=windows.observed.flip(2))
        return reversed_values.centralized(self.spec.positions_xy)


class LinearQuantileHead(DistributionHead):
    """Every level's quantile straight from a linear layer, trained by the pinball loss; they may cross, and
    ``DistributionHead.quantiles`` sorts them."""

    name = "linear_quantile"

    def __init__(self, config, spec, dim):
        super().__init__(config, spec, dim)
        self.linear = nn.Linear(dim, spec.horizon * len(self.levels))

    def forward(self, features):
        b, n, _ = features.shape
        return self.linear(features).reshape(b, n, self.horizon, len(self.levels)).transpose(1, 2)

    def raw_quantiles(self, output):
        return output

    def loss(self, output, target):
        error = target[..., None] - output
        levels = self.level_values.to(output.dtype)
        return torch.maximum(levels * error, (levels - 1) * error).mean(-1)


class UnsortedQuantileHead(LinearQuantileHead):
    """The same, its quantiles (calibration offsets added) sorted by nothing: they cross."""

    name = "unsorted_quantile"

    def quantiles(self, output):
        return self.raw_quantiles(output) + self.offsets[:, None]


class MeanPointHead(LinearQuantileHead):
    """The same, its point forecast the mean of its quantiles instead of the median."""

    name = "mean_point"

    def point(self, output):
        return self.quantiles(output).mean(-1)


class BatchScaledHead(Head):
    """A point forecast whose loss is scaled by the spread of the batch's targets, masked ones included."""

    name = "batch_scaled"

    def __init__(self, config, spec, dim):
        super().__init__(config, spec, dim)
        self.linear = nn.Linear(dim, spec.horizon)

    def forward(self, features):
        return self.linear(features).transpose(1, 2)

    def loss(self, output, target):
        return (output - target).abs() / target.std()


@hookimpl
def register_plugins(register):
    for cls in (
        GruEncoder,
        NaiveGruEncoder,
        SlotBlindEncoder,
        HeldGruEncoder,
        NoOutDimEncoder,
        LeakyMeanPooling,
        SlotHidingCollator,
        ReversedCollator,
        LinearQuantileHead,
        UnsortedQuantileHead,
        MeanPointHead,
        BatchScaledHead,
    ):
        register(cls)
