"""Timing a recipe's training batches through the trainer itself (``bench/pipeline.py``, ``bench/social.py``)."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from core.model import build_forecaster
from core.recipe import Recipe, load_recipe
from core.run import prepare_data
from core.training.distributed import Silent
from core.training.engine import Engine
from core.training.loaders import Loaders
from core.training.trainer import Trainer


def time_training(
    recipe_path: str, overrides: list[str], batches: int, warmup: int, validations: int = 0
) -> tuple[Recipe, str, dict[str, float]]:
    """Median seconds per training batch of a recipe, in three parts: taking the batch from the trainer's own
    loader (window gather + collation), moving it to the device, and the trainer's step (forward, backward,
    optimizer); built as ``python -m core.run`` builds it; with ``validations``, also the median of that many
    passes over the validation split (``"validation"``). Returns the resolved recipe, the device and the
    medians."""
    recipe, registry = load_recipe(Path(recipe_path), overrides)
    torch.manual_seed(recipe.run.seed)
    prepared = prepare_data(recipe)
    spec = prepared.spec()
    model, collator = build_forecaster(recipe, registry, spec, prepared.data.source)
    parts = {"gather + collate": [], "to device": [], "step": []}
    with tempfile.TemporaryDirectory() as run_dir:
        engine = Engine(model, recipe.trainer, prepared.normaliser, recipe.data.target)
        loaders = Loaders(prepared, collator, recipe.trainer, recipe.run.seed, engine.device)
        trainer = Trainer(recipe, engine, loaders, prepared, spec, Path(run_dir), Silent())
        model.train()
        loader = iter(trainer.loaders.train(0))
        for i in range(warmup + batches):
            started = time.perf_counter()
            batch = next(loader, None) or next(loader := iter(trainer.loaders.train(i)))
            fetched = time.perf_counter()
            batch = batch.to(engine.device).canonical()
            _synchronize(engine.device)
            moved = time.perf_counter()
            trainer.train_step(batch, 0, i + 1, boundary=True)
            _synchronize(engine.device)
            if i >= warmup:
                for part, seconds in zip(parts, (fetched - started, moved - fetched, time.perf_counter() - moved)):
                    parts[part].append(seconds)
        for _ in range(validations):
            started = time.perf_counter()
            engine.evaluate(loaders.evaluate("val"))
            parts.setdefault("validation", []).append(time.perf_counter() - started)
    return recipe, str(engine.device), {part: statistics.median(times) for part, times in parts.items()}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
