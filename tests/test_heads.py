"""Heads: the losses and quantiles by hand, quantiles that never cross, split-conformal calibration on the
validation split, the scores of quantile forecasts (masked), the baselines' quantiles, and a run with
``[head] name = "quantile"`` and ``calibrate = true`` end to end."""

from __future__ import annotations

import json
import math
import types

import pytest
import torch
from scipy import stats

from core.errors import RecipeError
from core.heads import DistributionConfig, central_intervals
from core.model import Forecaster
from core.recipe import ModelConfig, load_recipe
from core.run import main
from core.training import calibration
from core.training.checkpoints import load_best
from core.training.metrics import HorizonMetrics
from plugins.encoders.lstm import LSTMConfig, LSTMEncoder
from plugins.heads.parametric import GaussianHead, LaplaceHead
from plugins.heads.quantile import QuantileHead
from plugins.pooling.none import NoPooling
from tests.conftest import make_spec
from tests.helpers import short_run

LEVELS = (0.1, 0.5, 0.9)


def test_pinball_loss_by_hand():
    head = QuantileHead(DistributionConfig(levels=LEVELS), make_spec(n=1, horizon=1), 4)
    output = torch.tensor([-1.0, 0.0, 1.0]).reshape(1, 1, 1, 3)
    # y = 2 is above every quantile: τ (y − q) = 0.1·3, 0.5·2, 0.9·1; y = -2 below: (1 − τ)(q − y) = 0.9·1, 0.5·2, 0.1·3
    loss = head.loss(output.expand(2, 1, 1, 3), torch.tensor([2.0, -2.0]).reshape(2, 1, 1))
    assert loss.flatten().tolist() == pytest.approx([(0.3 + 1.0 + 0.9) / 3, (0.9 + 1.0 + 0.3) / 3])


def test_quantiles_never_cross_and_the_point_is_the_median():
    torch.manual_seed(0)
    head = QuantileHead(DistributionConfig(), make_spec(n=3, horizon=4), 8)
    features = torch.randn(16, 3, 8) * 100  # extreme features: large gaps either way
    output = head(features)
    assert output.shape == (16, 4, 3, 7)
    assert (output.diff(dim=-1) >= 0).all()
    torch.nn.init.normal_(head.offsets, std=50.0)  # calibration offsets that would cross: kept in order
    quantiles = head.quantiles(output)
    assert (quantiles.diff(dim=-1) >= 0).all()
    assert torch.equal(head.point(output), quantiles[..., 3])


@pytest.mark.parametrize(("cls", "family"), [(GaussianHead, stats.norm), (LaplaceHead, stats.laplace)])
def test_parametric_heads_give_the_distributions_quantiles_and_likelihood(cls, family):
    head = cls(DistributionConfig(levels=LEVELS), make_spec(n=1, horizon=1), 4)
    output = torch.tensor([[[[2.0, 0.5]]]])  # location 2, scale 0.5
    expected = family.ppf(LEVELS, loc=2.0, scale=0.5)
    assert head.quantiles(output).flatten().tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    assert head.point(output).item() == pytest.approx(2.0)
    target = torch.tensor([[[3.0]]])
    assert head.loss(output, target).item() == pytest.approx(-family.logpdf(3.0, loc=2.0, scale=0.5), rel=1e-5)
    features = torch.randn(5, 1, 4, requires_grad=True) * 1e3  # the scale stays positive whatever the features
    assert (head(features)[..., 1] > 0).all()


def test_levels_and_calibrate_are_checked_where_the_recipe_gives_them(write_recipe):
    no_median = write_recipe('[encoder]\nname = "lstm"\n[head]\nname = "quantile"\nlevels = [0.1, 0.9]\n')
    with pytest.raises(RecipeError, match=r"\[head\] \(quantile\): 'levels' must include 0.5"):
        load_recipe(no_median)
    unordered = write_recipe('[encoder]\nname = "lstm"\n[head]\nname = "gaussian"\nlevels = [0.5, 0.1]\n')
    with pytest.raises(RecipeError, match="strictly increasing"):
        load_recipe(unordered)
    point = write_recipe('[encoder]\nname = "lstm"\n[head]\nname = "point"\ncalibrate = true\n')
    with pytest.raises(RecipeError, match=r"\[head\] \(point\): unknown key 'calibrate'"):
        load_recipe(point)
    assert load_recipe(write_recipe('[encoder]\nname = "lstm"\n'))[0].head.name == "point"


def test_central_intervals_pair_the_symmetric_levels():
    assert central_intervals((0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)) == [(0, 6, 90), (1, 5, 80), (2, 4, 50)]
    assert central_intervals((0.1, 0.5, 0.8)) == []


