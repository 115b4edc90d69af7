"""Social-xLSTM's public API for plugin authors: everything a plugin imports, under one distinct name.

A plugin is a module with a ``register_plugins`` hook that registers its classes::

    from social_xlstm import Encoder, EncoderInput, causal_over_padding, hookimpl

    class GruEncoder(Encoder):
        name = "gru"
        honours_time_padding = True
        ...

    @hookimpl
    def register_plugins(register):
        register(GruEncoder)

The contracts are the docstrings of ``Encoder``, ``LayerwiseEncoder``, ``Pooling``, ``Collator``, ``Head`` and
``DistributionHead``;
``social_xlstm.testing`` checks a plugin against them (``python -m core.plugins check NAME``).
"""

from core.api import (
    Batch,
    Collator,
    DatasetSpec,
    DistributedBatch,
    Encoder,
    EncoderInput,
    Head,
    LayerwiseEncoder,
    NoOptions,
    Pooling,
    Windows,
    require_positions,
    scatter_vds,
)
from core.errors import DataError, RecipeError
from core.heads import DEFAULT_LEVELS, DistributionConfig, DistributionHead, PointHead, central_intervals
from core.host.hookspecs import hookimpl
from core.model.neighbours import (
    EdgeRecordingPooling,
    NeighbourhoodConfig,
    NeighbourLists,
    NeighbourPooling,
    link_lists,
    safe_softmax,
    sparse_mean,
    weighted_mean,
)
from core.sequence import causal_over_padding, real_steps, roll_time

__all__ = [
    "DEFAULT_LEVELS",
    "Batch",
    "Collator",
    "DataError",
    "DatasetSpec",
    "DistributedBatch",
    "DistributionConfig",
    "DistributionHead",
    "Encoder",
    "EdgeRecordingPooling",
    "EncoderInput",
    "Head",
    "LayerwiseEncoder",
    "NeighbourLists",
    "NeighbourPooling",
    "NeighbourhoodConfig",
    "NoOptions",
    "PointHead",
    "Pooling",
    "RecipeError",
    "Windows",
    "causal_over_padding",
    "central_intervals",
    "hookimpl",
    "link_lists",
    "real_steps",
    "require_positions",
    "roll_time",
    "safe_softmax",
    "sparse_mean",
    "scatter_vds",
    "weighted_mean",
]
