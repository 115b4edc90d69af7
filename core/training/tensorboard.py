"""What a run shows in TensorBoard: scalars, the resolved recipe, HParams, forecast-vs-truth figures (with a
distribution head's central intervals), the reliability of a distribution head's quantiles and the map of the VDs
with their social-pooling neighbourhoods.

Figures are ``matplotlib.figure.Figure`` objects drawn without pyplot, so importing this module leaves the
process's matplotlib backend (e.g. a notebook's) alone."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from core.heads import central_intervals

if TYPE_CHECKING:
    from core.data.windows import Series

BASELINE_STYLES = {"last_value": {"color": "0.3", "ls": "--"}, "historical_average": {"color": "0.6", "ls": "--"}}
RELIABILITY_STEPS = (3, 6, 12)


class ReliabilityCurve(NamedTuple):
    """One forecast's reliability: the fraction of targets at or below its quantile at each of its ``levels``,
    per horizon step (``observed [H][L]``, metrics.json's ``test_reliability``), drawn with ``style``."""

    label: str
    levels: Sequence[float]
    observed: Sequence[Sequence[float]]
    style: dict[str, Any] | None = None


class RunLogger:
    """A SummaryWriter on the run directory; ``purge_step`` hides events a crashed run wrote past its checkpoint.

    Scalars are kept with the time they were logged and handed to the writer ``BUFFERED`` at a time (or once the
    oldest is ``KEEP_S`` old), and before anything else is written through ``writer`` (its flush included): the
    events and their order are the same, and a training step no longer wakes the writer's thread for its few
    per-step scalars (``bench/tax.py``)."""

    BUFFERED = 256
    KEEP_S = 10.0

    def __init__(self, run_dir: Path, purge_step: int | None = None):
        self._writer = SummaryWriter(str(run_dir), purge_step=purge_step)
        self._scalars: list[tuple[str, float, int, float]] = []

    @property
    def writer(self) -> SummaryWriter:
        """The SummaryWriter, every scalar logged so far handed to it."""
        self.hand_over()
        return self._writer

    def hand_over(self) -> None:
        for tag, value, step, walltime in self._scalars:
            self._writer.add_scalar(tag, value, step, walltime=walltime)
        self._scalars.clear()

    def scalars(self, values: dict[str, float], step: int) -> None:
        walltime = time.time()
        self._scalars.extend((tag, value, step, walltime) for tag, value in values.items())
        if len(self._scalars) >= self.BUFFERED or walltime - self._scalars[0][3] >= self.KEEP_S:
            self.hand_over()

    def recipe(self, toml_text: str) -> None:
        self.writer.add_text("recipe", "\n".join("    " + line for line in toml_text.splitlines()))

    def hparams(self, recipe_values: dict[str, object], metrics: dict[str, float]) -> None:
        """Recipe values and final metrics in the HParams tab, in this run's own directory (no sub-run).

        Only the session summaries are written, not an experiment summary: TensorBoard then builds the table's
        columns from every run's values (the union: an xLSTM run's ``encoder.num_blocks`` beside an LSTM run's
        ``encoder.num_layers``), where one run's experiment summary would fix the columns to that run's keys."""
        tags = {f"hparam/{key}": value for key, value in metrics.items()}
        _, session_start, session_end = hparams(recipe_values, tags)
        for summary in (session_start, session_end):
            self.writer.file_writer.add_summary(summary)
        self.scalars(tags, 0)

    def forecast(
        self,
        tag: str,
        series: Series,
        start: int,
        forecast: np.ndarray,
        vd_ids: tuple[str, ...],
        count: int,
        step: int,
        unit: str,
        quantiles: np.ndarray | None = None,
        levels: tuple[float, ...] = (),
    ) -> None:
        """The ``forecast [H, N]`` of the window at ``start`` of ``series`` beside its history and truth, for the
        ``count`` VDs whose target varies most in the window; with a distribution's ``quantiles [H, N, L]`` at
        ``levels``, its two widest central intervals shaded around it."""
        window = series.target_at(torch.arange(start, start + series.history + series.horizon))  # [T + H, N]
        observed = window.isfinite()
        spread = window.where(observed, -math.inf).amax(0) - window.where(observed, math.inf).amin(0)  # -inf if all NaN
        chosen = spread.argsort(descending=True)[:count].numpy()
        history, truth = window[: series.history].numpy(), window[series.history :].numpy()
        bands = []
        if quantiles is not None:
            picked = quantiles[:, chosen]
            bands = [(picked[..., low], picked[..., high], percent) for low, high, percent in central_intervals(levels)]
        figure = forecast_figure(
            history[:, chosen], truth[:, chosen], forecast[:, chosen], [vd_ids[i] for i in chosen], unit, bands[:2]
        )
        if figure is not None:
            self.writer.add_figure(tag, figure, step, close=False)

    def reliability(
        self, tag: str, levels: tuple[float, ...], observed: dict[str, list[list[float]]], step: int
    ) -> None:
        """The reliability diagram of the model's quantiles beside the baselines' (``observed``: method →
        ``[H][L]``, metrics.json's ``test_reliability``) at horizon steps 3, 6 and 12."""
        curves = [
            ReliabilityCurve(name.replace("_", " "), levels, values, BASELINE_STYLES.get(name))
            for name, values in observed.items()
        ]
        self.writer.add_figure(tag, reliability_figure(curves), step, close=False)

    def pooling(
        self,
        summary: dict[str, float],
        edges: tuple[torch.Tensor, torch.Tensor] | None,
        positions_xy: torch.Tensor | None,
        count: int,
        step: int,
    ) -> None:
        """A pooling's own scalars (``Pooling.summary``, e.g. a learned radius) and the map of the edges it offers
        (``Pooling.edges``), those of ``count`` VDs spread over the network highlighted."""
        self.scalars(summary, step)
        if edges is None or not count or positions_xy is None:
            return
        index, weights = edges
        positions = positions_xy.numpy()
        focus = np.linspace(0, len(positions) - 1, min(count, len(positions))).astype(int).tolist()
        figure = neighbour_map(positions, index.cpu().numpy(), weights.cpu().numpy(), focus)
        self.writer.add_figure("pooling/map", figure, step, close=False)

    def close(self) -> None:
        self.writer.close()


def forecast_figure(
    history: np.ndarray,
    truth: np.ndarray,
    forecast: np.ndarray,
    vd_ids: list[str],
    unit: str,
    bands: Sequence[tuple[np.ndarray, np.ndarray, int]] = (),
) -> Figure | None:
    """``history [T, V]``, ``truth [H, V]``, ``forecast [H, V]`` for V VDs of one window (None for no VD); each of
    ``bands`` (``lower [H, V]``, ``upper [H, V]``, percent; widest first) shaded around the forecast."""
    count = len(vd_ids)
    if not count:
        return None
    fig = Figure(figsize=(7, 2.0 * count))
    axes = fig.subplots(count, 1, sharex=True, squeeze=False)
    t_hist = np.arange(-history.shape[0] + 1, 1)
    t_future = np.arange(1, truth.shape[0] + 1)
    for i, ax in enumerate(axes[:, 0]):
        for k, (lower, upper, percent) in enumerate(bands):
            ax.fill_between(
                t_future, lower[:, i], upper[:, i], color="C1", alpha=0.15 * (k + 1), lw=0, label=f"{percent}%"
            )
        ax.plot(t_hist, history[:, i], color="0.5", label="history")
        ax.plot(t_future, truth[:, i], "k.-", label="truth")
        ax.plot(t_future, forecast[:, i], "C1.-", label="forecast")
        ax.set_ylabel(unit)
        ax.set_title(vd_ids[i], fontsize=9, loc="left")
    axes[0, 0].legend(loc="lower left", fontsize=8, ncol=3 + len(bands))
    axes[-1, 0].set_xlabel("steps from the forecast origin")
    fig.tight_layout()
    return fig


def reliability_figure(curves: Sequence[ReliabilityCurve], steps: Sequence[int] = RELIABILITY_STEPS) -> Figure:
    """One panel per horizon step of ``steps`` (those every curve has): each curve's observed fraction of targets at
    or below its quantile (y) at each nominal level (x), beside the diagonal of a calibrated forecast."""
    shown = [h for h in steps if all(h <= len(curve.observed) for curve in curves)]
    fig = Figure(figsize=(3.4 * max(len(shown), 1), 3.6), layout="constrained")
    axes = fig.subplots(1, max(len(shown), 1), squeeze=False)[0]
    for ax, h in zip(axes, shown):
        ax.plot([0, 1], [0, 1], ":", color="0.5", lw=1)
        for curve in curves:
            ax.plot(curve.levels, curve.observed[h - 1], marker=".", label=curve.label, **(curve.style or {}))
        ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal", title=f"horizon step {h}", xlabel="nominal level")
    axes[0].set_ylabel("fraction of targets at or below")
    axes[0].legend(fontsize=8, loc="upper left")
    return fig


def neighbour_map(positions: np.ndarray, index: np.ndarray, weights: np.ndarray, focus: list[int]) -> Figure:
    """VDs at ``positions [N, 2]`` (m); the edges ``index``/``weights [N, K]`` (0 = no edge) of the ``focus``
    VDs, and of every VD when N ≤ 300, drawn with opacity ∝ weight (attention: the mean weight per edge)."""
    km = positions / 1000.0
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    ax.scatter(km[:, 0], km[:, 1], s=6, color="0.3", zorder=3)
    drawn = range(len(km)) if len(km) <= 300 else focus
    scale = max(float(weights.max()), 1e-12)
    for i in drawn:
        highlighted = i in focus
        for j, w in zip(index[i], weights[i]):
            if w > 0:
                ax.plot(
                    *zip(km[i], km[j]),
                    color="C3" if highlighted else "C0",
                    alpha=min(1.0, 0.1 + 0.9 * w / scale),
                    lw=1.5 if highlighted else 0.6,
                )
    ax.scatter(km[focus, 0], km[focus, 1], s=40, color="C3", zorder=4)
    ax.set_xlabel("x (km)")
    ax.set_ylabel("y (km)")
    ax.set_aspect("equal")
    ax.set_title("social-pooling neighbourhoods (red: a few VDs; opacity: edge weight)", fontsize=9)
    fig.tight_layout()
    return fig
