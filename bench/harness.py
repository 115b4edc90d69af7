"""What the benchmarks share: timing a step, peak memory, running each case in its own process, and timing a
recipe's training batches through the trainer itself."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from core.model import build_forecaster
from core.recipe import Recipe, load_recipe
from core.run import prepare_data
from core.training.distributed import Silent
from core.training.trainer import Trainer


def time_steps(step: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> dict[str, float]:
    """Median and first-step seconds of ``step``, and the peak memory (MB) of all its runs (CUDA: allocated,
    inputs and weights included; CPU: the process's peak resident memory above what it held before)."""

    def timed() -> float:
        started = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_before = _rss_mb()
    first = [timed() for _ in range(warmup)][0]
    median = statistics.median(timed() for _ in range(repeats))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = max(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before)
    return {"seconds": median, "first_step_s": first, "peak_mb": peak}


def run_cases(script: str, cases: list[list[str]], forwarded: list[str]) -> list[dict]:
    """Run ``script --child CASE...`` once per case in a fresh process; each prints one JSON line."""
    rows = []
    for case in cases:
        done = subprocess.run([sys.executable, script, *forwarded, "--child", *case], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{' '.join(case)} failed:\n{done.stderr}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def time_training(recipe_path: str, overrides: list[str], batches: int, warmup: int) -> tuple[Recipe, dict]:
    """Median seconds per training batch of a recipe, in three parts: taking the batch from the trainer's own
    loader (window gather + collation), moving it to the device, and the trainer's step (forward, backward,
    optimizer); built as ``python -m core.run`` builds it. Returns the resolved recipe and the medians."""
    recipe, registry = load_recipe(Path(recipe_path), overrides)
    torch.manual_seed(recipe.run.seed)
    prepared = prepare_data(recipe)
    spec = prepared.spec()
    model, collator = build_forecaster(recipe, registry, spec, prepared.data.source)
    parts = {"gather + collate": [], "to device": [], "step": []}
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(recipe, model, collator, prepared, spec, Path(run_dir), Silent())
        model.train()
        loader = iter(trainer.loader("train"))
        for i in range(warmup + batches):
            started = time.perf_counter()
            batch = next(loader, None) or next(loader := iter(trainer.loader("train", i)))
            fetched = time.perf_counter()
            batch = batch.to(trainer.device).canonical()
            _synchronize(trainer.device)
            moved = time.perf_counter()
            trainer.train_step(batch, 0, i + 1, boundary=True)
            _synchronize(trainer.device)
            if i >= warmup:
                for part, seconds in zip(parts, (fetched - started, moved - fetched, time.perf_counter() - moved)):
                    parts[part].append(seconds)
    return recipe, {part: statistics.median(times) for part, times in parts.items()} | {"device": str(trainer.device)}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def memory_label(device: str) -> str:
    return "peak CUDA MB" if device.startswith("cuda") else "peak RSS +MB"


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
