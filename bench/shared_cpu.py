"""The default run's training time on an idle CPU and on one that another process keeps busy, under OpenMP
settings side by side: the default (active spin-waiting), ``OMP_WAIT_POLICY=PASSIVE``, and one thread.

    python bench/shared_cpu.py [--epochs 1] [--load-processes 2]

Each case is ``python -m core.run recipes/shared_radius.toml`` in a fresh process (its training seconds from
``metrics.json``); the load is ``--load-processes`` pure-Python busy loops, started before and stopped after.
Prints a table of training seconds and, last, each setting's slowdown under load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "default (active wait)": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}
BUSY = "while True: pass"


def train_seconds(env: dict[str, str], epochs: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "core.run",
            "recipes/shared_radius.toml",
            "--set",
            f"trainer.epochs={epochs}",
            "--set",
            f"run.output_dir={out}",
            "--set",
            "trainer.figure_vds=0",
        ]
        clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
        done = subprocess.run(command, cwd=ROOT, env=clean | env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(done.stderr[-2000:])
        (metrics,) = Path(out).glob("*/metrics.json")
        return json.loads(metrics.read_text())["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--load-processes", type=int, default=2)
    args = parser.parse_args()
    rows = {}
    for name, env in SETTINGS.items():
        idle = train_seconds(env, args.epochs)
        load = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.load_processes)]
        try:
            busy = train_seconds(env, args.epochs)
        finally:
            for process in load:
                process.kill()
        rows[name] = (idle, busy)
    print(
        f"training seconds of recipes/shared_radius.toml, {args.epochs} epoch(s), {os.cpu_count()} CPUs; load: "
        f"{args.load_processes} busy processes"
    )
    print(f"{'setting':<26}{'idle s':>10}{'under load s':>14}{'slowdown':>10}")
    for name, (idle, busy) in rows.items():
        print(f"{name:<26}{idle:>10.1f}{busy:>14.1f}{busy / idle:>9.1f}x")


if __name__ == "__main__":
    main()
