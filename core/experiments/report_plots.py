"""The comparison report's PNGs: learning curves, test MAE by horizon step, test MAE per VD on the map, and for
runs of a distribution head the reliability of their quantiles.

Drawn on ``matplotlib.figure.Figure`` objects, without pyplot: the process's backend is left alone."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from core.experiments.runs import RunRecord
from core.training.tensorboard import BASELINE_STYLES, ReliabilityCurve, reliability_figure

TITLES = {
    "learning curves": "learning_curves.png",
    "test MAE by horizon step": "error_by_horizon.png",
    "test MAE per VD": "error_map.png",
    "test reliability of the forecast distributions": "reliability.png",
}


def draw_all(runs: list[RunRecord], groups: list[list[RunRecord]], out: Path) -> list[str]:
    """Every plot into ``out``; returns notes on what could not be drawn."""
    learning_curves(runs, out / TITLES["learning curves"])
    error_by_horizon(groups, out / TITLES["test MAE by horizon step"])
    reliability(groups, out / TITLES["test reliability of the forecast distributions"])
    return error_map(runs, out / TITLES["test MAE per VD"])


def reliability(groups: list[list[RunRecord]], path: Path) -> None:
    """The fraction of test targets at or below each quantile against its level, at horizon steps 3, 6, 12, for
    every run of a distribution head, each data set's baselines dashed (``tensorboard.reliability_figure``); no
    file when no run has one."""
    curves = []
    for number, members in enumerate(groups, 1):
        members = [run for run in members if "test_reliability" in run.metrics]
        if not members:
            continue
        curves += [
            ReliabilityCurve(run.name, run.metrics["head"]["levels"], run.metrics["test_reliability"]["model"])
            for run in members
        ]
        first, suffix = members[0].metrics, f" (data {number})" if len(groups) > 1 else ""
        curves += [
            ReliabilityCurve(
                name.replace("_", " ") + suffix, first["head"]["levels"], first["test_reliability"][name], style
            )
            for name, style in BASELINE_STYLES.items()
        ]
    if curves:
        save(reliability_figure(curves), path)


def learning_curves(runs: list[RunRecord], path: Path) -> None:
    """Train loss (z-scored MAE) and val MAE per epoch, one line per run."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    loss_ax, mae_ax = fig.subplots(1, 2)
    for run in runs:
        epochs = [h["epoch"] for h in run.history]
        loss_ax.plot(epochs, [h["train_loss"] for h in run.history], ".-", label=run.name)
        mae_ax.plot(epochs, [h["val_mae"] for h in run.history], ".-", label=run.name)
    loss_ax.set(xlabel="epoch", ylabel="train loss (MAE, z-scored)", title="training loss")
    mae_ax.set(xlabel="epoch", ylabel="val MAE", title="validation MAE")
    mae_ax.legend(fontsize=8)
    save(fig, path)


def error_by_horizon(groups: list[list[RunRecord]], path: Path) -> None:
    """Test MAE at every horizon step (at 3, 6, 12 for runs without per-step MAE); baselines dashed."""
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    for number, members in enumerate(groups, 1):
        for run in members:
            ax.plot(*mae_by_step(run, "model"), ".-", label=run.name)
        suffix = f" (data {number})" if len(groups) > 1 else ""
        for name in ("last_value", "historical_average"):
            ax.plot(
                *mae_by_step(members[0], name),
                "--",
                color="0.3" if name == "last_value" else "0.6",
                label=name.replace("_", " ") + suffix,
            )
    ax.set(xlabel="horizon step", ylabel="test MAE", title="test MAE by horizon step")
    ax.legend(fontsize=8)
    save(fig, path)


def mae_by_step(run: RunRecord, method: str) -> tuple[list[int], list[float]]:
    by_step = run.metrics.get("test_mae_by_step", {}).get(method)
    if by_step:
        return list(range(1, len(by_step) + 1)), by_step
    values = run.metrics["test"] if method == "model" else run.metrics["baselines"][method]
    steps = [h for h in (3, 6, 12) if f"mae@{h}" in values]
    return steps, [values[f"mae@{h}"] for h in steps]


def error_map(runs: list[RunRecord], path: Path) -> list[str]:
    """Each run's VDs at their positions (km), coloured by test MAE on one shared scale."""
    notes, drawable = [], []
    for run in runs:
        if not run.metrics.get("test_mae_by_vd"):
            notes.append(f"`{run.name}`: no per-VD MAE in metrics.json (a run from an older version): not on the map")
        elif run.metrics.get("positions_xy") is None:
            notes.append(f"`{run.name}`: the data has no VD positions: not on the map")
        else:
            drawable.append(run)
    if not drawable:
        return notes + ["no run has per-VD MAE with positions: no map drawn"]
    maes = [np.asarray(run.metrics["test_mae_by_vd"], dtype=float) for run in drawable]
    low, high = float(np.nanmin(np.concatenate(maes))), float(np.nanmax(np.concatenate(maes)))
    cols = min(3, len(drawable))
    rows = math.ceil(len(drawable) / cols)
    fig = Figure(figsize=(5 * cols, 4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, run, mae in zip(axes.flat, drawable, maes):
        km = np.asarray(run.metrics["positions_xy"], dtype=float) / 1000.0
        points = ax.scatter(
            km[:, 0], km[:, 1], c=mae, cmap="viridis_r", vmin=low, vmax=high, s=25, edgecolors="0.2", linewidths=0.3
        )
        ax.set(title=run.name, xlabel="x (km)", ylabel="y (km)", aspect="equal")
        ax.title.set_fontsize(9)
    for ax in axes.flat[len(drawable) :]:
        ax.axis("off")
    fig.colorbar(points, ax=axes.ravel().tolist(), label="test MAE per VD")
    save(fig, path)
    return notes


def save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=100)
