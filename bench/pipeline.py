"""Input pipeline benchmark: the share of a training step spent feeding it (window gather + collation, transfer).

    python bench/pipeline.py                                   # the default recipe, on the default device
    python bench/pipeline.py recipes/metr_la_week.toml --set data.source=metr-la-week.h5
    python bench/pipeline.py --set trainer.device=cuda

Builds the recipe's data, model and trainer as ``python -m core.run`` does, then times ``--batches`` training
batches in three parts: taking the batch from the trainer's own loader (the window gather and the collation),
moving it to the device, and the trainer's step (forward, backward, optimizer). Prints a table and the input
pipeline's share of the whole.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core.model import build_forecaster  # noqa: E402
from core.recipe import load_recipe  # noqa: E402
from core.run import prepare_data  # noqa: E402
from core.training.distributed import Silent  # noqa: E402
from core.training.trainer import Trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default="recipes/shared_radius.toml")
    parser.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    recipe, registry = load_recipe(Path(args.recipe), args.set)
    torch.manual_seed(recipe.run.seed)
    prepared = prepare_data(recipe)
    spec = prepared.spec()
    model, collator = build_forecaster(recipe, registry, spec, prepared.data.source)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(recipe, model, collator, prepared, spec, Path(run_dir), Silent())
        model.train()
        parts = {"gather + collate": [], "to device": [], "step": []}
        batches = iter(trainer.loader("train"))
        for i in range(args.warmup + args.batches):
            started = time.perf_counter()
            batch = next(batches, None) or next(batches := iter(trainer.loader("train", i)))
            fetched = time.perf_counter()
            batch = batch.to(trainer.device).canonical()
            synchronize(trainer.device)
            moved = time.perf_counter()
            trainer.train_step(batch, 0, i + 1, boundary=True)
            synchronize(trainer.device)
            if i >= args.warmup:
                for part, seconds in zip(parts, (fetched - started, moved - fetched, time.perf_counter() - moved)):
                    parts[part].append(seconds)

    medians = {part: statistics.median(times) for part, times in parts.items()}
    whole = sum(medians.values())
    print(
        f"\ninput pipeline: {args.recipe} ({recipe.encoder.name}, {spec.num_vds} VDs, "
        f"batch {recipe.trainer.batch_size}) on {trainer.device}; median of {args.batches} training batches "
        f"after {args.warmup} warm-up"
    )
    print("| part | ms per batch | share |\n|---|---|---|")
    for part, seconds in medians.items():
        print(f"| {part} | {seconds * 1000:.1f} | {seconds / whole:.1%} |")
    feeding = medians["gather + collate"] + medians["to device"]
    print(
        f"\ninput pipeline (gather + collate + to device), share of a training batch: {feeding / whole:.1%}"
        "  (target ≤ 10%)"
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
