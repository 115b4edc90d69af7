"""The xlstm package's block stack with G independent weight sets, run for every group in one pass.

``GroupedXLSTM(template, groups)`` copies the structure of an ``xLSTMBlockStack`` (built with the
``vanilla`` sLSTM backend) and gives every parameter a leading group dimension, under the template's own
names: stacking the state dicts of G package stacks gives this module's state dict. The forward pass maps
``[G, B, T, E] → [G, B, T, E]`` with batched matmuls over the groups (no loop over groups), computing what
the package computes for each group (tests compare them to 1e-5). With ``groups = 1`` it is a drop-in,
faster stack for shared weights: the package's per-op copies (head-wise einsums, Conv1d transposes, the
preallocated sLSTM state buffers) are replaced by fewer, larger ops, and the code is ``torch.compile``-able.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from xlstm import xLSTMBlockStack
from xlstm.blocks.slstm.block import sLSTMBlock

EPS = 1e-5  # the package's LayerNorm / MultiHeadLayerNorm epsilon


def uses_cuda_kernel(stack: xLSTMBlockStack) -> bool:
    return any(isinstance(b, sLSTMBlock) and b.xlstm.slstm_cell.config.backend == "cuda" for b in stack.blocks)


class GroupedXLSTM(nn.Module):
    chunk_sequences = 2048  # CPU: at most this many sequences (groups × batch) per chunk (bench/encoders.py)
    recompute_chunk_sequences = 1024  # with recompute: half the memory of 2048 in the same time (bench/encoders.py)

    def __init__(self, template: xLSTMBlockStack, groups: int, recompute: bool = False):
        super().__init__()
        self.recompute = recompute  # keep each chunk's input only; recompute its activations in the backward pass
        if uses_cuda_kernel(template):
            raise ValueError("GroupedXLSTM needs a template built with the 'vanilla' sLSTM backend (its weight layout)")
        self.kinds = ["slstm" if isinstance(b, sLSTMBlock) else "mlstm" for b in template.blocks]
        self.heads = [
            b.xlstm.config.num_heads if k == "slstm" else b.xlstm.mlstm_cell.config.num_heads
            for b, k in zip(template.blocks, self.kinds)
        ]
        self.dropout = template.config.dropout
        with torch.no_grad():  # every group gets its own draw of the package's initialisation
            draws = []
            for _ in range(groups):
                template.reset_parameters()
                draws.append({name: p.detach().clone() for name, p in template.named_parameters()})
        _mirror(self, template, "", {name: torch.stack([d[name] for d in draws]) for name in draws[0]})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index in range(len(self.blocks)):
            x = self.block(index, x)
        return self.post_norm(x)

    def block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Block ``index`` of the stack (its residual connections included) on ``[G, B, T, E]``.

        On the CPU, more than ``chunk_sequences`` sequences (G·B) go through in equal chunks, so a block's
        intermediate tensors stay in the cache instead of streaming through memory (1.2-1.3x faster at
        G·B = 6624, E = 64): chunks of the batch with one group, chunks of groups (their weights sliced) with many.
        With ``recompute``, each chunk (at most ``recompute_chunk_sequences``) keeps only its input for the backward
        pass and runs again there.
        """
        block = self.blocks[index]

        def run(weights, chunk: torch.Tensor) -> torch.Tensor:
            if self.recompute and torch.is_grad_enabled():
                return checkpoint(self._block, weights, index, chunk, use_reentrant=False)
            return self._block(weights, index, chunk)

        g, b = x.shape[:2]
        limit = self.recompute_chunk_sequences if self.recompute else self.chunk_sequences
        if x.device.type != "cpu" or g * b <= limit:
            return run(block, x)
        chunks = math.ceil(g * b / limit)  # of equal size
        if g == 1:
            return torch.cat([run(block, part) for part in x.split(math.ceil(b / chunks), 1)], 1)
        size = math.ceil(g / chunks)
        return torch.cat([run(_groups_slice(block, lo, lo + size), x[lo : lo + size]) for lo in range(0, g, size)])

    def _block(self, block: nn.Module, index: int, x: torch.Tensor) -> torch.Tensor:
        kind, heads = self.kinds[index], self.heads[index]
        if kind == "mlstm":
            return x + _mlstm_layer(
                block.xlstm, _layer_norm(x, block.xlstm_norm.weight), heads, self.dropout, self.training
            )
        x = x + _slstm_layer(block.xlstm, _layer_norm(x, block.xlstm_norm.weight), heads, self.dropout, self.training)
        return x + _gated_ffn(block.ffn, _layer_norm(x, block.ffn_norm.weight))

    def post_norm(self, x: torch.Tensor) -> torch.Tensor:
        return _layer_norm(x, self.post_blocks_norm.weight)


