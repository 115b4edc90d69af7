"""Encoder ``lstm``: one ``nn.LSTM`` shared by every VD, VDs folded into the batch."""

from __future__ import annotations

import attrs
import torch
from attrs.validators import ge, gt, lt
from torch import nn

from core.api import Encoder, EncoderInput
from core.hookspecs import hookimpl


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
        hidden, _ = self.lstm(x.reshape(b * n, t, e))
        return hidden.reshape(b, n, t, e)


@hookimpl
def register_plugins(register):
    register(LSTMEncoder)
