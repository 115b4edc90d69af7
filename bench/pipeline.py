"""Input pipeline benchmark: the share of a training step spent feeding it (window gather + collation, transfer).

    python bench/pipeline.py                                   # the default recipe, on the default device
    python bench/pipeline.py recipes/metr_la_week_xlstm.toml --set data.source=metr-la-week.h5
    python bench/pipeline.py --set trainer.device=cuda

Builds the recipe's data, model and trainer as ``python -m core.run`` does, then times ``--batches`` training
batches in three parts: taking the batch from the trainer's own loader (the window gather and the collation),
moving it to the device, and the trainer's step (forward, backward, optimizer). Prints a table and the input
pipeline's share of the whole.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.training import time_training  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default="recipes/shared_radius.toml")
    parser.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    recipe, device, medians = time_training(args.recipe, args.set, args.batches, args.warmup)
    whole = sum(medians.values())
    print(
        f"\ninput pipeline: {args.recipe} ({recipe.encoder.name}, batch {recipe.trainer.batch_size}) on {device}; "
        f"median of {args.batches} training batches after {args.warmup} warm-up"
    )
    print("| part | ms per batch | share |\n|---|---|---|")
    for part, seconds in medians.items():
        print(f"| {part} | {seconds * 1000:.1f} | {seconds / whole:.1%} |")
    feeding = medians["gather + collate"] + medians["to device"]
    print(f"\ninput pipeline (gather + collate + to device), share of a training batch: {feeding / whole:.1%}  (≤ 10%)")


if __name__ == "__main__":
    main()
