"""Left-padded sequences for causal encoders: padding that changes nothing.

Batches pad time on the left, so the last step is aligned across VDs. A causal encoder run on
*right*-padded sequences computes every real step from real steps only (the padding comes after it), which is
what packing gives a recurrent network. ``causal_over_padding`` rolls each sequence to the right-padded form,
runs the encoder, rolls back and zeroes the padded steps (so they also receive no gradient).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def roll_time(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``x [*, T, E]`` with every sequence rolled by its own ``shift [*]``: ``out[t] = x[(t - shift) mod T]``."""
    t = x.shape[-2]
    source = (torch.arange(t, device=x.device) - shift[..., None]) % t  # [*, T]
    return x.gather(-2, source[..., None].expand_as(x))


def causal_over_padding(
    encode: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, step_mask: torch.Tensor | None
) -> torch.Tensor:
    """``encode`` (causal over the time axis -2 of ``x [*, T, E]``) applied as if each sequence started at its
    first real step; ``step_mask [*, T]`` marks real steps (left padding), None = no padding."""
    if step_mask is None:
        return encode(x)
    t = x.shape[-2]
    lengths = step_mask.sum(-1)
    right_padded = roll_time(x, lengths - t)  # real steps first, padding after
    return roll_time(encode(right_padded), t - lengths) * step_mask[..., None].to(x.dtype)


def real_steps(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, N] history lengths → [B, steps, N] bool, True on the last ``length`` steps (left padding)."""
    return torch.arange(steps, device=lengths.device)[None, :, None] >= steps - lengths[:, None, :]
