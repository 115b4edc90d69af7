"""The model, after recipe and data: plugins assembled into a forecaster (``neighbours``: pooling's sparse lists)."""

from core.model.forecaster import Forecaster, build_forecaster, build_model, inner_layers

__all__ = ["Forecaster", "build_forecaster", "build_model", "inner_layers"]
