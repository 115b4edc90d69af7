"""What a run reports besides the loop's scalars: the forecast figures (every epoch and after the test) and the
final test of the best checkpoint beside the baselines, written to ``metrics.json``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from core.io import save_json
from core.training import calibration, checkpoints, signals
from core.training.baselines import Baselines

if TYPE_CHECKING:
    from core.training.trainer import Trainer


def test(trainer: Trainer) -> dict[str, Any]:
    """Test metrics of the best checkpoint beside the baselines; writes metrics.json. A distribution head with
    ``calibrate`` is first calibrated on the validation split (the offsets saved into ``best_model.pt``), and its
    uncalibrated test metrics are kept beside the calibrated ones."""
    best = checkpoints.load_best(trainer.run_dir)
    trainer.model.load_state_dict(best["model"])
    head, state, spec = trainer.model.head, trainer.state, trainer.spec
    baselines = Baselines(trainer.prepared, head.levels)
    extra: dict[str, Any] = {}
    with signals.at_once(trainer.run_dir):
        if head.distribution and getattr(head.config, "calibrate", False):
            extra["test_uncalibrated"] = trainer.evaluate("test")[0]["model"]
            calibration.calibrate(trainer)
            checkpoints.save_best_weights(trainer.run_dir, best, trainer.model.state_dict())
        result, accumulated = trainer.evaluate("test", baselines)
    if head.distribution:
        extra["head"] = {
            "name": head.name,
            "levels": list(head.levels),
            "offsets": (head.offsets * trainer.target_std).tolist(),  # [H][L] in the data's units
        }
        extra["test_reliability"] = {name: m.reliability() for name, m in accumulated.items()}
    metrics = {
        "test": result["model"],
        "baselines": {name: result[name] for name in Baselines.names},
        "best_epoch": state.best_epoch,
        "best_val_mae": state.best_val_mae,
        "epochs": state.epoch,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "train_seconds": state.train_seconds,
        # for python -m core.compare: MAE per horizon step (model and baselines) and per VD, VD positions in metres
        "test_mae_by_step": {name: m.mae_by_step() for name, m in accumulated.items()},
        "test_mae_by_vd": accumulated["model"].mae_by_vd(),
        "vd_ids": list(spec.vd_ids),
        "positions_xy": None if spec.positions_xy is None else spec.positions_xy.tolist(),
        **extra,
    }
    save_json(metrics, trainer.run_dir / "metrics.json")
    step = state.global_step
    trainer.logger.scalars({f"test/{k}": v for k, v in result["model"].items()}, step)
    for name in Baselines.names:
        trainer.logger.scalars({f"test_{name}/{k}": v for k, v in result[name].items()}, step)
    if head.distribution:
        trainer.logger.reliability("reliability/test", head.levels, extra["test_reliability"], step)
    log_forecast(trainer, "test", step)
    return metrics


@torch.no_grad()
def log_forecast(trainer: Trainer, split: str, step: int) -> None:
    """The forecast of the split's first window beside its truth, with a distribution head's quantiles
    (``RunLogger.forecast``)."""
    if not trainer.cfg.figure_vds:
        return
    dataset = trainer.prepared.splits[split]
    batch = trainer.collator(dataset[0]).to(trainer.device).canonical()
    head = trainer.model.head
    trainer.model.eval()
    with trainer.autocast():
        output = trainer.model(batch).float()
    forecast = trainer.denormalise(head.point(output))[0].cpu().numpy()
    quantiles = trainer.denormalise(head.quantiles(output))[0].cpu().numpy() if head.distribution else None
    trainer.logger.forecast(
        f"forecast/{split}",
        trainer.prepared.series,
        int(dataset.starts[0]),
        forecast,
        trainer.spec.vd_ids,
        trainer.cfg.figure_vds,
        step,
        trainer.recipe.data.target,
        quantiles,
        head.levels,
    )
    trainer.model.train()
