"""The final report of a run: the test metrics of its best checkpoint beside the baselines, written to
``metrics.json`` and TensorBoard, with the test's forecast figure."""

from __future__ import annotations

from typing import Any

from core.io import save_json
from core.training.baselines import Baselines
from core.training.callbacks import TensorBoard
from core.training.trainer import Trainer


def test(trainer: Trainer, board: TensorBoard, uncalibrated: dict[str, float] | None = None) -> dict[str, Any]:
    """Test the model as it is (the best checkpoint, calibrated or not) beside the baselines and report it;
    ``uncalibrated``: a calibrated head's test metrics before calibration, kept beside. Returns the metrics."""
    engine, state, spec = trainer.engine, trainer.state, trainer.spec
    head = engine.head
    baselines = Baselines(trainer.prepared, head.levels)
    result, accumulated = engine.evaluate(trainer.loaders.evaluate("test"), baselines)
    extra: dict[str, Any] = {} if uncalibrated is None else {"test_uncalibrated": uncalibrated}
    if head.distribution:
        extra["head"] = {
            "name": head.name,
            "levels": list(head.levels),
            "offsets": (head.offsets * engine.std).tolist(),  # [H][L] in the data's units
        }
        extra["test_reliability"] = {name: m.reliability() for name, m in accumulated.items()}
    metrics = {
        "test": result["model"],
        "baselines": {name: result[name] for name in baselines.names},
        "best_epoch": state.best_epoch,
        "best_val_mae": state.best_val_mae,
        "epochs": state.epoch,
        "parameters": sum(p.numel() for p in engine.model.parameters()),
        "train_seconds": state.train_seconds,
        # for python -m core.compare: MAE per horizon step (model and baselines) and per VD, VD positions in metres
        "test_mae_by_step": {name: m.mae_by_step() for name, m in accumulated.items()},
        "test_mae_by_vd": accumulated["model"].mae_by_vd(),
        "vd_ids": list(spec.vd_ids),
        "positions_xy": None if spec.positions_xy is None else spec.positions_xy.tolist(),
        **extra,
    }
    save_json(metrics, trainer.run_dir / "metrics.json")
    step, logger = state.global_step, trainer.logger
    logger.scalars({f"test/{k}": v for k, v in result["model"].items()}, step)
    for name in baselines.names:
        logger.scalars({f"test_{name}/{k}": v for k, v in result[name].items()}, step)
    if head.distribution:
        logger.reliability("reliability/test", head.levels, extra["test_reliability"], step)
    board.forecast("test", step)
    return metrics
