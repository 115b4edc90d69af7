"""Encoder ``lstm``: one ``nn.LSTM`` shared by every VD, VDs folded into the batch; padded histories packed."""

from __future__ import annotations

import attrs
import torch
from attrs.validators import ge, gt, lt
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from core.api import Encoder, EncoderInput
from core.hookspecs import hookimpl
from core.sequence import causal_over_padding


@attrs.frozen
class LSTMConfig:
    embedding_dim: int = attrs.field(default=64, validator=gt(0))
    num_layers: int = attrs.field(default=2, validator=gt(0))
    dropout: float = attrs.field(default=0.0, validator=[ge(0.0), lt(1.0)])


class LSTMEncoder(Encoder):
    name = "lstm"
    Config = LSTMConfig

    def __init__(self, config: LSTMConfig, spec):
        super().__init__(config, spec)
        self.out_dim = config.embedding_dim
        self.embed = nn.Linear(EncoderInput.num_features(spec), config.embedding_dim)
        self.lstm = nn.LSTM(
            config.embedding_dim, config.embedding_dim, config.num_layers, batch_first=True, dropout=config.dropout if config.num_layers > 1 else 0.0
        )

    def forward(self, inputs: EncoderInput) -> torch.Tensor:
        x = self.embed(inputs.features())
        b, n, t, e = x.shape
        x = x.reshape(b * n, t, e)
        if inputs.step_mask is None:
            return self.lstm(x)[0].reshape(b, n, t, e)
        step_mask = inputs.step_mask.reshape(b * n, t)
        lengths = step_mask.sum(-1).clamp(min=1).cpu()  # an absent VD runs one (masked) step

        def packed(right_padded: torch.Tensor) -> torch.Tensor:  # the LSTM over each VD's real steps only
            sequences = pack_padded_sequence(right_padded, lengths, batch_first=True, enforce_sorted=False)
            return pad_packed_sequence(self.lstm(sequences)[0], batch_first=True, total_length=t)[0]

        return causal_over_padding(packed, x, step_mask).reshape(b, n, t, e)


@hookimpl
def register_plugins(register):
    register(LSTMEncoder)
