"""``python -m core.predict RUN_DIR --data FILE.h5 [--out preds.h5] [--latest]``: forecast with a trained run.

The run's ``best_model.pt`` is applied, with its resolved ``recipe.toml`` and the normaliser fitted on its
training part (never re-fitted on the new data), to every window of FILE.h5 that has a full history, or only to
the latest one. The output HDF5 file (written atomically) holds::

    forecast            float32 [W, H, N]     the target in its own units (the head's point forecast: a distribution
                                              head's median); NaN for a VD that sits a window out (min_history)
    forecast_quantiles  float32 [W, H, N, L]  a distribution head only: the forecast's quantiles at quantile_levels,
                                              calibrated (the offsets saved in best_model.pt), ascending along L
    quantile_levels     float64 [L]           a distribution head only: the levels, ascending (0.5 among them)
    issued_at           int64 [W]             the time of each window's last input step (the file's epoch seconds)
    target_time         int64 [W, H]          the times forecast: issued_at + (1 .. H) x the file's step
    vd_ids              str [N]               the model's VDs, in its order
    attrs               target, run_dir, data, step_seconds, history, horizon, epoch (of best_model.pt), head
"""

from __future__ import annotations

import argparse
from pathlib import Path

import attrs
import h5py
import numpy as np
import torch

from core.api import Collator
from core.data.dataset import TrafficData
from core.data.hdf5 import read_hdf5
from core.data.profile import Profile
from core.data.windows import Normaliser, Series, WindowDataset, build_series, dataset_spec, gap_lead, profile_name
from core.errors import DataError, TrainingError, run_cli
from core.io import atomic_write, load_checkpoint
from core.model import build_forecaster
from core.recipe import Recipe, TrainerConfig, load_recipe
from core.training.engine import Engine
from core.training.loaders import batches

