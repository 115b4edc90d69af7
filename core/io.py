"""Atomic writes: a temporary file in the same folder, flushed to disk, renamed over the target once complete.

A crash (even SIGKILL) at any point leaves either the previous file or the new one, never a partial file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from core.errors import TrainingError


def atomic_write(path: str | Path, write: Callable[[Path], None], previous: str | Path | None = None) -> Path:
    """Call ``write(tmp)``, fsync it, then rename ``tmp`` over ``path``; the replaced file is kept as ``previous``
    if given. A crash leaves the previous file intact."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def save_json(obj: Any, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8"))


def save_text(text: str, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_checkpoint(state: dict[str, Any], path: str | Path, previous: str | Path | None = None) -> Path:
    return atomic_write(path, lambda tmp: torch.save(state, tmp), previous)


def load_checkpoint(path: str | Path, keys: tuple[str, ...] = ("model",)) -> dict[str, Any]:
    """A checkpoint on the CPU; a missing, truncated or corrupt file, or one without ``keys``, is an error naming it."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise TrainingError(f"{path}: checkpoint not found") from None
    except Exception as error:  # noqa: BLE001 - whatever a truncated or corrupt file makes torch.load raise
        raise TrainingError(f"{path}: unreadable checkpoint ({type(error).__name__}: {error})") from None
    missing = [key for key in keys if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise TrainingError(f"{path}: incomplete checkpoint (no {', '.join(missing)})")
    return checkpoint
