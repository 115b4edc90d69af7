"""No framework tax: the trainer's epoch beside a bare PyTorch loop, on the same STID model and batches.

    python bench/tax.py                                        # 716 and 8,600 VDs, a year at 15 minutes
    python bench/tax.py --sizes 50 --steps 2000 --batches 2 --rounds 1               # a smoke run

For each size, the network of ``bench/scale.py`` (LargeST's layout, imported) is built as ``python -m core.run``
builds it, in a fresh process; ``--batches`` training batches are collated once and kept in memory. Then, in
turns (``--rounds``), the same batches go through (1) a bare loop written by hand: forward, the head's loss
averaged over the target mask, backward, gradient clipping, AdamW's step; and (2) the trainer's epoch
(``Trainer.train_epoch``: the engine's step, the schedule, the TensorBoard scalars, the progress bar), fed the
same batches. Both start from the same weights with the same optimiser settings. Prints the median seconds per
batch of each and framework / bare (target <= 1.10).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scale import build, import_stage, run_child, write_largest  # noqa: E402

TARGET_RATIO = 1.10


def main() -> None:
    args = parser().parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[1]), args)))
        return
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        for size in (int(size) for size in args.sizes.split(",")):
            network = Path(folder) / str(size)
            write_largest(network, size, args.steps * args.interval)
            with contextlib.redirect_stdout(io.StringIO()):  # the import's summary
                import_stage(network, args)
            rows.append({"vds": size, **run_child(__file__, ["tax", str(network / "network.h5")])})
    print(table(rows, args))


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="716,8600", help="VDs per network, comma-separated")
    parser.add_argument("--steps", type=int, default=35040, help="15-minute steps (35,040: a year)")
    parser.add_argument("--pooling", default="none", help="STID's pooling")
    parser.add_argument("--batches", type=int, default=20, help="training batches per round")
    parser.add_argument("--rounds", type=int, default=5, help="turns of bare loop and framework")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per batch")
    parser.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE", help="recipe overrides")
    parser.add_argument("--workdir", help="where the generated files go (default: the system's temporary folder)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)  # tax FILE
    parser.set_defaults(interval=900, contiguous=False)  # bench/scale.py's import at 15 minutes
    return parser


class InMemory:
    """The trainer's loaders, every epoch giving the same batches from memory."""

    def __init__(self, batches: list, batch_size: int):
        self.batches, self.batch_size = batches, batch_size

    def train(self, epoch: int, skip: int = 0) -> list:
        return self.batches[skip:]

    def samples(self, batch: int) -> int:
        return self.batch_size


def child(source: Path, args: argparse.Namespace) -> dict:
    import torch

    from core.training import progress
    from core.training.metrics import masked_mean

    with tempfile.TemporaryDirectory() as folder:
        trainer = build(source, args.pooling, args, Path(folder))
        engine = trainer.engine
        loader = itertools.islice(trainer.loaders.train(0), args.batches)
        batches = [batch.to(engine.device).canonical() for batch in loader]
        trainer.loaders = InMemory(batches, args.batch_size)
        model = copy.deepcopy(trainer.model)
        cfg = trainer.cfg
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        def bare() -> None:
            model.train()
            for batch in batches:
                loss = masked_mean(model.head.loss(model(batch), batch.target), batch.target_mask)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

        def framework() -> None:
            trainer.state.batch = 0
            with progress.bar(1, 1, len(batches), 0, enabled=False) as bar:
                trainer.train_epoch(1, len(batches), bar)

        times = {"bare": [], "framework": []}
        for _ in range(args.rounds):
            for name, loop in (("bare", bare), ("framework", framework)):
                started = time.perf_counter()
                loop()
                times[name].append((time.perf_counter() - started) / len(batches))
        trainer.logger.close()
    return {name: statistics.median(values) for name, values in times.items()}


def table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"\nframework tax: STID ({args.pooling}), median of {args.rounds} rounds of {args.batches} batches of "
        f"{args.batch_size} windows, the batches in memory",
        "| VDs | bare ms per batch | framework ms per batch | framework / bare | within |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = row["framework"] / row["bare"]
        lines.append(
            f"| {row['vds']} | {row['bare'] * 1000:.1f} | {row['framework'] * 1000:.1f} | {ratio:.3f} | "
            f"{'yes' if ratio <= TARGET_RATIO else 'NO'} |"
        )
    return "\n".join(lines) + f"\n(target: framework / bare <= {TARGET_RATIO})"


if __name__ == "__main__":
    main()
