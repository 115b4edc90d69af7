"""What a run saves and how it resumes.

``best_model.pt`` is written whenever val MAE improves; ``last.pt`` (resumable) after every epoch, every
``checkpoint_every`` batches and on SIGINT/SIGTERM, the one it replaces kept as ``last.prev.pt``; all atomically
(``core.io``), by rank 0 alone. ``--resume`` reads ``last.pt``, or ``last.prev.pt`` when ``last.pt`` is missing
or unreadable, and refuses a recipe change that would change what the saved state means.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import attrs

from core.api import DatasetSpec
from core.data.windows import Prepared
from core.errors import TrainingError
from core.io import load_checkpoint, save_checkpoint
from core.recipe import Recipe, flatten, load_recipe


@attrs.define
class TrainState:
    """Progress that ``last.pt`` carries across a resume."""

    epoch: int = 0  # epochs completed
    global_step: int = 0
    best_val_mae: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    train_seconds: float = 0.0
    history: list[dict[str, float]] = attrs.Factory(list)
    skipped_steps: int = 0  # non-finite steps skipped (on_nonfinite = "skip")
    skipped_in_a_row: int = 0
    # the epoch in progress, for a mid-epoch last.pt: batches done and what they have measured so far
    batch: int = 0
    epoch_losses: list[float] = attrs.Factory(list)
    epoch_norms: list[float] = attrs.Factory(list)
    epoch_samples: int = 0
    epoch_seconds: float = 0.0

    def position(self) -> str:
        return f"epoch {self.epoch + 1}, batch {self.batch}" if self.batch else f"end of epoch {self.epoch}"


def model_card(recipe: Recipe, prepared: Prepared, spec: DatasetSpec) -> dict[str, Any]:
    """What ``core.experiments.predict`` needs beside the weights to apply them to new data."""
    return {
        "recipe": recipe.to_dict(),
        "normaliser": prepared.normaliser.to_dict(),
        "profile": prepared.profile.to_dict(),
        "vd_ids": list(spec.vd_ids),
        "input_features": list(prepared.input_features),
        "target": recipe.data.target,
    }


def save_best(run_dir: Path, model: dict[str, Any], epoch: int, val_mae: float, card: dict[str, Any]) -> None:
    """``best_model.pt``: the weights ``model`` of ``epoch`` and what predicting with them needs (``model_card``)."""
    save_checkpoint({"model": model, "epoch": epoch, "val_mae": val_mae, **card}, run_dir / "best_model.pt")


def save_best_weights(run_dir: Path, best: dict[str, Any], model: dict[str, Any]) -> None:
    """``best_model.pt`` as ``best`` (what ``load_best`` gave) with the weights ``model`` (e.g. calibrated)."""
    save_checkpoint({**best, "model": model}, run_dir / "best_model.pt")


def load_best(run_dir: Path) -> dict[str, Any]:
    return load_checkpoint(run_dir / "best_model.pt")


def save_last(run_dir: Path, trainer: dict[str, Any], recipe: Recipe, vd_ids: tuple[str, ...]) -> None:
    """``last.pt``: a ``Trainer.state_dict()`` with the data's VDs and the recipe (what ``--resume`` may not
    change: ``resume_changes``), keeping the file it replaces as ``last.prev.pt``."""
    save_checkpoint(
        trainer | {"vd_ids": list(vd_ids), "recipe": recipe.to_dict()},
        run_dir / "last.pt",
        previous=run_dir / "last.prev.pt",
    )


def resumable(run_dir: Path, recipe: Recipe, spec: DatasetSpec) -> tuple[dict[str, Any], list[str]]:
    """The run's ``last.pt`` (``load_last``) and the safe changes ``recipe`` makes to the run's own recipe
    (``resume_changes``)."""
    checkpoint = load_last(run_dir, spec)
    saved = checkpoint.get("recipe") or load_recipe(run_dir / "recipe.toml")[0].to_dict()
    return checkpoint, resume_changes(saved, recipe, run_dir)


LAST_KEYS = ("model", "optimizer", "scheduler", "scaler", "state", "rng")


def load_last(run_dir: Path, spec: DatasetSpec) -> dict[str, Any]:
    """``last.pt``, or ``last.prev.pt`` (saying so) when ``last.pt`` is missing, truncated or corrupt."""
    problems = []
    for path in (run_dir / "last.pt", run_dir / "last.prev.pt"):
        try:
            checkpoint = load_checkpoint(path, LAST_KEYS)
            break
        except TrainingError as error:
            problems.append(str(error))
    else:
        raise TrainingError(f"--resume {run_dir}: no usable checkpoint: {'; '.join(problems)}")
    if problems:
        state = checkpoint["state"]
        print(
            f"warning: {problems[0]}; falling back to {path} "
            f"(epoch {state['epoch']}, batch {state.get('batch', 0)} done)",
            file=sys.stderr,
        )
    saved = checkpoint.get("vd_ids", [])
    if list(saved) != list(spec.vd_ids):
        only_ckpt = sorted(set(saved) - set(spec.vd_ids))[:5]
        only_data = sorted(set(spec.vd_ids) - set(saved))[:5]
        raise TrainingError(
            f"{path}: the checkpoint's VDs differ from the data's: "
            f"only in checkpoint {only_ckpt}, only in data {only_data}"
        )
    return checkpoint


# Recipe keys a resumed run may change: they change neither the saved model nor what its saved position means.
SAFE_ON_RESUME = frozenset(
    {
        "run.name",
        "run.output_dir",
        "trainer.epochs",
        "trainer.patience",
        "trainer.figure_vds",
        "trainer.checkpoint_every",
        "trainer.num_workers",
        "trainer.eval_batch_size",
        "trainer.on_nonfinite",
        "trainer.max_skipped_steps",
        "trainer.device",
        "trainer.compile",
    }
)


def resume_changes(saved: dict, recipe: Recipe, run_dir: Path) -> list[str]:
    """The safe changes (``SAFE_ON_RESUME``) from the ``saved`` recipe (as ``Recipe.to_dict``) to ``recipe``, as
    'KEY OLD -> NEW'; any other change is an error naming the keys and both values."""
    before, after = flatten(saved), flatten(recipe.to_dict())
    changed = [key for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)]
    show = lambda key: f"{key} {before.get(key, '(unset)')!r} -> {after.get(key, '(unset)')!r}"  # noqa: E731
    unsafe = [show(key) for key in changed if key not in SAFE_ON_RESUME]
    if unsafe:
        raise TrainingError(
            f"--resume {run_dir}: the recipe changes {'; '.join(unsafe[:5])}{'; ...' if len(unsafe) > 5 else ''}: "
            "that changes what the saved model or its position in the epoch means; resume with the run's values, "
            f"or start a new run. Safe to change: {', '.join(sorted(SAFE_ON_RESUME))}"
        )
    return [show(key) for key in changed]
