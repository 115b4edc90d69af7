"""Encoder benchmark: one training step (forward + backward + Adam) of each encoder on the same batch.

    python bench/encoders.py                                   # CPU, float32, eager
    python bench/encoders.py --precision bf16-mixed --compile  # the fast CPU configuration
    python bench/encoders.py --device cuda --precision bf16-mixed

    python bench/encoders.py --encoders lstm xlstm_package xlstm_shared per_vd_loop xlstm_per_vd  # + references

Each encoder runs in its own process (so peak memory is its own), three times, the encoders taking turns (so a
machine whose speed drifts slows them alike; the median counts): N VDs × B samples × T steps, E = 64, xLSTM 4
blocks with sLSTM at [1], LSTM 2 layers. By default ``lstm``, ``xlstm_shared`` (also with ``recompute``:
activations recomputed in the backward pass) and ``xlstm_per_vd`` (about four minutes on 2 CPU cores); the
references ``xlstm_package`` (the xlstm package's own stack) and
``per_vd_loop`` (a Python loop of N package stacks, minutes at N = 207) on request. Prints a table, then the
ratios: xLSTM step / LSTM step, per-VD / shared, xLSTM peak memory / LSTM's, and those of the references.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.harness import memory_label, run_cases, time_steps  # noqa: E402
from core.api import DatasetSpec, EncoderInput  # noqa: E402
from plugins.encoders.lstm import LSTMConfig, LSTMEncoder  # noqa: E402
from plugins.encoders.xlstm_per_vd import PerVDLoop, PerVDXLSTMEncoder  # noqa: E402
from plugins.encoders.xlstm_shared import SharedXLSTMConfig, SharedXLSTMEncoder, XLSTMConfig, build_stack  # noqa: E402

ARCHITECTURE = {"embedding_dim": 64, "num_blocks": 4, "slstm_at": (1,)}
DEFAULT = ["lstm", "xlstm_shared", "xlstm_shared_recompute", "xlstm_per_vd"]


def package_stack(spec: DatasetSpec) -> SharedXLSTMEncoder:
    """``xlstm_shared`` as it was first written: running the xlstm package's stack itself (vanilla backend)."""
    encoder = SharedXLSTMEncoder(SharedXLSTMConfig(**ARCHITECTURE, slstm_backend="vanilla"), spec)
    encoder.stack = build_stack(XLSTMConfig(**ARCHITECTURE), spec.history, "vanilla")
    return encoder


ENCODERS = {
    "lstm": lambda spec, backend: LSTMEncoder(LSTMConfig(embedding_dim=64, num_layers=2), spec),
    "xlstm_package": lambda spec, backend: package_stack(spec),
    "xlstm_shared": lambda spec, backend: SharedXLSTMEncoder(
        SharedXLSTMConfig(**ARCHITECTURE, slstm_backend=backend), spec
    ),
    "xlstm_shared_recompute": lambda spec, backend: SharedXLSTMEncoder(
        SharedXLSTMConfig(**ARCHITECTURE, slstm_backend=backend, recompute=True), spec
    ),
    "xlstm_per_vd": lambda spec, backend: PerVDXLSTMEncoder(XLSTMConfig(**ARCHITECTURE), spec),
    "per_vd_loop": lambda spec, backend: PerVDLoop(PerVDXLSTMEncoder(XLSTMConfig(**ARCHITECTURE), spec)),
}


def measure(name: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    device = torch.device(args.device)
    spec = DatasetSpec(tuple(f"vd{i}" for i in range(args.vds)), ("speed",), 2, args.steps, 12)
    encoder = ENCODERS[name](spec, args.slstm_backend).to(device)
    forward = torch.compile(encoder) if args.compile and name != "per_vd_loop" else encoder
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-4)
    inputs = EncoderInput(
        values=torch.randn(args.batch, args.vds, args.steps, 1, device=device),
        observed=torch.ones(args.batch, args.vds, args.steps, 1, dtype=torch.bool, device=device),
        covariates=torch.randn(args.batch, args.steps, 2, device=device),
        step_mask=None,
    )
    dtype = {"32": None, "bf16-mixed": torch.bfloat16}[args.precision]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = forward(inputs)[:, :, -1].float().square().mean()
        loss.backward()
        optimizer.step()

    timing = time_steps(step, device, args.warmup, args.repeats)
    return {
        "encoder": name,
        **timing,
        "samples_per_s": args.batch / timing["seconds"],
        "parameters": sum(p.numel() for p in encoder.parameters()),
        "stack": type(getattr(encoder, "stack", encoder)).__name__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["32", "bf16-mixed"], default="32")
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoders (not the loop)")
    parser.add_argument("--slstm-backend", default="auto", choices=["auto", "vanilla", "cuda"], help="for xlstm_shared")
    parser.add_argument("--vds", type=int, default=207)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per process")
    parser.add_argument("--rounds", type=int, default=3, help="processes per encoder, taking turns")
    parser.add_argument("--encoders", nargs="+", default=DEFAULT, choices=list(ENCODERS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return

    forwarded = [a for a in sys.argv[1:] if a != "--encoders" and a not in args.encoders]
    cases = [[name] for name in args.encoders]
    rows = {row["encoder"]: row for row in run_cases(__file__, cases, forwarded, args.rounds)}
    memory = memory_label(args.device)
    print(
        f"\nencoders: N={args.vds} B={args.batch} T={args.steps} E=64 on {args.device}, precision "
        f"{args.precision}{', torch.compile' if args.compile else ''}; median of {args.repeats} steps (fwd+bwd+Adam) "
        f"after {args.warmup} warm-up, the median of {args.rounds} processes per encoder taking turns"
    )
    print(f"| encoder | runs on | step s | first step s | samples/s | {memory} | parameters |")
    print("|---|---|---|---|---|---|---|")
    for r in rows.values():
        print(
            f"| {r['encoder']} | {r['stack']} | {r['seconds']:.3f} | {r['first_step_s']:.1f} | "
            f"{r['samples_per_s']:.1f} | {r['peak_mb']:.0f} | {r['parameters']:,} |"
        )
    ratios = [
        ("xlstm_shared / lstm, step", "xlstm_shared", "lstm", "seconds", "≤ 3 on CPU"),
        ("xlstm_per_vd / xlstm_shared, step", "xlstm_per_vd", "xlstm_shared", "seconds", "≤ 1.3"),
        ("xlstm_shared / lstm, peak memory", "xlstm_shared", "lstm", "peak_mb", "≤ 2"),
        ("xlstm_shared_recompute / lstm, peak memory", "xlstm_shared_recompute", "lstm", "peak_mb", "≤ 2"),
        ("xlstm_shared_recompute / xlstm_shared, step", "xlstm_shared_recompute", "xlstm_shared", "seconds", "-"),
        ("xlstm_per_vd / lstm, peak memory", "xlstm_per_vd", "lstm", "peak_mb", "≤ 2"),
        (
            "xlstm_package / xlstm_shared, step (speed-up of the grouped stack)",
            "xlstm_package",
            "xlstm_shared",
            "seconds",
            "> 1",
        ),
        ("per_vd_loop / xlstm_per_vd, step", "per_vd_loop", "xlstm_per_vd", "seconds", "≥ 10"),
    ]
    print()
    for label, a, b, key, target in ratios:
        if a in rows and b in rows:
            print(f"{label}: {rows[a][key] / rows[b][key]:.2f}x  (target {target})")


if __name__ == "__main__":
    main()
