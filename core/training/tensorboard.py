"""What a run shows in TensorBoard: scalars, the resolved recipe, HParams, forecast-vs-truth figures and the
map of the VDs with their social-pooling neighbourhoods.

Figures are ``matplotlib.figure.Figure`` objects drawn without pyplot, so importing this module leaves the
process's matplotlib backend (e.g. a notebook's) alone."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

if TYPE_CHECKING:
    from core.data.windows import Series


class RunLogger:
    """A SummaryWriter on the run directory; ``purge_step`` hides events a crashed run wrote past its checkpoint."""

    def __init__(self, run_dir: Path, purge_step: int | None = None):
        self.writer = SummaryWriter(str(run_dir), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

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
    ) -> None:
        """The ``forecast [H, N]`` of the window at ``start`` of ``series`` beside its history and truth, for the
        ``count`` VDs whose target varies most in the window."""
        window = series.target_raw[start : start + series.history + series.horizon]  # [T + H, N]
        observed = window.isfinite()
        spread = window.where(observed, -math.inf).amax(0) - window.where(observed, math.inf).amin(0)  # -inf if all NaN
        chosen = spread.argsort(descending=True)[:count].numpy()
        history, truth = window[: series.history].numpy(), window[series.history :].numpy()
        figure = forecast_figure(
            history[:, chosen], truth[:, chosen], forecast[:, chosen], [vd_ids[i] for i in chosen], unit
        )
        if figure is not None:
            self.writer.add_figure(tag, figure, step, close=False)

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
    history: np.ndarray, truth: np.ndarray, forecast: np.ndarray, vd_ids: list[str], unit: str
) -> Figure | None:
    """``history [T, V]``, ``truth [H, V]``, ``forecast [H, V]`` for V VDs of one window (None for no VD)."""
    count = len(vd_ids)
    if not count:
        return None
    fig = Figure(figsize=(7, 2.0 * count))
    axes = fig.subplots(count, 1, sharex=True, squeeze=False)
    t_hist = np.arange(-history.shape[0] + 1, 1)
    t_future = np.arange(1, truth.shape[0] + 1)
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(t_hist, history[:, i], color="0.5", label="history")
        ax.plot(t_future, truth[:, i], "k.-", label="truth")
        ax.plot(t_future, forecast[:, i], "C1.-", label="forecast")
        ax.set_ylabel(unit)
        ax.set_title(vd_ids[i], fontsize=9, loc="left")
    axes[0, 0].legend(loc="lower left", fontsize=8, ncol=3)
    axes[-1, 0].set_xlabel("steps from the forecast origin")
    fig.tight_layout()
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
