"""Unit tests of the parameter-transfer regularizers against hand-computed values."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from transfer_jax.objectives import regularizers as reg

PARAMS = {'backbone': {'w': jnp.array([1.0, 2.0])}, 'head': {'w': jnp.array([3.0])}}
SOURCE = {'backbone': {'w': jnp.array([0.5, 2.5])}, 'head': {'w': jnp.array([0.0])}}
TRANSFERRED = {'backbone': {'w': True}, 'head': {'w': False}}


def _ctx(**kwargs):
  config = ml_collections.ConfigDict(dict(alpha=0.1, beta=0.01, bss_k=1))
  return reg.RegularizerContext(config=config, reference=SOURCE, transferred=TRANSFERRED, **kwargs)


def test_l2_hand_value():
  loss, _ = reg.l2(PARAMS, _ctx())
  np.testing.assert_allclose(loss, 0.5 * 0.1 * (1 + 4 + 9), rtol=1e-6)


def test_l2_sp_pulls_transferred_to_source_and_new_to_zero():
  loss, metrics = reg.l2_sp(PARAMS, _ctx())
  to_source = 0.5 * 0.1 * (0.5 ** 2 + 0.5 ** 2)   # backbone drift from theta_S
  to_zero = 0.5 * 0.01 * 3.0 ** 2                  # new head towards 0
  np.testing.assert_allclose(metrics['regularizer/to_source'], to_source, rtol=1e-6)
  np.testing.assert_allclose(loss, to_source + to_zero, rtol=1e-6)
  assert float(reg.l2_sp(SOURCE, _ctx())[1]['regularizer/to_source']) == 0.0
  grad = jax.grad(lambda p: reg.l2_sp(p, _ctx())[0])(PARAMS)
  np.testing.assert_allclose(grad['backbone']['w'], 0.1 * np.array([0.5, -0.5]), rtol=1e-6)


def test_fisher_sp_weights_the_drift_by_the_fisher():
  fisher = {'backbone': {'w': jnp.array([4.0, 0.0])}, 'head': {'w': jnp.array([1.0])}}
  loss, metrics = reg.fisher_sp(PARAMS, _ctx(fisher=fisher))
  np.testing.assert_allclose(metrics['regularizer/to_source'], 0.5 * 0.1 * 4.0 * 0.25, rtol=1e-6)
  np.testing.assert_allclose(loss, 0.5 * 0.1 + 0.5 * 0.01 * 9.0, rtol=1e-6)


def test_delta_is_the_feature_distance_and_needs_no_gradient_into_the_source():
  features = jnp.array([[1.0, 2.0], [0.0, 0.0]])
  source_features = jnp.array([[0.0, 2.0], [1.0, 1.0]])
  loss, metrics = reg.delta(PARAMS, _ctx(features=features, reference_features=source_features))
  np.testing.assert_allclose(metrics['regularizer/feature_distance'], 0.1 * (1 + 2) / 2, rtol=1e-6)
  grad = jax.grad(lambda s: reg.delta(PARAMS, _ctx(features=features,
                                                   reference_features=s))[0])(source_features)
  assert float(jnp.abs(grad).max()) == 0.0


def test_bss_penalises_the_smallest_singular_value():
  features = jnp.array([[3.0, 0.0], [0.0, 2.0], [0.0, 0.0]])   # singular values 3, 2
  loss, _ = reg.bss(PARAMS, _ctx(features=features))
  np.testing.assert_allclose(loss, 0.1 * 4.0, rtol=1e-5)
  identical = jnp.ones((4, 3))   # rank 1: the smallest singular value is 0
  np.testing.assert_allclose(reg.bss(PARAMS, _ctx(features=identical))[0], 0.0, atol=1e-6)


def test_unknown_regularizer_names_the_choices():
  with pytest.raises(ValueError, match='choose one of'):
    reg.get_regularizer('l3')
