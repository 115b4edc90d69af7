"""Encoder ``lstm``: a stack of ``nn.LSTM`` layers shared by every VD, VDs folded into the batch.

Padded histories (left padding) run right-aligned through ``causal_over_padding``: every real step is computed
from real steps only, and padded steps are zero. Layerwise, so the social modes can pool between layers. Under
bf16 autocast on a CPU the LSTM layers run in float32 (``run_lstm``).
"""

from __future__ import annotations

import attrs
import torch
from attrs.validators import ge, gt, lt
from torch import nn

from social_xlstm import EncoderInput, LayerwiseEncoder, causal_over_padding, hookimpl


@attrs.frozen
class LSTMConfig:
    embedding_dim: int = attrs.field(default=64, validator=gt(0))
    num_layers: int = attrs.field(default=2, validator=gt(0))
    dropout: float = attrs.field(default=0.0, validator=[ge(0.0), lt(1.0)])  # between layers
    vd_embedding: bool = False  # add a learned per-VD vector to the embedded input (starts at zero)


class LSTMEncoder(LayerwiseEncoder):
    name = "lstm"
    Config = LSTMConfig
    honours_time_padding = True  # causal_over_padding
    honours_vd_slots = True  # no per-VD weights

    def __init__(self, config: LSTMConfig, spec):
        super().__init__(config, spec)
        e = self.out_dim = config.embedding_dim
        self.num_layers = config.num_layers
        self.embedding = nn.Linear(EncoderInput.num_features(spec), e)
        self.layers = nn.ModuleList(nn.LSTM(e, e, batch_first=True) for _ in range(config.num_layers))
        self.dropout = nn.Dropout(config.dropout)
        self.vd_embedding = nn.Parameter(torch.zeros(spec.num_vds, e)) if config.vd_embedding else None
        self._register_load_state_dict_pre_hook(_from_stacked_lstm)

    def embed(self, inputs: EncoderInput) -> torch.Tensor:
        x = self.embedding(inputs.features())
        return x if self.vd_embedding is None else x + inputs.per_vd(self.vd_embedding)[:, :, None]

    def layer(self, index: int, x: torch.Tensor, inputs: EncoderInput) -> torch.Tensor:
        if index:
            x = self.dropout(x)
        b, m, t, e = x.shape
        step_mask = None if inputs.step_mask is None else inputs.step_mask.reshape(b * m, t)
        lstm = self.layers[index]
        return causal_over_padding(lambda s: run_lstm(lstm, s), x.reshape(b * m, t, e), step_mask).reshape(b, m, t, e)


def run_lstm(lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """``lstm``'s outputs for ``x``; under CPU autocast in float32, as oneDNN has no bf16 LSTM on CPUs without
    avx512_bf16 (it fails to create the primitive) and float32 is the same on every CPU."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return lstm(x.float())[0]
    return lstm(x)[0]


def _from_stacked_lstm(state_dict, prefix, *args) -> None:
    """Checkpoints of the earlier layout (``embed`` + one multi-layer ``lstm``) load into this one."""
    for key in [k for k in state_dict if k.startswith((prefix + "lstm.", prefix + "embed."))]:
        name = key[len(prefix) :]
        if name.startswith("embed."):
            state_dict[prefix + "embedding." + name[len("embed.") :]] = state_dict.pop(key)
        else:
            weight, layer = name[len("lstm.") :].rsplit("_l", 1)
            state_dict[f"{prefix}layers.{layer}.{weight}_l0"] = state_dict.pop(key)


@hookimpl
def register_plugins(register):
    register(LSTMEncoder)