def test_scores_of_quantiles_by_hand_and_masked_targets_count_nowhere():
    metrics = HorizonMetrics(1, levels=LEVELS)
    quantiles = torch.tensor([[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [0.0, 1.0, 4.0]]).reshape(1, 1, 3, 3)
    target = torch.tensor([0.5, 2.0, 99.0]).reshape(1, 1, 3)
    mask = torch.tensor([True, True, False]).reshape(1, 1, 3)
    metrics.update(quantiles[..., 1], target, mask, quantiles)
    scores = metrics.compute()
    assert scores["coverage80@avg"] == pytest.approx(50.0)  # 0.5 inside [-1, 1], 2 outside
    assert scores["width80@avg"] == pytest.approx(2.0)
    pinball = [(0.1 * 1.5 + 0.5 * 0.5 + 0.1 * 0.5) / 3, (0.1 * 3 + 0.5 * 2 + 0.9 * 1) / 3]  # y = 0.5, y = 2
    assert scores["crps@avg"] == pytest.approx(sum(2 * p for p in pinball) / 2)
    assert metrics.reliability() == [pytest.approx([0.0, 0.0, 0.5])]


def calibrating(targets: torch.Tensor, mask: torch.Tensor, head: QuantileHead):
    """An engine whose model forecasts quantiles -1, 0, 1 for every validation target ``[S, H, N]``, and the
    loaders of those targets: what ``calibration.calibrate`` takes."""
    batches = [  # what calibration reads of a batch: its targets and their mask
        types.SimpleNamespace(target=targets[i : i + 4], target_mask=mask[i : i + 4]) for i in range(0, len(targets), 4)
    ]
    output = torch.tensor([-1.0, 0.0, 1.0])
    engine = types.SimpleNamespace(
        head=head,
        outputs=lambda batches: [(batch, output.expand(*batch.target.shape, 3)) for batch in batches],
        quantiles=lambda output, batch: head.quantiles(output),
    )
    loaders = types.SimpleNamespace(
        prepared=types.SimpleNamespace(
            splits={"val": targets}, data=types.SimpleNamespace(vd_ids=range(targets.shape[2]))
        ),
        evaluate=lambda split, stride: batches,
    )
    return engine, loaders


def test_calibration_shifts_each_quantile_to_its_level_on_the_validation_targets():
    torch.manual_seed(0)
    targets = torch.randn(40, 2, 5) * torch.tensor([3.0, 0.2])[None, :, None] + 1.0  # step 2: narrow, both shifted
    mask = torch.rand(40, 2, 5) > 0.2
    head = QuantileHead(DistributionConfig(levels=LEVELS), make_spec(n=5, horizon=2), 4)
    offsets = calibration.calibrate(*calibrating(targets, mask, head))
    assert torch.equal(head.offsets, offsets)
    base = torch.tensor([-1.0, 0.0, 1.0])
    for h in range(2):
        observed = targets[:, h][mask[:, h]]
        n = len(observed)
        for level, quantile, offset in zip(LEVELS, base, offsets[h], strict=True):
            below = (observed - quantile <= offset).float().mean().item()  # the residuals, as calibrated
            assert below == pytest.approx(math.ceil((n + 1) * level) / n)  # the finite-sample rank, exactly
    assert offsets[0, 2] - offsets[0, 0] > 5 * (offsets[1, 2] - offsets[1, 0])  # each step its own spread

    mask_only = targets.where(mask, torch.tensor(1e6))  # masked targets count nowhere
    assert torch.equal(calibration.calibrate(*calibrating(mask_only, mask, head)), offsets)


def test_a_quantile_head_run_calibrates_on_val_saves_the_offsets_and_scores_beside_the_baselines(small_h5, tmp_path):
    recipe = tmp_path / "q.toml"
    recipe.write_text(
        short_run(
            "q",
            tmp_path / "runs",
            small_h5,
            head={"name": "quantile", "calibrate": True},
            trainer={"epochs": 1, "max_batches_per_epoch": 4},
        )
    )
    assert main([str(recipe)]) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    offsets = load_best(run_dir)["model"]["head.offsets"]
    assert offsets.shape == (12, 7) and offsets.abs().sum() > 0
    assert metrics["head"]["levels"] == [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]
    baselines = metrics["baselines"]
    for section in (
        metrics["test"],
        metrics["test_uncalibrated"],
        baselines["last_value"],
        baselines["historical_average"],
    ):
        for key in ("coverage90@12", "coverage80@3", "width90@avg", "crps@12"):
            assert math.isfinite(section[key]), key
    assert "seasonal_naive" not in baselines  # less than two weeks of data
    assert metrics["test"]["coverage90@12"] != metrics["test_uncalibrated"]["coverage90@12"]
    assert len(metrics["test_reliability"]["model"]) == 12
    # resuming the finished run repeats calibration and test from best_model.pt, which holds the offsets now
    assert main(["--resume", str(run_dir)]) == 0
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics


def test_a_checkpoint_from_before_heads_loads_into_the_point_head():
    spec = make_spec(n=4)

    def build(seed: int) -> Forecaster:
        torch.manual_seed(seed)
        encoder = LSTMEncoder(LSTMConfig(embedding_dim=8), spec)
        return Forecaster(encoder, NoPooling(NoPooling.Config(), spec, 8), ModelConfig(hidden_dim=8))

    model = build(0)
    # the old layout: the fusion layer and the point forecast in one nn.Sequential(Linear, GELU, Dropout, Linear)
    renamed = {"fuse.0.": "head.0.", "head.linear.": "head.3."}
    old = {}
    for key, value in model.state_dict().items():
        new = next((n for n in renamed if key.startswith(n)), None)
        old[key.replace(new, renamed[new], 1) if new else key] = value
    assert "head.3.weight" in old and "fuse.0.weight" not in old
    fresh = build(1)
    fresh.load_state_dict(old)
    assert all(torch.equal(fresh.state_dict()[key], value) for key, value in model.state_dict().items())
