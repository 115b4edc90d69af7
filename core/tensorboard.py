"""What a run shows in TensorBoard: scalars, the resolved recipe, HParams, forecast-vs-truth figures and the
map of the VDs with their social-pooling neighbourhoods."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402
from torch.utils.tensorboard.summary import hparams  # noqa: E402


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

    def forecast_figure(
        self,
        tag: str,
        history: np.ndarray,
        truth: np.ndarray,
        forecast: np.ndarray,
        vd_ids: list[str],
        step: int,
        unit: str,
    ) -> None:
        """``history [T, V]``, ``truth [H, V]``, ``forecast [H, V]`` for V VDs of one window."""
        count = len(vd_ids)
        if not count:
            return
        fig, axes = plt.subplots(count, 1, figsize=(7, 2.0 * count), sharex=True, squeeze=False)
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
        self.writer.add_figure(tag, fig, step)
        plt.close(fig)

    def neighbour_map(
        self, tag: str, positions: np.ndarray, index: np.ndarray, weights: np.ndarray, focus: list[int], step: int
    ) -> None:
        """VDs at ``positions [N, 2]`` (m); the edges ``index``/``weights [N, K]`` (0 = no edge) of the ``focus``
        VDs, and of every VD when N ≤ 300, drawn with opacity ∝ weight (attention: the mean weight per edge)."""
        km = positions / 1000.0
        fig, ax = plt.subplots(figsize=(7, 6))
        ax.scatter(km[:, 0], km[:, 1], s=6, color="0.3", zorder=3)
        drawn = range(len(km)) if len(km) <= 300 else focus
        scale = max(float(weights.max()), 1e-12)
        for i in drawn:
            highlighted = i in focus
            for j, w in zip(index[i], weights[i]):
                if w > 0:
                    color = "C3" if highlighted else "C0"
                    ax.plot(
                        *zip(km[i], km[j]),
                        color=color,
                        alpha=min(1.0, 0.1 + 0.9 * w / scale),
                        lw=1.5 if highlighted else 0.6,
                    )
        ax.scatter(km[focus, 0], km[focus, 1], s=40, color="C3", zorder=4)
        ax.set_xlabel("x (km)")
        ax.set_ylabel("y (km)")
        ax.set_aspect("equal")
        ax.set_title("social-pooling neighbourhoods (red: a few VDs; opacity: edge weight)", fontsize=9)
        fig.tight_layout()
        self.writer.add_figure(tag, fig, step)
        plt.close(fig)

    def close(self) -> None:
        self.writer.close()
