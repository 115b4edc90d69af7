"""The forecaster: encoder → last step → social pooling → fusion layer → head → ``[B, H, N]`` (a point forecast)
or ``[B, H, N, P]`` (a distribution head's values, e.g. quantiles).

``[model] social`` says where pooling acts: on the encoder's last states only (``last``), or also inside a
layer-wise encoder: on every time step's input states, fed into its first layer (``every_step``), or between
every two of its layers, each with its own pooling weights (``interleaved``). Inside the encoder the pooling
plugin sees every time step folded into the batch (``[B·T, N, E]``, a VD present where its step is real) and its
context enters the states through a zero-initialised linear map (a residual): training starts from ``last``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from core.api import (
    Batch,
    Collator,
    DatasetSpec,
    Encoder,
    EncoderInput,
    Head,
    LayerwiseEncoder,
    NoOptions,
    Pooling,
    scatter_vds,
)
from core.errors import DataError, RecipeError
from core.heads import PointHead
from core.host.construct import construct
from core.host.registry import Registry
from core.recipe import ModelConfig, Recipe


class Forecaster(nn.Module):
    def __init__(
        self,
        encoder: Encoder,
        pooling: Pooling,
        model: ModelConfig,
        inner: dict[int, Pooling] | None = None,
        head: Callable[[int], Head] | None = None,
    ):
        """``inner`` maps an encoder layer to the pooling acting on the states entering it (the social modes);
        ``head(dim)`` builds the head on the fused features (default: ``PointHead``), here after the fusion layer,
        so that the weights of a seeded run start the same whichever head it has."""
        super().__init__()
        self.num_vds = encoder.spec.num_vds
        self.residual = model.residual  # what the head forecasts: the target, or its deviation from the profile
        self.encoder = encoder
        self.pooling = pooling
        e = encoder.out_dim
        self.inner = nn.ModuleDict({str(layer): p for layer, p in (inner or {}).items()})
        self.inject = nn.ModuleDict({key: _zero_linear(e) for key in self.inner})
        self.fuse = nn.Sequential(nn.Linear(2 * e, model.hidden_dim), nn.GELU(), nn.Dropout(model.dropout))
        self.head = (head or functools.partial(PointHead, NoOptions(), encoder.spec))(model.hidden_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        inputs = EncoderInput.from_batch(batch)
        if self.inner:
            hidden = self.encoder.run_layers(inputs, lambda layer, x: self.social_step(layer, x, inputs))
        else:
            hidden = self.encoder(inputs)  # [B, M, T, E] (left padding: last step aligned) or [B, M, E]
        last = hidden[:, :, -1] if hidden.dim() == 4 else hidden
        last = last * batch.node_mask[..., None].to(last.dtype)  # an absent VD's state is zero
        node_mask = batch.node_mask
        if batch.vd_index is not None:  # VD slots → all N VDs in dataset order
            last = scatter_vds(last, batch.vd_index, self.num_vds)
            node_mask = scatter_vds(node_mask, batch.vd_index, self.num_vds)
        context = self.pooling(last, node_mask)  # [B, N, E]
        return self.head(self.fuse(torch.cat([last, context], -1)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Checkpoints from before heads were plugins name the fusion layer ``head.0`` and the point forecast's
        linear map ``head.3``: renamed, so their runs still resume and predict."""
        for old, new in (("head.0.", "fuse.0."), ("head.3.", "head.linear.")):
            for key in [k for k in state_dict if k.startswith(prefix + old)]:
                state_dict[prefix + new + key[len(prefix + old) :]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def social_step(self, layer: int, x: torch.Tensor, inputs: EncoderInput) -> torch.Tensor:
        """``x [B, M, T, E]`` plus the social context of every time step, if a pooling acts before ``layer``."""
        key = str(layer)
        if key not in self.inner:
            return x
        b, m, t, e = x.shape
        # the states' T steps are the input's last T (fewer for an encoder that keeps only the last, e.g. stid)
        present = (
            torch.ones(b, m, t, dtype=torch.bool, device=x.device)
            if inputs.step_mask is None
            else inputs.step_mask[..., -t:]
        )
        if inputs.node_mask is not None:
            present = present & inputs.node_mask[..., None]
        states, where = x * present[..., None].to(x.dtype), present
        if inputs.vd_index is not None:  # slots → all N VDs, the layout the pooling's neighbour lists index
            states, where = (
                scatter_vds(states, inputs.vd_index, self.num_vds),
                scatter_vds(present, inputs.vd_index, self.num_vds),
            )
        n = states.shape[1]
        context = self.inner[key](states.transpose(1, 2).reshape(b * t, n, e), where.transpose(1, 2).reshape(b * t, n))
        context = inputs.take_slots(context.reshape(b, t, n, e).transpose(1, 2))  # [B, M, T, E]
        return x + self.inject[key](context) * present[..., None].to(x.dtype)


def _zero_linear(dim: int) -> nn.Linear:
    linear = nn.Linear(dim, dim, bias=False)
    nn.init.zeros_(linear.weight)
    return linear


def build_forecaster(recipe: Recipe, registry: Registry, spec: DatasetSpec, source: str) -> tuple[Forecaster, Collator]:
    """The recipe's model and collator for ``spec``; a data error (e.g. no VD positions for a pooling that needs
    them) names the data ``source``."""
    collator = construct(registry, "collator", recipe.collator, spec)
    try:
        model = build_model(recipe, registry, spec)
    except DataError as error:
        raise DataError(f"{source}: {error}") from None
    return model, collator


def build_model(recipe: Recipe, registry: Registry, spec: DatasetSpec) -> Forecaster:
    """Instantiate the recipe's encoder, pooling (and, in the social modes, the poolings inside the encoder) and
    head for the dataset described by ``spec``."""
    encoder = construct(registry, "encoder", recipe.encoder, spec, where=recipe.path)
    pooling = construct(registry, "pooling", recipe.pooling, spec, encoder.out_dim, where=recipe.path)
    inner = {
        layer: construct(registry, "pooling", recipe.pooling, spec, encoder.out_dim, where=recipe.path)
        for layer in inner_layers(recipe.model.social, encoder)
    }
    head = lambda dim: construct(registry, "head", recipe.head, spec, dim, where=recipe.path)  # noqa: E731
    return Forecaster(encoder, pooling, recipe.model, inner, head)


def inner_layers(social: str, encoder: Encoder) -> list[int]:
    """The encoder layers whose input states a pooling acts on, for ``[model] social``."""
    if social == "last":
        return []
    assert isinstance(encoder, LayerwiseEncoder)  # check_compatible refused the others at recipe load
    if encoder.num_layers < 1:
        raise RecipeError(
            f"[model] social = {social!r} pools inside the encoder, but encoder '{encoder.name}' has no layer; use "
            '"last"'
        )
    if social == "every_step":
        return [0]
    if encoder.num_layers < 2:
        raise RecipeError(
            f"[model] social = \"interleaved\" pools between encoder layers, but encoder '{encoder.name}' has 1 layer; "
            'use "every_step"'
        )
    return list(range(1, encoder.num_layers))
