"""Encoder ``lstm``: one ``nn.LSTM`` shared by every VD, VDs folded into the batch; padded histories packed."""

from __future__ import annotations

import attrs
import torch
from attrs.validators import ge, gt, lt
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from core.api import Encoder, EncoderInput
from core.hookspecs import hookimpl
from core.sequence import roll_time


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
        # time padding: a packed sequence per VD, so the LSTM runs over real steps only
        lengths = inputs.step_mask.reshape(b * n, t).sum(-1)
        packed = pack_padded_sequence(roll_time(x, lengths - t), lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        hidden = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=t)[0]
        hidden = roll_time(hidden, t - lengths) * (lengths > 0)[:, None, None]  # back to left padding
        return hidden.reshape(b, n, t, e)


@hookimpl
def register_plugins(register):
    register(LSTMEncoder)
