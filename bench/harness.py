"""What the benchmarks share: timing a step, peak memory, and running each case in its own process."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch


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


def run_cases(script: str, cases: list[list[str]], forwarded: list[str], rounds: int = 1) -> list[dict]:
    """Run ``script --child CASE...`` once per case in a fresh process; each prints one JSON line. With several
    ``rounds``, the cases take turns (a, b, a, b, ...), so that a machine whose speed drifts slows every case
    alike, and each case keeps the row of its median ``seconds``."""
    runs: list[list[dict]] = [[] for _ in cases]
    for _ in range(rounds):
        for case, rows in zip(cases, runs):
            command = [sys.executable, script, *forwarded, "--child", *case]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{' '.join(case)} failed:\n{done.stderr}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return [sorted(rows, key=lambda row: row.get("seconds", 0.0))[len(rows) // 2] for rows in runs]


def memory_label(device: str) -> str:
    return "peak CUDA MB" if device.startswith("cuda") else "peak RSS +MB"


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
