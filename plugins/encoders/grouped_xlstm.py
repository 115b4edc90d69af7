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


def _headwise(weight: torch.Tensor) -> torch.Tensor:
    """The package's ``LinearHeadwiseExpand`` weight ``[G, heads, out, in]`` as a dense block-diagonal ``[G, out, in]``
    matrix: one large matmul beats many 4×4 blocks."""
    g, h, o, d = weight.shape
    eye = torch.eye(h, dtype=weight.dtype, device=weight.device)
    return (weight[:, :, :, None, :] * eye[None, :, None, :, None]).reshape(g, h * o, h * d)


def _headwise_linear(x: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
    """The package's ``LinearHeadwiseExpand`` for each weight, outputs concatenated, in one matmul."""
    return grouped_linear(x, torch.cat([_headwise(w) for w in weights], 1))


def _layer_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The package's ``LayerNorm``: no bias, scale ``1 + weight`` (one group: inside the norm's kernel, 2x faster)."""
    if weight.shape[0] == 1:
        return F.layer_norm(x, x.shape[-1:], 1 + weight[0], eps=EPS)
    return F.layer_norm(x, x.shape[-1:], eps=EPS) * (1 + _groups(weight, x.dim()))


def _head_norm(h: torch.Tensor, weight: torch.Tensor, heads_dim: int) -> torch.Tensor:
    """The package's ``MultiHeadLayerNorm`` on ``[G, ..., D]`` with the heads in dimension ``heads_dim`` (whichever
    layout the caller has): normalise each head, scale ``1 + weight`` (``[G, heads·D]``)."""
    scale = [1] * h.dim()
    scale[0], scale[heads_dim], scale[-1] = h.shape[0], h.shape[heads_dim], h.shape[-1]
    return F.layer_norm(h, h.shape[-1:], eps=EPS) * (1 + weight.view(scale))


def _causal_conv(x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """The package's ``CausalConv1d`` (depthwise, left-padded) on ``[G, B, T, C]``; weight ``[G, C, 1, K]``."""
    return _CausalConv.apply(x, conv.weight.squeeze(2), conv.bias)


