"""How much can a VD's neighbours tell about its future, linearly? Per-VD ridge regressions on the same split,
windows and masked metrics as training, with growing neighbour sets, side by side.

    python bench/neighbour_signal.py DATA.h5 [--lags 3] [--nearest 8]

For every VD (one multi-output fit for the 12 steps): inputs = its own last 12 readings, time of day (sin, cos)
and weekend at the last input step, plus the last ``--lags`` readings of the VDs in the set (none; the
``--nearest`` nearest; every VD); the ridge penalty is chosen per VD on the validation windows. The oracle row
adds the nearest VDs' *future* hour (what perfect knowledge of the neighbours' next hour would give): a ceiling,
not a forecast. Prints test MAE @3/@6/@12/avg (missing targets masked).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.data import read_hdf5  # noqa: E402
from core.data.config import DataConfig  # noqa: E402
from core.data.windows import prepare  # noqa: E402

PENALTIES = (0.1, 1.0, 10.0, 100.0, 1000.0)
STEPS = (3, 6, 12)


def design(raw, covariates, starts, vd, others, lags, history, horizon, oracle=False):
    """[W, D] inputs of VD ``vd`` for windows at ``starts``: own history, covariates at the last input step, and
    the last ``lags`` readings of ``others`` (``oracle``: their readings over the horizon)."""
    last = starts + history - 1
    parts = [raw[starts[:, None] + np.arange(history), vd], covariates[last]]
    if len(others):
        offsets = np.arange(1, horizon + 1) if oracle else -np.arange(lags)
        parts.append(raw[(last[:, None] + offsets)[:, :, None], others[None, None]].reshape(len(starts), -1))
    return np.concatenate([*parts, np.ones((len(starts), 1))], 1)


def ridge(x_train, y_train, penalty):
    return np.linalg.solve(x_train.T @ x_train + penalty * np.eye(x_train.shape[1]), x_train.T @ y_train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("--lags", type=int, default=3)
    parser.add_argument("--nearest", type=int, default=8)
    args = parser.parse_args()
    prepared = prepare(read_hdf5(args.data), DataConfig(weekend=True))
    series = prepared.series
    target = series.target_at(torch.arange(series.steps))
    mask = target.isfinite().numpy()
    raw = series.z_target(target).nan_to_num(0.0).numpy()  # z-scored, 0 where missing
    covariates = series.covariates.numpy()
    std = prepared.normaliser.std[prepared.target_index]
    history, horizon = series.history, series.horizon
    starts = {part: prepared.splits[part].starts.numpy() for part in ("train", "val", "test")}
    n = raw.shape[1]
    positions = prepared.spec().positions_xy.numpy()
    distance = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    nearest = np.argsort(distance, 1)[:, : args.nearest]
    sets = {
        "own history + calendar": lambda vd: np.array([], int),
        f"+ {args.nearest} nearest VDs' last {args.lags}": lambda vd: nearest[vd],
        f"+ every VD's last {args.lags}": lambda vd: np.delete(np.arange(n), vd),
        f"oracle: + {args.nearest} nearest VDs' next hour": lambda vd: nearest[vd],
    }
    print(
        f"{args.data}: {n} VDs; windows train {len(starts['train'])}, val {len(starts['val'])}, test "
        f"{len(starts['test'])}; test MAE"
    )
    print(f"{'inputs':<52}" + "".join(f"{'@' + str(s):>8}" for s in STEPS) + f"{'@avg':>8}")
    for label, members in sets.items():
        abs_sum, count = np.zeros(horizon), np.zeros(horizon)
        for vd in range(n):
            others = members(vd)
            x = {
                p: design(raw, covariates, s, vd, others, args.lags, history, horizon, label.startswith("oracle"))
                for p, s in starts.items()
            }
            future = {p: s[:, None] + history + np.arange(horizon) for p, s in starts.items()}
            y = {p: raw[future[p], vd] for p in starts}  # [W, H]
            ok = {p: mask[future[p], vd] for p in starts}
            full = ok["train"].all(1)
            fits = {pen: ridge(x["train"][full], y["train"][full], pen) for pen in PENALTIES}
            val_error = {pen: (np.abs(x["val"] @ w - y["val"]) * ok["val"]).sum() for pen, w in fits.items()}
            error = np.abs(x["test"] @ fits[min(val_error, key=val_error.get)] - y["test"]) * std * ok["test"]
            abs_sum += error.sum(0)
            count += ok["test"].sum(0)
        errors = abs_sum / count
        print(f"{label:<52}" + "".join(f"{errors[s - 1]:>8.2f}" for s in STEPS) + f"{errors.mean():>8.2f}")


if __name__ == "__main__":
    main()