CHECKPOINT_KEYS = ("model", "normaliser", "vd_ids", "input_features", "target")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core.predict", description="Forecast every window of an HDF5 file with a trained run."
    )
    parser.add_argument("run_dir", type=Path, help="a run directory (with recipe.toml and best_model.pt)")
    parser.add_argument(
        "--data", type=Path, required=True, help="HDF5 file of the project's schema, with the run's VDs and features"
    )
    parser.add_argument("--out", type=Path, help="output HDF5 file (default RUN_DIR/predictions.h5)")
    parser.add_argument(
        "--latest", action="store_true", help="forecast only the window that ends at the file's last step"
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    args = parser.parse_args(argv)
    return run_cli(
        lambda: predict(args.run_dir, args.data, args.out or args.run_dir / "predictions.h5", args.latest), args.debug
    )


def predict(run_dir: Path, data_path: Path, out: Path, latest: bool = False) -> int:
    """Load the run, forecast the file's windows, write ``out`` and print a one-line summary."""
    if not (run_dir / "recipe.toml").is_file():
        raise TrainingError(f"{run_dir}: not a run directory (no recipe.toml)")
    recipe, registry = load_recipe(run_dir / "recipe.toml")
    checkpoint = load_checkpoint(run_dir / "best_model.pt", CHECKPOINT_KEYS)
    normaliser = trained_normaliser(checkpoint, run_dir / "best_model.pt")
    window = recipe.data.history + gap_lead(recipe.data.min_history, recipe.data.gap_steps)  # the steps cut reads
    data = match_model(
        read_hdf5(data_path, recipe.data.store, last_steps=window if latest else None),
        tuple(checkpoint["vd_ids"]),
        (*data_features(checkpoint), checkpoint["target"]),
        subset=bool(recipe.data.vds),
    )
    series = model_series(recipe, checkpoint, normaliser, data)
    last = data.num_steps - recipe.data.history
    starts = series.window_starts(last if latest else 0, last)
    if not len(starts):
        raise DataError(
            f"{data.source}: no window with a full history of {recipe.data.history} steps and a VD of at least "
            f"min_history = {recipe.data.min_history} steps"
        )

    dataset = WindowDataset(series, starts.numpy())
    spec = dataset_spec(data, series, tuple(checkpoint["input_features"]))
    model, collator = build_forecaster(recipe, registry, spec, data.source)
    model.load_state_dict(checkpoint["model"])
    cfg = attrs.evolve(recipe.trainer, compile=False)  # one pass over the data: not worth compiling
    values, quantiles = forecast(Engine(model, cfg, normaliser, checkpoint["target"]), collator, dataset, cfg)
    lengths = series.lengths(dataset.starts)
    if lengths is not None:  # a VD that sits a window out is not forecast
        absent = np.broadcast_to((lengths == 0)[:, None, :].numpy(), values.shape)
        values[absent] = np.nan
        if quantiles is not None:
            quantiles[absent] = np.nan

    issued_at = data.timestamps[dataset.starts.numpy() + recipe.data.history - 1]
    target_time = issued_at[:, None] + data.interval * np.arange(1, recipe.data.horizon + 1)
    attributes = {
        "target": checkpoint["target"],
        "run_dir": str(run_dir),
        "data": str(data_path),
        "step_seconds": data.interval,
        "history": recipe.data.history,
        "horizon": recipe.data.horizon,
        "epoch": checkpoint.get("epoch", 0),
        "head": model.head.name,
    }
    levels = model.head.levels if quantiles is not None else ()
    write_forecast(out, values, issued_at, target_time, data.vd_ids, attributes, quantiles, levels)
    issued = iso(issued_at[0]) + (f" .. {iso(issued_at[-1])}" if len(issued_at) > 1 else "")
    print(
        f"forecast {checkpoint['target']}: {len(values)} window(s) x {recipe.data.horizon} steps x {len(data.vd_ids)} "
        f"VDs, issued {issued}, from {run_dir / 'best_model.pt'} (epoch {attributes['epoch']}) -> {out}"
    )
    return 0


def trained_normaliser(checkpoint: dict, path: Path) -> Normaliser:
    """The normaliser the run was trained with, as ``best_model.pt`` stores it."""
    normaliser = Normaliser.from_dict(checkpoint["normaliser"])
    if not normaliser.names:
        raise TrainingError(
            f"{path}: the checkpoint's normaliser has no feature names (written by an older version); "
            "train the run again"
        )
    return normaliser


def match_model(
    data: TrafficData, vd_ids: tuple[str, ...], features: tuple[str, ...], subset: bool = False
) -> TrafficData:
    """``data`` with the model's VDs in the model's order; a missing VD or feature is an error naming them, and so
    is an extra VD unless the run trained on a ``subset`` (``[data] vds``) of its file. Extra features are ignored."""
    missing_features = [name for name in dict.fromkeys(features) if name not in data.feature_names]
    if missing_features:
        raise DataError(
            f"{data.source}: missing feature(s) the model reads: {', '.join(missing_features)}; the file has "
            f"{', '.join(data.feature_names)}"
        )
    model_vds, file_vds = set(vd_ids), set(data.vd_ids)
    missing = [vd for vd in vd_ids if vd not in file_vds]
    extra = [] if subset else [vd for vd in data.vd_ids if vd not in model_vds]
    if missing or extra:
        raise DataError(
            f"{data.source}: the VDs differ from the model's: {listing(missing, 'missing')}; {listing(extra, 'extra')}"
        )
    return data.select(vd_ids)


def listing(vds: list[str], what: str, shown: int = 5) -> str:
    """'2 missing (a, b)', with at most ``shown`` names."""
    more = ", ..." if len(vds) > shown else ""
    return f"{len(vds)} {what}" + (f" ({', '.join(vds[:shown])}{more})" if vds else "")


def model_series(recipe: Recipe, checkpoint: dict, normaliser: Normaliser, data: TrafficData) -> Series:
    """The series cut as the run cut its own (features, target, normaliser, window settings), from every observed
    reading (``hide_inputs`` is a training experiment and is not applied to the data forecast), followed by a
    horizon of missing steps, so that the last windows have a (masked) future."""
    cfg = attrs.evolve(recipe.data, target=checkpoint["target"], hide_inputs=0.0)
    profile = Profile.from_dict(checkpoint["profile"]) if "profile" in checkpoint else None  # none before 2026-12
    return build_series(data, normaliser, cfg, data_features(checkpoint), profile=profile, blank=cfg.horizon)


def data_features(checkpoint: dict) -> tuple[str, ...]:
    """The model's input features that the data holds (its ``[data] profile_input`` feature is made from the
    profile the checkpoint keeps)."""
    return tuple(name for name in checkpoint["input_features"] if name != profile_name(checkpoint["target"]))


def forecast(
    engine: Engine, collator: Collator, dataset: WindowDataset, cfg: TrainerConfig
) -> tuple[np.ndarray, np.ndarray | None]:
    """The point forecasts ``[W, H, N]`` of every window in the data's units and, for a distribution head, its
    calibrated quantiles ``[W, H, N, L]`` (else None), in batches of ``eval_batch_size``."""
    points, quantiles = [], []
    for _, forecast in engine.forecasts(batches(dataset, collator, cfg, engine.device, batch_size=cfg.eval_batch_size)):
        points.append(forecast.point.cpu())
        if forecast.quantiles is not None:
            quantiles.append(forecast.quantiles.cpu())
    return torch.cat(points).numpy(), torch.cat(quantiles).numpy() if quantiles else None


def write_forecast(
    path: Path,
    forecast: np.ndarray,
    issued_at: np.ndarray,
    target_time: np.ndarray,
    vd_ids: tuple[str, ...],
    attributes: dict,
    quantiles: np.ndarray | None = None,
    levels: tuple[float, ...] = (),
) -> None:
    """The output file, written atomically (a failure leaves no partial file and any previous one intact); the
    ``quantiles`` ``[W, H, N, L]`` at ``levels`` too, if given."""

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("forecast", data=forecast.astype(np.float32), compression="gzip", compression_opts=4)
            if quantiles is not None:
                f.create_dataset(
                    "forecast_quantiles", data=quantiles.astype(np.float32), compression="gzip", compression_opts=4
                )
                f.create_dataset("quantile_levels", data=np.asarray(levels, dtype=np.float64))
            f.create_dataset("issued_at", data=issued_at.astype(np.int64))
            f.create_dataset("target_time", data=target_time.astype(np.int64))
            f.create_dataset("vd_ids", data=np.array(vd_ids, dtype=object), dtype=h5py.string_dtype())
            f.attrs.update(attributes)

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write)
    except OSError as error:
        raise DataError(f"{path}: cannot write: {error.strerror or error}") from None


def iso(seconds: int) -> str:
    return str(np.datetime64(int(seconds), "s"))
