"""Encoder ``xlstm_per_vd``: every VD has its own xLSTM (input embedding + block stack), all run at once.

An xLSTM per VD, as the project's first design note asked, made real: the weights of all N VDs are created
with the model (so the optimizer sees every one) and stacked along a leading VD dimension; ``GroupedXLSTM``
runs the N stacks as batched matmuls, one pass for the whole network. ``PerVDLoop`` is that note's
formulation, a Python loop over N independent package modules, kept as the reference the tests and the
benchmark compare against.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from plugins.encoders.grouped_xlstm import GroupedXLSTM, grouped_linear
from plugins.encoders.xlstm_shared import XLSTMConfig, build_stack
from social_xlstm import (
    DataError,
    DatasetSpec,
    EncoderInput,
    LayerwiseEncoder,
    causal_over_padding,
    hookimpl,
    scatter_vds,
)


class PerVDXLSTMEncoder(LayerwiseEncoder):
    name = "xlstm_per_vd"
    Config = XLSTMConfig
    honours_time_padding = True  # causal_over_padding
    honours_vd_slots = True  # slots go to their VDs' weights (expand / take_slots)

    def __init__(self, config: XLSTMConfig, spec: DatasetSpec):
        super().__init__(config, spec)
        n, e, f = spec.num_vds, config.embedding_dim, EncoderInput.num_features(spec)
        self.out_dim = e
        self.num_layers = config.num_blocks
        bound = 1 / math.sqrt(f)  # nn.Linear's default initialisation, drawn for every VD
        self.embed_weight = nn.Parameter(torch.empty(n, e, f).uniform_(-bound, bound))
        self.embed_bias = nn.Parameter(torch.empty(n, e).uniform_(-bound, bound))
        self.stack = GroupedXLSTM(build_stack(config, spec.history, "vanilla"), groups=n, recompute=config.recompute)

    def embed(self, inputs: EncoderInput) -> torch.Tensor:
        """Every VD's input through its own weights (a batch of fewer VD slots is expanded to all N and back)."""
        full = inputs.expand(self.spec.num_vds)
        x = full.features().transpose(0, 1)  # [N, B, T, F]
        if x.shape[0] != self.spec.num_vds:
            raise DataError(
                f"encoder 'xlstm_per_vd' was built for {self.spec.num_vds} VDs ({_preview(self.spec.vd_ids)}) "
                f"but the batch has {x.shape[0]}; per-VD weights cannot be shared with VDs they were not built for"
            )
        return inputs.take_slots(
            (grouped_linear(x, self.embed_weight) + self.embed_bias[:, None, None]).transpose(0, 1)
        )

    def layer(self, index: int, x: torch.Tensor, inputs: EncoderInput) -> torch.Tensor:
        """Block ``index`` of every VD's stack: the slots go to their VDs' weight groups ``[N, B, T, E]`` and back."""
        groups = _slots_to_vds(x, inputs, self.spec.num_vds).transpose(0, 1)
        full = inputs.expand(self.spec.num_vds)
        step_mask = None if full.step_mask is None else full.step_mask.transpose(0, 1)  # [N, B, T]
        return inputs.take_slots(
            causal_over_padding(lambda s: self.stack.block(index, s), groups, step_mask).transpose(0, 1)
        )

    def finish(self, x: torch.Tensor, inputs: EncoderInput) -> torch.Tensor:
        return inputs.take_slots(
            self.stack.post_norm(_slots_to_vds(x, inputs, self.spec.num_vds).transpose(0, 1)).transpose(0, 1)
        )


def _slots_to_vds(x: torch.Tensor, inputs: EncoderInput, num_vds: int) -> torch.Tensor:
    """``[B, M, ...]`` slots → ``[B, N, ...]`` in dataset order (zeros for VDs in no slot)."""
    return x if inputs.vd_index is None else scatter_vds(x, inputs.vd_index, num_vds)


class PerVDLoop(nn.Module):
    """The reference: one ``nn.Linear`` + package ``xLSTMBlockStack`` per VD, looped in Python.

    ``PerVDLoop(encoder)`` copies the weights of a ``PerVDXLSTMEncoder``, so both compute the same function.
    """

    def __init__(self, encoder: PerVDXLSTMEncoder):
        super().__init__()
        config, spec = encoder.config, encoder.spec
        self.embeds = nn.ModuleList()
        self.stacks = nn.ModuleList()
        grouped = encoder.stack.state_dict()
        for i in range(spec.num_vds):
            embed = nn.Linear(EncoderInput.num_features(spec), config.embedding_dim)
            embed.load_state_dict({"weight": encoder.embed_weight[i].detach(), "bias": encoder.embed_bias[i].detach()})
            stack = build_stack(config, spec.history, "vanilla")
            stack.load_state_dict({name: value[i] for name, value in grouped.items()})
            self.embeds.append(embed)
            self.stacks.append(stack)

    def forward(self, inputs: EncoderInput) -> torch.Tensor:
        x = inputs.features()
        return torch.stack([stack(embed(x[:, i])) for i, (embed, stack) in enumerate(zip(self.embeds, self.stacks))], 1)


def _preview(ids, limit: int = 5) -> str:
    return ", ".join(ids[:limit]) + (", ..." if len(ids) > limit else "")


@hookimpl
def register_plugins(register):
    register(PerVDXLSTMEncoder)
