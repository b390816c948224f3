"""Learning-rate schedules and optimiser chains."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from coda_training.config import OptimConfig
from coda_training.optim import lr_schedule, make_optimizer


@pytest.mark.parametrize("decay", ["cosine", "linear"])
def test_warmup_then_decay_to_the_floor(decay: str) -> None:
    schedule = lr_schedule(OptimConfig(learning_rate=1.0, warmup_steps=10, decay=decay, min_lr_ratio=0.1), 110)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(0.5)
    assert float(schedule(10)) == pytest.approx(1.0)
    assert float(schedule(60)) == pytest.approx(0.55)  # halfway: cosine and linear agree at the midpoint
    assert float(schedule(110)) == pytest.approx(0.1)
    values = [float(schedule(s)) for s in range(10, 111)]
    assert all(a >= b - 1e-7 for a, b in zip(values, values[1:]))


def test_constant_after_warmup() -> None:
    schedule = lr_schedule(OptimConfig(learning_rate=2.0, warmup_steps=4, decay="constant"), 100)
    assert [float(schedule(s)) for s in (2, 4, 99)] == [1.0, 2.0, 2.0]


def second_update(name: str, clip_norm: float, second_grad: float) -> np.ndarray:
    """The update after a 1e6 gradient; unclipped, that one gradient swamps the optimiser's statistics."""
    cfg = OptimConfig(name=name, learning_rate=1.0, warmup_steps=0, decay="constant", clip_norm=clip_norm)
    tx = make_optimizer(cfg, 10)
    params = {"w": jnp.ones((4, 4))}
    state = tx.init(params)
    _, state = tx.update({"w": jnp.full((4, 4), 1e6)}, state, params)
    updates, _ = tx.update({"w": jnp.full((4, 4), second_grad)}, state, params)
    assert np.all(np.isfinite(np.asarray(updates["w"])))
    return np.asarray(updates["w"])


def test_adafactor_clipping_keeps_a_huge_gradient_from_freezing_the_next_step() -> None:
    clipped, unclipped = second_update("adafactor", 1.0, 1.0), second_update("adafactor", 0.0, 1.0)
    assert np.abs(clipped).max() > 10 * np.abs(unclipped).max()


def test_adamw_clipping_lets_the_next_gradient_turn_the_momentum() -> None:
    # Unclipped, momentum from the 1e6 gradient still pushes the old way after a reversed unit gradient.
    assert np.all(second_update("adamw", 1.0, -1.0) > 0)
    assert np.all(second_update("adamw", 0.0, -1.0) < 0)
