"""What a run prints while it trains: a progress bar per epoch, and notes above it."""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
from tqdm import tqdm


def bar(epoch: int, epochs: int, batches: int, done: int, enabled: bool = True) -> tqdm:
    """The bar of ``epoch`` of ``epochs``, ``done`` of its ``batches`` already done (a resumed epoch). On a
    terminal it redraws; in a log file it prints little more than one line per epoch."""
    return tqdm(
        total=batches,
        initial=done,
        desc=f"epoch {epoch}/{epochs}",
        unit="batch",
        mininterval=0.5 if sys.stderr.isatty() else 60.0,
        dynamic_ncols=True,
        disable=not enabled,
    )


def show_batch(progress: tqdm, losses: list[float], samples_per_s: float) -> None:
    """One more batch done: the epoch's mean loss so far and its throughput."""
    loss = np.mean(losses or [math.nan])
    progress.set_postfix(loss=f"{loss:.4f}", samples_s=f"{samples_per_s:.0f}", refresh=False)
    progress.update()


def show_epoch(progress: tqdm, train: dict[str, float], val: dict[str, Any]) -> None:
    progress.set_postfix(
        loss=f"{train['loss']:.4f}",
        val_mae=f"{val['model']['mae@avg']:.4f}",
        samples_s=f"{train['samples_per_s']:.0f}",
    )


def note(message: str) -> None:
    """A line above the bar (early stopping, a skipped step)."""
    tqdm.write(message)
