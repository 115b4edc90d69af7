"""Encoder ``xlstm_shared``: ONE xLSTM block stack over ``[B·N, T, E]``, so every VD keeps its own states.

(Never a ``multi_vd_mode`` that flattens N·F into one vector and mixes VDs, as the project's first design
note had it.) Optional light per-VD conditioning: a learned VD embedding added to the input, and/or a per-VD linear
map of the output states.

The sLSTM backend picks the implementation: ``cuda`` runs the xlstm package's stack with its CUDA kernel;
``vanilla`` runs the same computation through ``GroupedXLSTM`` with one group (equal to the package's
vanilla backend to float tolerance, ~1.8x faster on CPU). Checkpoints are tied to the backend they were
trained with (the two store the sLSTM weights in different layouts).
"""

from __future__ import annotations

import logging
from typing import Literal

import attrs
import torch
from attrs.validators import ge, gt, lt
from torch import nn
from torch.utils.checkpoint import checkpoint
from xlstm import (
    FeedForwardConfig,
    mLSTMBlockConfig,
    mLSTMLayerConfig,
    sLSTMBlockConfig,
    sLSTMLayerConfig,
    xLSTMBlockStack,
    xLSTMBlockStackConfig,
)

from plugins.encoders.grouped_xlstm import GroupedXLSTM, uses_cuda_kernel
from social_xlstm import EncoderInput, LayerwiseEncoder, causal_over_padding, hookimpl

log = logging.getLogger(__name__)


def _heads_divide(instance, attribute, value) -> None:
    if instance.embedding_dim % value:
        raise ValueError(f"'num_heads' ({value}) must divide 'embedding_dim' ({instance.embedding_dim})")


def _blocks_exist(instance, attribute, value) -> None:
    outside = [i for i in value if not 0 <= i < instance.num_blocks]
    if outside:
        raise ValueError(
            f"'slstm_at' has block indices {outside} outside 0..{instance.num_blocks - 1} "
            f"(num_blocks = {instance.num_blocks})"
        )


@attrs.frozen
class XLSTMConfig:
    """The xLSTM architecture, shared by ``xlstm_shared`` and ``xlstm_per_vd``."""

    embedding_dim: int = attrs.field(default=64, validator=gt(0))
    num_blocks: int = attrs.field(default=4, validator=gt(0))
    slstm_at: tuple[int, ...] = attrs.field(default=(1,), validator=_blocks_exist)  # sLSTM block indices; others mLSTM
    num_heads: int = attrs.field(default=4, validator=[gt(0), _heads_divide])
    conv1d_kernel_size: int = attrs.field(default=4, validator=gt(0))
    qkv_proj_blocksize: int = attrs.field(default=4, validator=gt(0))
    ff_proj_factor: float = attrs.field(default=1.3, validator=gt(0.0))
    dropout: float = attrs.field(default=0.0, validator=[ge(0.0), lt(1.0)])
    recompute: bool = False  # keep each block's input only, recompute its activations in the backward pass


@attrs.frozen
class SharedXLSTMConfig(XLSTMConfig):
    slstm_backend: Literal["auto", "vanilla", "cuda"] = "auto"  # auto: cuda where the kernel builds
    vd_embedding: bool = False  # add a learned per-VD vector to the embedded input
    per_vd_output: bool = False  # a per-VD linear map (initialised to identity) of the output states


def resolve_backend(requested: str) -> str:
    """``auto`` → ``cuda`` on a GPU of compute capability ≥ 8.0, else ``vanilla`` (pure PyTorch)."""
    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8 else "vanilla"


