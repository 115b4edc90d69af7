from __future__ import annotations

import pytest
import torch

from core.api import EncoderInput
from plugins.encoders.lstm import LSTMConfig, LSTMEncoder, run_lstm
from plugins.encoders.xlstm_shared import SharedXLSTMConfig, SharedXLSTMEncoder
from tests.conftest import F64, make_spec
from tests.helpers import ENCODERS, random_input


@pytest.mark.parametrize("name", ENCODERS)
def test_shapes_and_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    encoder = ENCODERS[name](make_spec(n=5, features=2))
    hidden = encoder(random_input())
    assert hidden.shape == (2, 5, 6, 16) and torch.isfinite(hidden).all()
    hidden[:, :, -1].pow(2).sum().backward()
    missing = [n for n, p in encoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


@pytest.mark.parametrize("name", ENCODERS)
def test_vds_are_never_mixed(float64, name):
    """Changing VD 3's history changes VD 3's states only (the encoder is not spatial)."""
    torch.manual_seed(0)
    encoder = ENCODERS[name](make_spec(n=5, features=2)).eval()
    inputs = random_input()
    changed_values = inputs.values.clone()
    changed_values[:, 3] += 5.0
    before = encoder(inputs)
    after = encoder(EncoderInput(changed_values, inputs.observed, inputs.covariates, None))
    others = [0, 1, 2, 4]
    torch.testing.assert_close(after[:, others], before[:, others], **F64)
    assert (after[:, 3] - before[:, 3]).abs().max() > 1e-3


def test_shared_encoder_folds_vds_into_the_batch(float64):
    """[B, N, T, E] out of one stack equals the stack applied to each VD's sequence alone."""
    torch.manual_seed(0)
    encoder = ENCODERS["xlstm_shared"](make_spec(n=5, features=2)).eval()
    inputs = random_input()
    hidden = encoder(inputs)
    x = encoder.embedding(inputs.features())
    for vd in (0, 4):
        torch.testing.assert_close(hidden[:, vd], encoder.stack(x[None, :, vd])[0], **F64)


@pytest.mark.parametrize(
    "encoder",
    [
        lambda spec: LSTMEncoder(LSTMConfig(embedding_dim=16, num_layers=1, vd_embedding=True), spec),
        lambda spec: SharedXLSTMEncoder(
            SharedXLSTMConfig(embedding_dim=16, num_blocks=1, slstm_at=(), vd_embedding=True, per_vd_output=True), spec
        ),
    ],
    ids=["lstm", "xlstm_shared"],
)
def test_per_vd_tables_get_the_same_gradient_every_time(encoder):
    """Same seed, same run: the gradients of per-VD vectors and maps (read for every sample) are bit-identical
    from one backward pass to the next (indexing the table added the repeated rows in a varying order)."""
    torch.manual_seed(0)
    model = encoder(make_spec(n=36, features=2))
    inputs = random_input(b=64, n=36, t=4)
    gradients = []
    for _ in range(5):
        model.zero_grad()
        model(inputs)[:, :, -1].square().sum().backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters()})
    for name, first in gradients[0].items():
        assert all(torch.equal(first, later[name]) for later in gradients[1:]), name


def test_the_lstm_runs_in_float32_under_cpu_bf16_autocast():
    """oneDNN has no bf16 LSTM on CPUs without avx512_bf16 (nn.LSTM raised 'could not create a primitive
    descriptor'): under CPU autocast the layers take float32, the same numbers on every CPU, and train."""
    torch.manual_seed(0)
    encoder = ENCODERS["lstm"](make_spec(n=5, features=2))
    x = torch.randn(10, 6, encoder.out_dim).bfloat16()
    with torch.autocast("cpu", torch.bfloat16):
        out = run_lstm(encoder.layers[0], x)
        hidden = encoder(random_input())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, encoder.layers[0](x.float())[0], rtol=0, atol=0)
    hidden.float().square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.layers.parameters())
