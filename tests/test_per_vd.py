"""Per-VD xLSTM (batched over VDs, equal to a loop of package modules), the grouped stack, the distributed layout."""

from __future__ import annotations

import attrs
import pytest
import torch

from core.api import DistributedBatch
from core.data.config import DataConfig
from core.data.windows import prepare
from core.errors import DataError, RecipeError
from core.model import Forecaster
from core.recipe import ModelConfig, load_recipe
from plugins.collators.centralized import CentralizedCollator
from plugins.collators.distributed import DistributedCollator
from plugins.collators.dynamic_padding import DynamicPaddingCollator
from plugins.encoders.grouped_xlstm import GroupedXLSTM
from plugins.encoders.lstm import LSTMConfig, LSTMEncoder
from plugins.encoders.xlstm_per_vd import PerVDLoop, PerVDXLSTMEncoder
from plugins.encoders.xlstm_shared import SharedXLSTMConfig, SharedXLSTMEncoder, XLSTMConfig, build_stack
from plugins.pooling.radius import RadiusConfig, RadiusPooling
from tests.conftest import F64, make_spec
from tests.helpers import random_input

CONFIG = XLSTMConfig(embedding_dim=16, num_blocks=3, slstm_at=(1,), num_heads=2)


def jiggle(module: torch.nn.Module, seed: int = 1) -> None:
    """Perturb every weight, so that zero-initialised gates and recurrent kernels take part in the comparison."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("steps", [6, 2])  # 2: fewer steps than the causal convolution's 4 taps
def test_grouped_stack_equals_the_package_stack(float64, steps):
    torch.manual_seed(0)
    package = build_stack(CONFIG, steps, "vanilla")
    jiggle(package)
    grouped = GroupedXLSTM(build_stack(CONFIG, steps, "vanilla"), groups=1)
    grouped.load_state_dict({k: v[None] for k, v in package.state_dict().items()})
    x = torch.randn(7, steps, 16, requires_grad=True)
    expected = package(x)
    actual = grouped(x[None])[0]
    torch.testing.assert_close(actual, expected, **F64)
    # every gradient: the input's and every weight's (the sLSTM's recurrent kernel and gate biases included)
    names = [name for name, _ in package.named_parameters()]
    grads_expected = torch.autograd.grad(expected.square().sum(), [x, *package.parameters()])
    grads_actual = torch.autograd.grad(actual.square().sum(), [x, *(grouped.get_parameter(n) for n in names)])
    for name, grad_actual, grad_expected in zip(["input", *names], grads_actual, grads_expected, strict=True):
        torch.testing.assert_close(grad_actual.reshape(grad_expected.shape), grad_expected, **F64, msg=name)


@pytest.mark.parametrize("groups", [1, 3])
def test_grouped_stack_in_chunks_equals_the_whole_batch(float64, monkeypatch, groups):
    """One group: chunks of the batch; several: chunks of groups, each with its slice of the weights."""
    torch.manual_seed(0)
    stack = GroupedXLSTM(build_stack(CONFIG, 6, "vanilla"), groups=groups)
    jiggle(stack)
    x = torch.randn(groups, 7, 6, 16, requires_grad=True)

    def run():
        out = stack(x)
        return out, torch.autograd.grad(out.square().sum(), [x, *stack.parameters()])

    whole, whole_grads = run()
    monkeypatch.setattr(stack, "chunk_sequences", 3 if groups == 1 else 8)  # 7 -> 3, 3, 1; 3 x 7 -> a group each
    chunked, chunked_grads = run()
    torch.testing.assert_close(chunked, whole, **F64)  # other batch shapes: other kernels (float64: any CPU)
    for chunked_grad, whole_grad in zip(chunked_grads, whole_grads, strict=True):
        torch.testing.assert_close(chunked_grad, whole_grad, **F64)


@pytest.mark.parametrize("groups", [1, 3])
def test_recompute_gives_the_same_values_and_gradients_and_keeps_a_fraction(float64, monkeypatch, groups):
    """``recompute``: the same outputs and every gradient (dropout's draws included, chunked), with a fraction
    of the activations kept for the backward pass."""
    torch.manual_seed(0)
    stack = GroupedXLSTM(build_stack(attrs.evolve(CONFIG, dropout=0.2), 6, "vanilla"), groups=groups)
    jiggle(stack)
    for limit in ("chunk_sequences", "recompute_chunk_sequences"):
        monkeypatch.setattr(stack, limit, 3 if groups == 1 else 8)
    x = torch.randn(groups, 7, 6, 16, requires_grad=True)

    def run(recompute: bool):
        stack.recompute = recompute
        torch.manual_seed(1)
        kept = []  # bytes of the tensors autograd keeps for the backward pass
        with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.nbytes) or t, lambda t: t):
            out = stack(x)
        return out, torch.autograd.grad(out.square().sum(), [x, *stack.parameters()]), sum(kept)

    kept_all, grads, kept_all_bytes = run(False)
    recomputed, recomputed_grads, kept_bytes = run(True)
    torch.testing.assert_close(recomputed, kept_all, rtol=0, atol=0)
    for recomputed_grad, grad in zip(recomputed_grads, grads, strict=True):
        torch.testing.assert_close(recomputed_grad, grad, **F64)  # summed in another order
    assert kept_bytes < kept_all_bytes / 10
    spec = make_spec(n=4, features=2)  # the recipe key reaches both encoders' stacks
    assert SharedXLSTMEncoder(SharedXLSTMConfig(embedding_dim=16, num_heads=2, recompute=True), spec).stack.recompute
    assert PerVDXLSTMEncoder(attrs.evolve(CONFIG, recompute=True), spec).stack.recompute


def test_recompute_with_the_package_stack_gives_the_same_values_and_gradients(float64):
    """``xlstm_shared`` on the package's own stack (what runs with the sLSTM CUDA kernel; here its vanilla
    backend): ``recompute`` checkpoints each package block, the same numbers as keeping the activations."""
    spec = make_spec(n=4, features=2)
    config = SharedXLSTMConfig(embedding_dim=16, num_blocks=2, num_heads=2, dropout=0.2)
    torch.manual_seed(0)
    package = build_stack(config, spec.history, "vanilla")
    inputs = random_input(n=4)

    def run(recompute: bool):
        torch.manual_seed(1)  # the same input map, and the same dropout draws
        encoder = SharedXLSTMEncoder(attrs.evolve(config, recompute=recompute), spec)
        encoder.stack = package
        out = encoder(inputs)
        return out, torch.autograd.grad(out.square().sum(), list(package.parameters()))

    kept_all, grads = run(False)
    recomputed, recomputed_grads = run(True)
    torch.testing.assert_close(recomputed, kept_all, rtol=0, atol=0)
    for recomputed_grad, grad in zip(recomputed_grads, grads, strict=True):
        torch.testing.assert_close(recomputed_grad, grad, **F64)  # summed in another order


def test_per_vd_batched_equals_the_loop_of_independent_modules(float64):
    torch.manual_seed(0)
    encoder = PerVDXLSTMEncoder(CONFIG, make_spec(n=4, features=2))
    jiggle(encoder)
    reference = PerVDLoop(encoder)
    inputs = random_input(n=4)
    torch.testing.assert_close(encoder(inputs), reference(inputs), **F64)


def test_every_vd_has_its_own_weights_and_all_of_them_train():
    torch.manual_seed(0)
    encoder = PerVDXLSTMEncoder(CONFIG, make_spec(n=4, features=2))
    jiggle(encoder)
    inputs = random_input(n=4)
    # VD 2's loss reaches VD 2's weights only
    encoder(inputs)[:, 2, -1].square().sum().backward()
    for name, p in encoder.named_parameters():
        assert p.shape[0] == 4, name
        assert p.grad[2].abs().sum() > 0, f"{name}: VD 2 got no gradient from its own loss"
        assert (p.grad[[0, 1, 3]] == 0).all(), f"{name}: another VD got gradient from VD 2's loss"
    # one optimizer step on every VD's loss changes every VD's slice of every parameter
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    optimizer.zero_grad()
    before = {name: p.detach().clone() for name, p in encoder.named_parameters()}
    encoder(inputs)[:, :, -1].square().sum().backward()
    optimizer.step()
    for name, p in encoder.named_parameters():
        changed = (p.detach() - before[name]).flatten(1).abs().amax(1) > 0
        assert changed.all(), f"{name}: VDs {(~changed).nonzero().flatten().tolist()} did not change"


def test_per_vd_refuses_a_different_number_of_vds():
    encoder = PerVDXLSTMEncoder(CONFIG, make_spec(n=4, features=2))
    with pytest.raises(DataError, match=r"built for 4 VDs \(vd0, vd1, vd2, vd3\) but the batch has 5"):
        encoder(random_input(n=5))


def test_shared_per_vd_conditioning_is_per_vd():
    """The VD embedding and the per-VD output map start neutral and change only their own VD."""
    torch.manual_seed(0)
    spec = make_spec(n=4, features=2)
    plain = SharedXLSTMEncoder(SharedXLSTMConfig(embedding_dim=16, num_blocks=2, num_heads=2), spec)
    torch.manual_seed(0)
    conditioned = SharedXLSTMEncoder(
        SharedXLSTMConfig(embedding_dim=16, num_blocks=2, num_heads=2, vd_embedding=True, per_vd_output=True), spec
    )
    conditioned.load_state_dict(plain.state_dict(), strict=False)
    inputs = random_input(n=4)
    before = conditioned(inputs)
    torch.testing.assert_close(before, plain(inputs))
    with torch.no_grad():
        conditioned.vd_embedding[1] += torch.randn(16)  # (a uniform shift would vanish in the LayerNorms)
        conditioned.output_map[3] *= 2.0
    after = conditioned(inputs)
    torch.testing.assert_close(after[:, [0, 2]], before[:, [0, 2]])
    assert (after[:, 1] - before[:, 1]).abs().max() > 1e-3
    torch.testing.assert_close(after[:, 3], 2 * before[:, 3])


@pytest.mark.parametrize("encoder", ["lstm", "xlstm_shared", "xlstm_per_vd"])
def test_distributed_and_centralized_layouts_give_the_same_forecast(small_data, encoder):
    prepared = prepare(small_data, DataConfig(history=6, horizon=3))
    spec = prepared.spec()
    windows = prepared.splits["val"].__getitems__([0, 5, 9])
    central = CentralizedCollator(CentralizedCollator.Config(), spec)(windows)
    distributed = DistributedCollator(DistributedCollator.Config(), spec)(windows)

    assert isinstance(distributed, DistributedBatch) and list(distributed.features) == list(spec.vd_ids)
    vd = spec.vd_ids[7]
    assert distributed.features[vd].shape == (3, 6, spec.num_features)
    assert distributed.targets[vd].shape == (3, 3) and distributed.vd_masks[vd].shape == (3,)
    torch.testing.assert_close(distributed.positions[vd], spec.positions_xy[7].expand(3, 6, 2))
    torch.testing.assert_close(distributed.features[vd], central.values[:, :, 7])

    torch.manual_seed(0)
    build = {
        "lstm": lambda: LSTMEncoder(LSTMConfig(embedding_dim=16), spec),
        "xlstm_shared": lambda: SharedXLSTMEncoder(
            SharedXLSTMConfig(embedding_dim=16, num_blocks=2, num_heads=2), spec
        ),
        "xlstm_per_vd": lambda: PerVDXLSTMEncoder(XLSTMConfig(embedding_dim=16, num_blocks=2, num_heads=2), spec),
    }[encoder]()
    model = Forecaster(build, RadiusPooling(RadiusConfig(), spec, 16), ModelConfig(hidden_dim=8)).eval()
    torch.testing.assert_close(model(distributed.canonical()), model(central), rtol=0, atol=0)


def test_encoder_that_cannot_take_the_collators_layout_is_refused_at_load(write_recipe, monkeypatch):
    monkeypatch.setattr(LSTMEncoder, "layouts", frozenset({"centralized"}))
    recipe = write_recipe('[encoder]\nname = "lstm"\n[collator]\nname = "distributed"\n')
    with pytest.raises(
        RecipeError, match="encoder 'lstm' cannot take the 'distributed' batches of collator 'distributed'"
    ):
        load_recipe(recipe)


def test_every_builtin_encoder_loads_with_the_distributed_collator(write_recipe):
    for name in ("lstm", "xlstm_shared", "xlstm_per_vd"):
        recipe, _ = load_recipe(write_recipe(f'[encoder]\nname = "{name}"\n[collator]\nname = "distributed"\n'))
        assert recipe.collator.name == "distributed"


@pytest.mark.slow
@pytest.mark.parametrize("collator", [CentralizedCollator, DynamicPaddingCollator])
def test_torch_compile_traces_the_whole_forecaster(small_data, collator):
    """``trainer.compile = true``: dynamo traces the forecaster from the batch on (the encoder input built from it
    included) and gives the eager forecast. The ``eager`` backend traces without generating code."""
    prepared = prepare(small_data, DataConfig(history=6, horizon=3))
    spec = prepared.spec()
    batch = collator(collator.Config(), spec)(prepared.splits["val"].__getitems__([0, 5, 9])).canonical()
    torch.manual_seed(0)
    encoder = SharedXLSTMEncoder(SharedXLSTMConfig(embedding_dim=16, num_blocks=2, num_heads=2), spec)
    model = Forecaster(encoder, RadiusPooling(RadiusConfig(), spec, 16), ModelConfig(hidden_dim=8)).eval()
    torch.testing.assert_close(torch.compile(model, backend="eager")(batch), model(batch))
