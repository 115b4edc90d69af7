"""``[model] social``: pooling inside a layer-wise encoder, at every time step (``every_step``: into the first
layer; ``interleaved``: between layers). Causal in time, one hop per pooling, learns what only neighbours know,
refused for encoders that cannot run layer by layer."""

from __future__ import annotations

import pytest
import torch

from core.api import EncoderInput
from core.errors import RecipeError
from core.model import Forecaster, inner_layers
from core.recipe import ModelConfig, load_recipe
from plugins.encoders.lstm import LSTMConfig, LSTMEncoder
from plugins.pooling.none import NoPooling
from tests.conftest import F64, make_spec
from tests.helpers import ENCODERS, POSITIONS, STRATEGIES, fit_and_score, network, random_input

LAYERWISE = ("lstm", "xlstm_shared", "xlstm_per_vd")  # (stid: tests/test_stid.py)


def social_model(encoder: str, social: str, spec, head_pooling: bool = False) -> Forecaster:
    """A radius-pooling model whose injections are randomised (they start at zero)."""
    torch.manual_seed(0)
    enc = ENCODERS[encoder](spec)
    inner = {layer: STRATEGIES["radius"](spec, enc.out_dim) for layer in inner_layers(social, enc)}
    head = STRATEGIES["radius"](spec, enc.out_dim) if head_pooling else NoPooling(NoPooling.Config(), spec, enc.out_dim)
    model = Forecaster(enc, head, ModelConfig(hidden_dim=8), inner)
    for inject in model.inject.values():
        torch.nn.init.normal_(inject.weight, std=0.5)
    return model.eval()


def states(model: Forecaster, inputs: EncoderInput) -> torch.Tensor:
    with torch.no_grad():
        return model.encoder.run_layers(inputs, lambda layer, x: model.social_step(layer, x, inputs))


@pytest.mark.parametrize("social", ["every_step", "interleaved"])
@pytest.mark.parametrize("encoder", LAYERWISE)
def test_pooling_inside_the_encoder_is_causal_and_reaches_only_neighbours(encoder, social):
    """VDs at 0/400/900/2000/5000 m, radius 1200 m: VD 4 has no neighbour; VD 0's only neighbours are 1 and 2."""
    spec = make_spec(n=5, features=2, positions=POSITIONS)
    model = social_model(encoder, social, spec)
    inputs = random_input(b=2, n=5, t=6, f=2)
    before = states(model, inputs)
    changed = inputs.values.clone()
    changed[:, 1, 3] += 5.0  # VD 1 at step 3
    after = states(model, EncoderInput(changed, inputs.observed, inputs.covariates))
    assert torch.equal(after[:, :, :3], before[:, :, :3])  # nothing before step 3 moves
    assert (after[:, 0, 3:] - before[:, 0, 3:]).abs().max() > 1e-4  # the neighbour's change reaches VD 0 at once
    assert torch.equal(after[:, 4], before[:, 4])  # VD 4 has no neighbour
    assert torch.equal(after[:, 3], before[:, 3])  # VD 3 (1100 m from VD 2, 1600 m from VD 1) is not VD 1's neighbour


def test_every_step_and_interleaved_pool_where_they_say():
    spec = make_spec(n=5, features=2, positions=POSITIONS)
    lstm = LSTMEncoder(LSTMConfig(embedding_dim=8, num_layers=3), spec)
    assert (
        inner_layers("last", lstm) == []
        and inner_layers("every_step", lstm) == [0]
        and inner_layers("interleaved", lstm) == [1, 2]
    )
    with pytest.raises(RecipeError, match="has 1 layer"):
        inner_layers("interleaved", LSTMEncoder(LSTMConfig(embedding_dim=8, num_layers=1), spec))


def test_zero_initialised_injection_starts_from_last(float64):
    spec = make_spec(n=5, features=2, positions=POSITIONS)
    model = social_model("lstm", "every_step", spec)
    for inject in model.inject.values():
        torch.nn.init.zeros_(inject.weight)
    inputs = random_input(b=2, n=5, t=6, f=2)
    torch.testing.assert_close(states(model, inputs), model.encoder(inputs).detach(), **F64)


@pytest.mark.slow
@pytest.mark.parametrize("social", ["every_step", "interleaved"])
def test_a_model_that_pools_only_inside_the_encoder_learns_what_only_neighbours_know(social):
    series, spec = network()
    torch.manual_seed(0)
    encoder = LSTMEncoder(LSTMConfig(embedding_dim=16, num_layers=2), spec)
    head = NoPooling(NoPooling.Config(), spec, 16)
    inner = {layer: STRATEGIES["radius"](spec, 16) for layer in inner_layers(social, encoder)}
    social_error = fit_and_score(Forecaster(encoder, head, ModelConfig(hidden_dim=32), inner=inner), series, spec)
    torch.manual_seed(0)
    alone = Forecaster(LSTMEncoder(LSTMConfig(embedding_dim=16, num_layers=2), spec), head, ModelConfig(hidden_dim=32))
    alone_error = fit_and_score(alone, series, spec)
    assert alone_error > 0.7 and social_error < 0.7 * alone_error, (
        f"{social}: MAE {social_error:.3f} vs {alone_error:.3f} without"
    )


def test_an_encoder_that_cannot_run_layer_by_layer_is_refused_at_recipe_load(write_recipe):
    recipe = write_recipe("""
        [encoder]
        name = "spin_lite"
        [model]
        social = "every_step"
    """)
    with pytest.raises(RecipeError) as error:
        load_recipe(recipe)
    assert str(error.value) == (
        f"{recipe}: [model] social = 'every_step' pools between encoder layers, but encoder 'spin_lite' does not run "
        "layer "
        'by layer (it is not a LayerwiseEncoder); use social = "last", or one of: lstm, stid, xlstm_per_vd, '
        "xlstm_shared"
    )