def build_stack(config: XLSTMConfig, context_length: int, backend: str, requested: str = "vanilla") -> xLSTMBlockStack:
    """The xlstm package's block stack; falls back to ``vanilla`` if the CUDA kernel fails to build (unless
    requested)."""
    stack_config = xLSTMBlockStackConfig(
        mlstm_block=mLSTMBlockConfig(
            mlstm=mLSTMLayerConfig(
                conv1d_kernel_size=config.conv1d_kernel_size,
                qkv_proj_blocksize=config.qkv_proj_blocksize,
                num_heads=config.num_heads,
            )
        ),
        slstm_block=sLSTMBlockConfig(
            slstm=sLSTMLayerConfig(
                backend=backend,
                num_heads=config.num_heads,
                conv1d_kernel_size=config.conv1d_kernel_size,
                bias_init="powerlaw_blockdependent",
            ),
            feedforward=FeedForwardConfig(proj_factor=config.ff_proj_factor, act_fn="gelu"),
        ),
        context_length=context_length,
        num_blocks=config.num_blocks,
        embedding_dim=config.embedding_dim,
        slstm_at=list(config.slstm_at),
        dropout=config.dropout,
    )
    try:
        return xLSTMBlockStack(stack_config)
    except Exception as error:  # noqa: BLE001 - the CUDA kernel is compiled here and may not build
        if backend != "cuda" or requested == "cuda":
            raise
        log.warning("sLSTM cuda backend failed to build (%s); using vanilla", error)
        return build_stack(config, context_length, "vanilla")


class SharedXLSTMEncoder(LayerwiseEncoder):
    name = "xlstm_shared"
    Config = SharedXLSTMConfig
    honours_time_padding = True  # causal_over_padding
    honours_vd_slots = True  # the per-VD parts index by vd_ids()

    def __init__(self, config: SharedXLSTMConfig, spec):
        super().__init__(config, spec)
        e = self.out_dim = config.embedding_dim
        self.num_layers = config.num_blocks
        self.embedding = nn.Linear(EncoderInput.num_features(spec), e)
        stack = build_stack(config, spec.history, resolve_backend(config.slstm_backend), config.slstm_backend)
        self.stack = stack if uses_cuda_kernel(stack) else GroupedXLSTM(stack, groups=1, recompute=config.recompute)
        self.vd_embedding = nn.Parameter(torch.zeros(spec.num_vds, e)) if config.vd_embedding else None
        self.output_map = nn.Parameter(torch.eye(e).repeat(spec.num_vds, 1, 1)) if config.per_vd_output else None
        self._register_load_state_dict_pre_hook(_renamed_embedding)

    def embed(self, inputs: EncoderInput) -> torch.Tensor:
        x = self.embedding(inputs.features())
        if self.vd_embedding is not None:
            x = x + inputs.per_vd(self.vd_embedding)[:, :, None]
        return x

    def layer(self, index: int, x: torch.Tensor, inputs: EncoderInput) -> torch.Tensor:
        b, m, t, e = x.shape
        if isinstance(self.stack, GroupedXLSTM):
            block = lambda s: self.stack.block(index, s[None])[0]  # noqa: E731 - one weight group
        elif self.config.recompute:
            block = lambda s: checkpoint(self.stack.blocks[index], s, use_reentrant=False)  # noqa: E731
        else:
            block = self.stack.blocks[index]
        return causal_over_padding(block, x.reshape(b * m, t, e), _fold(inputs.step_mask)).reshape(b, m, t, e)

    def finish(self, x: torch.Tensor, inputs: EncoderInput) -> torch.Tensor:
        norm = self.stack.post_norm if isinstance(self.stack, GroupedXLSTM) else self.stack.post_blocks_norm
        x = norm(x)
        if self.output_map is not None:
            x = torch.einsum("bnte,bnfe->bntf", x, inputs.per_vd(self.output_map))
        return x


def _fold(step_mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if step_mask is None else step_mask.flatten(0, 1)


def _renamed_embedding(state_dict, prefix, *args) -> None:
    """Checkpoints that call the input map ``embed`` (before the layer-wise form) load as ``embedding``."""
    for name in ("weight", "bias"):
        if prefix + "embed." + name in state_dict:
            state_dict[prefix + "embedding." + name] = state_dict.pop(prefix + "embed." + name)


@hookimpl
def register_plugins(register):
    register(SharedXLSTMEncoder)
