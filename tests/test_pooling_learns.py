"""Pooling must carry what only the neighbours know.

A network of pairs, 10 km apart: in each pair a follower 500 m downstream repeats its source's series
``LAG`` steps later, so the follower's next ``LAG`` values are the source's last ``LAG`` values, while its
own history (the source's older past, white noise) says nothing about them. Only followers are scored.
"""

from __future__ import annotations

import pytest

from tests.helpers import ALL_STRATEGIES, train_and_score


@pytest.fixture(scope="module")
def error_without_pooling() -> float:
    return train_and_score("none")


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_pooling_learns_a_signal_only_neighbours_carry(strategy, error_without_pooling):
    error = train_and_score(strategy)
    assert error_without_pooling > 0.7  # own history is useless: about E|N(0, 1)| = 0.8
    assert error < 0.7 * error_without_pooling, (
        f"{strategy}: MAE {error:.3f} vs {error_without_pooling:.3f} without pooling"
    )
