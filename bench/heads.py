"""What a distribution head costs in training time: one recipe's training batch and validation pass with each head,
side by side in one run.

    python bench/heads.py recipes/metr_la_week.toml --set data.source=metr-la-week.h5

Every head is timed through the trainer itself (``bench/training.py``: window gather, collation, transfer,
forward, backward, optimizer), median of ``--batches`` batches after warm-up, and a validation pass (with a
distribution head's coverage, width and CRPS), median of 3; each in its own process, the heads taking turns for
``--rounds`` rounds. Prints a table, then each head's time per epoch (the batches of one epoch and a validation
pass) as a ratio to ``point``'s (issue target: at most 1.2x).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import run_cases  # noqa: E402
from bench.training import time_training  # noqa: E402
from core.run import prepare_data  # noqa: E402

HEADS = ['{name = "point"}', '{name = "quantile"}', '{name = "gaussian"}', '{name = "laplace"}']


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        overrides = [*args.set, f"head={args.child[0]}"]
        recipe, _, medians = time_training(args.recipe, overrides, args.batches, args.warmup, validations=3)
        validation = medians.pop("validation")
        batch = sum(medians.values())
        batches = math.ceil(len(prepare_data(recipe).splits["train"]) / recipe.trainer.batch_size)
        print(json.dumps({"seconds": batch, "validation": validation, "epoch": batches * batch + validation}))
        return

    forwarded = [args.recipe, "--batches", str(args.batches), "--warmup", str(args.warmup)]
    forwarded += [f"--set={value}" for value in args.set]
    rows = run_cases(__file__, [[head] for head in HEADS], forwarded, args.rounds)
    print(f"\nthe heads' training cost: {args.recipe}; median of {args.batches} batches after {args.warmup}")
    print("| head | s per batch | ÷ point | s per validation | s per epoch | ÷ point |\n|---|---|---|---|---|---|")
    base = rows[0]
    for head, row in zip(HEADS, rows, strict=True):
        print(
            f"| `{head}` | {row['seconds']:.4f} | {row['seconds'] / base['seconds']:.2f}x | {row['validation']:.2f} "
            f"| {row['epoch']:.1f} | {row['epoch'] / base['epoch']:.2f}x |"
        )
    slowest = max(r["epoch"] for r in rows[1:]) / base["epoch"]
    print(f"\nslowest head / point, per epoch: {slowest:.2f}x  (target ≤ 1.2)")


if __name__ == "__main__":
    main()
