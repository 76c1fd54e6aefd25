"""Unit tests of transfer_jax/training/optimizer.py: the hyperparameters in the optimizer state
(what lets runs of a vectorized group each keep their own), the schedule from the stored base
rate, and the parameter groups of a multi-phase method."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transfer_jax import config_lib
from transfer_jax.errors import UserError
from transfer_jax.training.optimizer import (
  build_group_optimizers,
  build_optimizer,
  hyperparams_of,
  learning_rate_now,
  with_hyperparams,
)

PARAMS = {'backbone': {'w': jnp.ones(3)}, 'classifier': {'w': jnp.ones(2)}}


def _cfg(**fields):
  cfg = config_lib.base_config('source_only', tiny=True).optimizer
  cfg.update({**dict(name='sgd', momentum=0.0, nesterov=False, schedule='constant',
                     learning_rate=0.1, weight_decay=0.0), **fields})
  return cfg


def test_the_state_holds_the_learning_rate_and_weight_decay():
  cfg = _cfg(weight_decay=0.01)
  state = build_optimizer(cfg, 10, PARAMS).init(PARAMS)
  assert {k: float(v) for k, v in state.hyperparams.items()} == {
      'learning_rate': np.float32(0.1), 'weight_decay': np.float32(0.01)}
  assert all(v.dtype == jnp.float32 for v in hyperparams_of(cfg).values())


def test_values_set_in_the_state_drive_the_update():
  """One optimizer object, two states: each update follows its own state's values."""
  cfg = _cfg(weight_decay=0.5)
  optimizer = build_optimizer(cfg, 10, PARAMS)
  grads = jax.tree.map(jnp.ones_like, PARAMS)
  own = with_hyperparams(optimizer.init(PARAMS), {'learning_rate': 0.2, 'weight_decay': 0.0})
  updates, _ = optimizer.update(grads, own, PARAMS)
  np.testing.assert_allclose(updates['backbone']['w'], -0.2, rtol=1e-6)
  updates, _ = optimizer.update(grads, optimizer.init(PARAMS), PARAMS)   # 0.1 * (1 + 0.5 * 1)
  np.testing.assert_allclose(updates['backbone']['w'], -0.15, rtol=1e-6)


def test_the_schedule_follows_the_stored_base_rate():
  cfg = _cfg(schedule='inverse', inverse_gamma=0.001, inverse_power=0.75)
  optimizer = build_optimizer(cfg, 1000, PARAMS)
  state = with_hyperparams(optimizer.init(PARAMS), {'learning_rate': 0.01})
  step = jnp.asarray(100)
  np.testing.assert_allclose(learning_rate_now(cfg, 1000, state, step),
                             0.01 * (1 + 0.001 * 100) ** -0.75, rtol=1e-6)
  grads = jax.tree.map(jnp.ones_like, PARAMS)
  for _ in range(3):
    updates, state = optimizer.update(grads, state, PARAMS)
  np.testing.assert_allclose(updates['classifier']['w'], -0.01 * (1 + 0.002) ** -0.75, rtol=1e-6)


def test_a_group_steps_at_the_rate_of_the_iteration_and_keeps_its_own_count():
  optimizers = build_group_optimizers(_cfg(momentum=0.9), 10, PARAMS,
                                      {'g': ('backbone',), 'f': ('classifier',)})
  state = optimizers['g'].init({'backbone': PARAMS['backbone']})
  state = state._replace(hyperparams={**state.hyperparams, 'iteration_rate': jnp.float32(0.03)})
  grads = {'backbone': {'w': jnp.ones(3)}}
  updates, state = optimizers['g'].update(grads, state, {'backbone': PARAMS['backbone']})
  np.testing.assert_allclose(updates['backbone']['w'], -0.03, rtol=1e-6)
  updates, _ = optimizers['g'].update(grads, state, {'backbone': PARAMS['backbone']})
  np.testing.assert_allclose(updates['backbone']['w'], -0.03 * 1.9, rtol=1e-6)  # Momentum.


def test_adam_s_first_moment_decay_is_the_config_s_b1():
  """ADDA's authors' Adam(2e-4, beta1 0.5): the second update, by hand, differs from b1 0.9's."""
  grads = [jax.tree.map(lambda p, g=g: jnp.full_like(p, g), PARAMS) for g in (1.0, -3.0)]
  for b1 in (0.5, 0.9):
    optimizer = build_optimizer(_cfg(name='adam', b1=b1, learning_rate=2e-4), 10, PARAMS)
    state = optimizer.init(PARAMS)
    for g in grads:
      updates, state = optimizer.update(g, state, PARAMS)
    m = ((1 - b1) * b1 * 1.0 + (1 - b1) * -3.0) / (1 - b1 ** 2)
    v = (0.999 * 0.001 * 1.0 + 0.001 * 9.0) / (1 - 0.999 ** 2)
    np.testing.assert_allclose(updates['backbone']['w'], -2e-4 * m / (np.sqrt(v) + 1e-8),
                               rtol=1e-4)


def test_momentum_overrides_give_matching_parameters_their_own_momentum():
  """TLlib's AFN: SGD without momentum on the backbone, 0.9 on the head; the second update of
  a constant gradient is lr x 1 on the one and lr x (1 + 0.9) on the other (plain SGD with
  coupled weight decay: g + wd p)."""
  cfg = _cfg(momentum=0.9, weight_decay=0.0, momentum_overrides=(('backbone/.*', 0.0),))
  optimizer = build_optimizer(cfg, 10, PARAMS)
  state, grads = optimizer.init(PARAMS), jax.tree.map(jnp.ones_like, PARAMS)
  for _ in range(2):
    updates, state = optimizer.update(grads, state, PARAMS)
  np.testing.assert_allclose(updates['backbone']['w'], -0.1, rtol=1e-6)
  np.testing.assert_allclose(updates['classifier']['w'], -0.1 * 1.9, rtol=1e-6)


def test_momentum_overrides_that_match_nothing_or_name_a_rule_without_momentum_are_refused():
  with pytest.raises(UserError, match='momentum_overrides pattern .* matches no parameter'):
    build_optimizer(_cfg(momentum_overrides=(('head/.*', 0.0),)), 10, PARAMS)
  with pytest.raises(UserError, match='momentum_overrides is for sgd'):
    build_optimizer(_cfg(name='adam', momentum_overrides=(('backbone/.*', 0.0),)), 10, PARAMS)