def _groups_slice(module: nn.Module, lo: int, hi: int) -> SimpleNamespace:
    """``module``'s tree of parameters, each cut to groups ``lo:hi`` (views: gradients reach the whole)."""
    view = SimpleNamespace(**{name: p[lo:hi] for name, p in module.named_parameters(recurse=False)})
    for name, child in module.named_children():
        setattr(view, name, _groups_slice(child, lo, hi))
    return view


def _mirror(target: nn.Module, source: nn.Module, prefix: str, stacked: dict[str, torch.Tensor]) -> None:
    """Give ``target`` the module tree and parameter names of ``source``, parameters taken from ``stacked``."""
    for name, _ in source.named_parameters(recurse=False):
        target.register_parameter(name, nn.Parameter(stacked[prefix + name]))
    for name, child in source.named_children():
        mirrored = nn.ModuleList() if isinstance(child, nn.ModuleList) else nn.Module()
        if isinstance(child, nn.ModuleList):
            mirrored.extend(nn.Module() for _ in child)
        target.add_module(name, mirrored)
        _mirror(mirrored, child, f"{prefix}{name}.", stacked)


# ------------------------------------------------------------------------------------- grouped operations
def _groups(weight: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-group vector ``[G, C]`` shaped to broadcast against a ``[G, ..., C]`` tensor of ``ndim`` dims."""
    return weight.view(weight.shape[0], *([1] * (ndim - 2)), weight.shape[-1])


def grouped_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``[G, ..., in] × [G, out, in] → [G, ..., out]`` as one batched matmul."""
    return (x.flatten(1, -2) @ weight.transpose(1, 2)).view(*x.shape[:-1], weight.shape[1])


def _headwise(x: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
    """The package's ``LinearHeadwiseExpand`` for each weight ``[G, heads, out, in]``, outputs concatenated.

    The block-diagonal weights are expanded to dense matrices: one large matmul beats many 4×4 blocks.
    """
    dense = []
    for weight in weights:
        g, h, o, d = weight.shape
        eye = torch.eye(h, dtype=weight.dtype, device=weight.device)
        dense.append((weight[:, :, :, None, :] * eye[None, :, None, :, None]).reshape(g, h * o, h * d))
    return grouped_linear(x, torch.cat(dense, 1))


def _layer_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The package's ``LayerNorm``: no bias, scale ``1 + weight``."""
    return F.layer_norm(x, x.shape[-1:], eps=EPS) * (1 + _groups(weight, x.dim()))


def _head_norm(h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The package's ``MultiHeadLayerNorm`` on ``[G, B, T, heads, D]``: normalise each head, scale ``1 + weight``."""
    g, b, t, heads, d = h.shape
    return F.layer_norm(h, (d,), eps=EPS) * (1 + weight.view(g, 1, 1, heads, d))


def _causal_conv(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """The package's ``CausalConv1d`` (depthwise, left-padded) on ``[G, B, T, C]``; weight ``[G, C, 1, K]``."""
    weight, kernel = conv.weight.squeeze(2), conv.weight.shape[-1]
    t = x.shape[2]
    padded = F.pad(x, (0, 0, kernel - 1, 0))
    y = _groups(conv.bias, x.dim()).expand_as(x)
    for k in range(kernel):  # kernel taps (4), not VDs
        y = y + padded[:, :, k : k + t] * _groups(weight[..., k], x.dim())
    return y


def _gated_ffn(ffn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    gate, up = grouped_linear(x, ffn.proj_up.weight).chunk(2, -1)
    return grouped_linear(F.gelu(gate) * up, ffn.proj_down.weight)


# ------------------------------------------------------------------------------------------------ mLSTM
def _mlstm_layer(layer: nn.Module, x: torch.Tensor, heads: int, dropout: float, training: bool) -> torch.Tensor:
    x_mlstm, z = grouped_linear(x, layer.proj_up.weight).chunk(2, -1)
    x_conv = F.silu(_causal_conv(x_mlstm, layer.conv1d.conv))
    q, k = _headwise(x_conv, layer.q_proj.weight, layer.k_proj.weight).chunk(2, -1)
    v = _headwise(x_mlstm, layer.v_proj.weight)
    h = _mlstm_cell(layer.mlstm_cell, q, k, v, heads)
    h = (h + _groups(layer.learnable_skip, x.dim()) * x_conv) * F.silu(z)
    return F.dropout(grouped_linear(h, layer.proj_down.weight), dropout, training)


def _mlstm_cell(cell: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """The mLSTM cell in its stabilised parallel form (the package's ``parallel_stabilized_simple``)."""
    g, b, t, inner = q.shape
    weight = torch.cat([cell.igate.weight, cell.fgate.weight], 1)  # both gates in one matmul
    bias = torch.cat([cell.igate.bias, cell.fgate.bias], 1)
    preact = grouped_linear(torch.cat([q, k, v], -1), weight) + _groups(bias, 4)
    igate, fgate = preact.transpose(2, 3).chunk(2, 2)  # [G, B, heads, T] each
    q, k, v = (u.view(g, b, t, heads, -1).transpose(2, 3) for u in (q, k, v))  # [G, B, heads, T, D]
    log_f = torch.cumsum(F.logsigmoid(fgate), -1)  # [G, B, heads, T]
    causal = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    log_d = (log_f[..., :, None] - log_f[..., None, :]).masked_fill(~causal, -math.inf) + igate[..., None, :]
    max_log_d = log_d.amax(-1, keepdim=True)
    c = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])) * torch.exp(log_d - max_log_d)
    normaliser = torch.maximum(c.sum(-1, keepdim=True).abs(), torch.exp(-max_log_d))
    h = (c / (normaliser + 1e-6)) @ v  # [G, B, heads, T, D]
    return _head_norm(h.transpose(2, 3), cell.outnorm.weight).reshape(g, b, t, inner)


# ------------------------------------------------------------------------------------------------ sLSTM
def _slstm_layer(layer: nn.Module, x: torch.Tensor, heads: int, dropout: float, training: bool) -> torch.Tensor:
    x_conv = F.silu(_causal_conv(x, layer.conv1d.conv))
    # the package feeds (fgate, igate, zgate, ogate) projections as the (i, f, z, o) cell inputs; kept as is
    gates = torch.cat(
        [
            _headwise(x_conv, layer.fgate.weight, layer.igate.weight),
            _headwise(x, layer.zgate.weight, layer.ogate.weight),
        ],
        -1,
    )
    y = _slstm_cell(layer.slstm_cell, gates.unflatten(-1, (4, -1)), heads)  # [G, B, T, E]
    y = F.dropout(y, dropout, training)
    g, b, t, e = y.shape
    return _head_norm(y.view(g, b, t, heads, e // heads), layer.group_norm.weight).reshape(g, b, t, e)


def _slstm_cell(cell: nn.Module, wx: torch.Tensor, heads: int) -> torch.Tensor:
    """The sLSTM recurrence (vanilla backend) over ``wx [G, B, T, 4 gates, E]`` → hidden ``y [G, B, T, E]``.

    Weight layouts (vanilla): recurrent ``[G, heads, 4·D, D]`` (gate-major rows), bias ``[G, 4·E]`` (gate, head, D).
    """
    g, b, t, _, e = wx.shape
    d = e // heads
    raw_input = wx + cell._bias_.view(g, 1, 1, 4, e)
    kernel = cell._recurrent_kernel_.view(g, heads, 4, d, d)  # [G, heads, gate, out, in]
    y = c = n = m = None
    outputs = []
    for raw in raw_input.unbind(2):  # the recurrence is sequential in time (unbind: one backward op, not T)
        if y is not None:
            recurrent = torch.einsum("gbhi,ghkoi->gbkho", y.view(g, b, heads, d), kernel)
            raw = raw + recurrent.reshape(g, b, 4, e)
        i_raw, f_raw, z_raw, o_raw = raw.unbind(2)
        if y is None:  # first step: zero state, the stabiliser starts at the input gate
            m_new = i_raw
            i_gate = torch.ones_like(i_raw)
            c, n = i_gate * torch.tanh(z_raw), i_gate
        else:
            log_f_plus_m = m + F.logsigmoid(f_raw)
            m_new = torch.maximum(i_raw, log_f_plus_m)
            i_gate = torch.exp(i_raw - m_new)  # ≤ 1 already (exponent ≤ 0): the package's clamp changes nothing
            f_gate = torch.exp(log_f_plus_m - m_new)
            c = f_gate * c + i_gate * torch.tanh(z_raw)
            n = f_gate * n + i_gate
        m = m_new
        y = torch.sigmoid(o_raw) * c / n
        outputs.append(y)
    return torch.stack(outputs, 2)
