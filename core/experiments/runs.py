"""A finished run directory as the experiments read it: its resolved recipe, ``metrics.json`` and history."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import attrs

from core.data.config import DataConfig
from core.errors import CompareError

# what makes two runs' test windows (and so their baselines) the same
SPLIT_KEYS = ("source", "synthetic_seed", "target", "history", "horizon", "split", "vds", "min_history", "gap_steps")
DATA_DEFAULTS = {
    field.name: list(field.default) if isinstance(field.default, tuple) else field.default
    for field in attrs.fields(DataConfig)
}


@attrs.frozen
class RunRecord:
    """What a finished run directory holds, as read by compare."""

    path: Path
    recipe: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, float]]

    @property
    def name(self) -> str:
        return self.path.name

    def split_key(self) -> str:
        return json.dumps([self.recipe["data"][key] for key in SPLIT_KEYS])


def load_run(path: Path) -> RunRecord:
    """A finished run directory; anything else is an error naming the folder."""
    if not path.is_dir():
        raise CompareError(f"{path}: {'not a folder' if path.exists() else 'no such folder'}")
    if not (path / "recipe.toml").is_file():
        raise CompareError(f"{path}: not a run directory (no recipe.toml)")
    if not (path / "metrics.json").is_file():
        raise CompareError(
            f"{path}: unfinished run (no metrics.json); finish it with: python -m core.run --resume {path}"
        )
    history = path / "training_history.json"
    try:
        recipe = tomllib.loads((path / "recipe.toml").read_text(encoding="utf-8"))
        recipe["data"] = {**DATA_DEFAULTS, **recipe.get("data", {})}  # a run from before a data key has its default
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        return RunRecord(
            path, recipe, metrics, json.loads(history.read_text(encoding="utf-8")) if history.is_file() else []
        )
    except (OSError, UnicodeDecodeError, ValueError) as error:  # tomllib and json errors are ValueErrors
        raise CompareError(f"{path}: unreadable run files ({type(error).__name__}: {error})") from None