class _CausalConv(torch.autograd.Function):
    """Depthwise causal convolution over time, tap by tap in place, with its own backward pass: it keeps only the
    input (no padded copy, no per-tap products) and takes half the time of the same taps through autograd."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        taps = _taps(weight)
        y = torch.addcmul(_groups(bias, x.dim()), x, taps[0])
        for lag, w in enumerate(taps[1:], 1):  # kernel taps (4), not VDs
            if lag < x.shape[2]:
                y[:, :, lag:].addcmul_(x[:, :, :-lag], w)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, weight = ctx.saved_tensors
        taps = _taps(weight)
        grad_x = grad * taps[0]
        grad_taps = [(grad * x).sum((1, 2))]
        for lag, w in enumerate(taps[1:], 1):
            if lag < x.shape[2]:
                grad_x[:, :, :-lag].addcmul_(grad[:, :, lag:], w)
                grad_taps.append((grad[:, :, lag:] * x[:, :, :-lag]).sum((1, 2)))
            else:
                grad_taps.append(torch.zeros_like(grad_taps[0]))
        return grad_x.to(x.dtype), torch.stack(grad_taps[::-1], -1).to(weight.dtype), grad.sum((1, 2))


def _taps(weight: torch.Tensor) -> list[torch.Tensor]:
    """The kernel ``[G, C, K]`` as K per-group vectors, ordered by lag (the last tap multiplies the current step)."""
    return [_groups(weight[..., k], 4) for k in reversed(range(weight.shape[-1]))]


def _gated_ffn(ffn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    gate, up = (grouped_linear(x, w) for w in ffn.proj_up.weight.chunk(2, 1))  # two matmuls: see _mlstm_layer
    return grouped_linear(F.gelu(gate) * up, ffn.proj_down.weight)


# ------------------------------------------------------------------------------------------------ mLSTM
def _mlstm_layer(layer: nn.Module, x: torch.Tensor, heads: int, dropout: float, training: bool) -> torch.Tensor:
    """The package's mLSTM layer with its linear maps composed. v and its share of the gates come straight from the
    block input (``v = (W_v W_up) x``, a product over E instead of the up-projected width), the gates' share of q and
    k from the convolved input: the concatenation of q, k, v that the gates read is never formed."""
    cell = layer.mlstm_cell
    inner = layer.proj_up.weight.shape[1] // 2
    up_mlstm, up_z = layer.proj_up.weight.split(inner, 1)  # [G, inner, E]
    w_q, w_k, w_v = (_headwise(p.weight) for p in (layer.q_proj, layer.k_proj, layer.v_proj))
    gate_q, gate_k, gate_v = torch.cat([cell.igate.weight, cell.fgate.weight], 1).split(inner, 2)  # [G, 2 heads, inner]
    v_from_x = w_v @ up_mlstm
    # separate matmuls: the backward pass of one matmul split in four concatenates their gradients (slower)
    x_mlstm, z, v, preact_v = (grouped_linear(x, w) for w in (up_mlstm, up_z, v_from_x, gate_v @ v_from_x))
    x_conv = F.silu(_causal_conv(x_mlstm, layer.conv1d.conv))
    qk = grouped_linear(x_conv, torch.cat([w_q, w_k], 1))
    preact_qk = grouped_linear(x_conv, gate_q @ w_q + gate_k @ w_k)
    preact = preact_qk + preact_v + _groups(torch.cat([cell.igate.bias, cell.fgate.bias], 1), x.dim())
    h = _mlstm_cell(cell.outnorm.weight, qk, v, preact, heads)
    h = (h + _groups(layer.learnable_skip, x.dim()) * x_conv) * F.silu(z)
    return F.dropout(grouped_linear(h, layer.proj_down.weight), dropout, training)


def _mlstm_cell(
    norm_weight: torch.Tensor, qk: torch.Tensor, v: torch.Tensor, preact: torch.Tensor, heads: int
) -> torch.Tensor:
    """The mLSTM cell in its stabilised parallel form (the package's ``parallel_stabilized_simple``) and its head-wise
    norm, on ``qk [G, B, T, 2·inner]``, ``v [G, B, T, inner]`` and gate pre-activations ``[G, B, T, 2·heads]``."""
    g, b, t, inner = v.shape
    d = inner // heads
    q, k = qk.view(g, b, t, 2, heads, d).permute(3, 0, 1, 4, 2, 5).contiguous()  # [G, B, heads, T, D] each
    v = v.view(g, b, t, heads, d).transpose(2, 3)
    igate, fgate = preact.transpose(2, 3).chunk(2, 2)  # [G, B, heads, T] each
    log_f = torch.cumsum(F.logsigmoid(fgate), -1)
    causal = torch.ones(t, t, dtype=torch.bool, device=v.device).tril()
    log_d = (log_f[..., :, None] - log_f[..., None, :]).masked_fill(~causal, -math.inf) + igate[..., None, :]
    max_log_d = log_d.amax(-1, keepdim=True)
    c = (q @ (k.transpose(-1, -2) / math.sqrt(d))) * torch.exp(log_d - max_log_d)
    normaliser = torch.maximum(c.sum(-1, keepdim=True).abs(), torch.exp(-max_log_d))
    h = (c / (normaliser + 1e-6)) @ v  # [G, B, heads, T, D]: normalised per head in this layout, no transpose first
    return _head_norm(h, norm_weight, 2).transpose(2, 3).reshape(g, b, t, inner)


# ------------------------------------------------------------------------------------------------ sLSTM
def _slstm_layer(layer: nn.Module, x: torch.Tensor, heads: int, dropout: float, training: bool) -> torch.Tensor:
    x_conv = F.silu(_causal_conv(x, layer.conv1d.conv))
    # the package feeds (fgate, igate, zgate, ogate) projections as the (i, f, z, o) cell inputs; kept as is
    gates = torch.cat(
        [
            _headwise_linear(x_conv, layer.fgate.weight, layer.igate.weight),
            _headwise_linear(x, layer.zgate.weight, layer.ogate.weight),
        ],
        -1,
    )
    y = _slstm_cell(layer.slstm_cell, gates.unflatten(-1, (4, -1)), heads)  # [G, B, T, E]
    y = F.dropout(y, dropout, training)
    g, b, t, e = y.shape
    return _head_norm(y.view(g, b, t, heads, e // heads), layer.group_norm.weight, 3).reshape(g, b, t, e)


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
