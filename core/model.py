"""The forecaster: encoder → last step → social pooling → fusion head → ``[B, H, N]``."""

from __future__ import annotations

import torch
from torch import nn

from core.api import Batch, DatasetSpec, Encoder, EncoderInput, Pooling, require_positions, scatter_vds
from core.errors import PluginError, RecipeError, SocialXLSTMError
from core.recipe import HeadConfig, Recipe
from core.registry import Registry


class Forecaster(nn.Module):
    def __init__(self, encoder: Encoder, pooling: Pooling, head: HeadConfig, horizon: int):
        super().__init__()
        self.num_vds = encoder.spec.num_vds
        self.encoder = encoder
        self.pooling = pooling
        e = encoder.out_dim
        self.head = nn.Sequential(
            nn.Linear(2 * e, head.hidden_dim), nn.GELU(), nn.Dropout(head.dropout), nn.Linear(head.hidden_dim, horizon)
        )

    def forward(self, batch: Batch) -> torch.Tensor:
        hidden = self.encoder(EncoderInput.from_batch(batch))  # [B, M, T, E] (left padding: last step aligned) or [B, M, E]
        last = hidden[:, :, -1] if hidden.dim() == 4 else hidden
        last = last * batch.node_mask[..., None].to(last.dtype)  # an absent VD's state is zero
        node_mask = batch.node_mask
        if batch.vd_index is not None:  # VD slots → all N VDs in dataset order
            last = scatter_vds(last, batch.vd_index, self.num_vds)
            node_mask = scatter_vds(node_mask, batch.vd_index, self.num_vds)
        context = self.pooling(last, node_mask)  # [B, N, E]
        return self.head(torch.cat([last, context], -1)).transpose(1, 2)  # [B, H, N]


def build_model(recipe: Recipe, registry: Registry, spec: DatasetSpec) -> Forecaster:
    """Instantiate the recipe's encoder and pooling for the dataset described by ``spec``."""
    encoder = _construct(recipe, registry, "encoder", spec)
    pooling = _construct(recipe, registry, "pooling", spec, encoder.out_dim)
    return Forecaster(encoder, pooling, recipe.model, spec.horizon)


def _construct(recipe: Recipe, registry: Registry, kind: str, *args):
    """The recipe's ``kind`` plugin built with ``args``; a plugin's RecipeError (a setting that does not fit the
    data) is given the recipe's path and table."""
    choice = getattr(recipe, kind)
    info = registry.get(kind, choice.name)
    try:
        return info.cls(choice.config, *args)
    except RecipeError as error:
        raise RecipeError(f"{recipe.path}: [{kind}] ({choice.name}): {error}") from None
    except SocialXLSTMError:
        raise
    except Exception as error:  # noqa: BLE001 - a third-party plugin may raise anything
        raise PluginError(f"{kind} '{choice.name}' ({info.source}) failed to build: {type(error).__name__}: {error}") from error


def check_batch_positions(model: Forecaster, batch: Batch, spec: DatasetSpec) -> None:
    """Strict mode at the first batch: pooling that uses positions needs them in the batch, finite, ``[N, 2]``."""
    if model.pooling.uses_positions:
        require_positions(batch.positions_xy, spec.vd_ids)
