"""What social pooling costs in training time: one recipe's training batch with pooling ``none`` and with a pooling
acting ``last``, at ``every_step`` and ``interleaved``, side by side in one run.

    python bench/social.py recipes/metr_la_week_stid.toml --set data.source=metr-la-week.h5
    python bench/social.py recipes/metr_la_week_stid.toml --pooling '{name = "radius", radius_m = 1500.0}'

Every configuration is timed through the trainer itself (``bench/training.py``: window gather, collation,
transfer, forward, backward, optimizer), median of ``--batches`` batches after warm-up, each in its own
process. Prints a table, then each configuration's time per batch as a ratio to ``none``'s (issue target:
a social configuration trains in ≤ 1.5x the time of its ``none`` counterpart).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import run_cases  # noqa: E402
from bench.training import time_training  # noqa: E402

MODES = ["last", "every_step", "interleaved"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE")
    parser.add_argument("--pooling", default='{name = "learned_graph", k = 8}', help="an inline [pooling] table")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        pooling, social = args.child
        overrides = [*args.set, f"pooling={pooling}", f"model.social={social}"]
        _, _, medians = time_training(args.recipe, overrides, args.batches, args.warmup)
        print(json.dumps({"seconds": sum(medians.values())}))
        return

    cases = [['{name = "none"}', "last"]] + [[args.pooling, mode] for mode in MODES]
    forwarded = [args.recipe, "--batches", str(args.batches), "--warmup", str(args.warmup)]
    forwarded += [f"--set={value}" for value in args.set]
    rows = run_cases(__file__, cases, forwarded)
    print(f"\nsocial pooling's training cost: {args.recipe}; median of {args.batches} batches after {args.warmup}")
    print("| pooling | social | s per batch | ÷ none |\n|---|---|---|---|")
    base = rows[0]["seconds"]
    for (pooling, social), row in zip(cases, rows):
        print(f"| `{pooling}` | {social} | {row['seconds']:.3f} | {row['seconds'] / base:.2f}x |")
    print(f"\nslowest social / none: {max(r['seconds'] for r in rows[1:]) / base:.2f}x  (target ≤ 1.5)")


if __name__ == "__main__":
    main()
