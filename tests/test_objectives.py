"""Unit tests of the objectives: gradient reversal, schedules, losses, the DANN term."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from transfer_jax.objectives import (
  StepContext,
  cross_entropy,
  dann_annealing,
  dann_trade_off,
  gradient_reversal,
  methods,
)


def _finite_difference_grad(f, x, eps=1e-3):
  x = np.asarray(x, np.float64)
  grad = np.zeros_like(x)
  for i in np.ndindex(x.shape):
    step = np.zeros_like(x)
    step[i] = eps
    grad[i] = (f(x + step) - f(x - step)) / (2 * eps)
  return grad


@pytest.mark.parametrize('coeff', [1.0, 0.3, 0.0])
def test_gradient_reversal_matches_negated_finite_differences(coeff):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 4)).astype(np.float32)
  w = rng.normal(size=(4, 2)).astype(np.float32)

  def loss(x):
    return jnp.sum(jnp.tanh(x @ w) ** 2)

  reversed_grad = jax.grad(lambda x: loss(gradient_reversal(x, coeff)))(jnp.asarray(x))
  numeric = _finite_difference_grad(lambda v: float(loss(jnp.asarray(v, jnp.float32))), x)
  np.testing.assert_allclose(reversed_grad, -coeff * numeric, atol=2e-3)
  np.testing.assert_array_equal(gradient_reversal(x, coeff), x)  # Identity forward.


def test_gradient_reversal_under_jit_and_traced_coeff():
  grad = jax.jit(jax.grad(lambda x, c: jnp.sum(3.0 * gradient_reversal(x, c))))(
      jnp.ones(5), jnp.float32(0.5))
  np.testing.assert_allclose(grad, -1.5 * np.ones(5))


def test_dann_trade_off_ramp_hand_values():
  np.testing.assert_allclose(dann_trade_off(0.0), 0.0, atol=1e-7)
  np.testing.assert_allclose(dann_trade_off(0.5), 2 / (1 + np.exp(-5)) - 1, rtol=1e-6)
  np.testing.assert_allclose(dann_trade_off(1.0), 0.9999092, rtol=1e-6)  # 2/(1+e^-10)-1
  values = dann_trade_off(jnp.linspace(0, 1, 11))
  assert np.all(np.diff(values) > 0), 'the ramp must increase monotonically'


def test_dann_learning_rate_annealing_hand_values():
  schedule = dann_annealing(0.01, total_steps=1000, alpha=10.0, beta=0.75)
  np.testing.assert_allclose(schedule(0), 0.01, rtol=1e-6)
  np.testing.assert_allclose(schedule(1000), 0.01 / 11 ** 0.75, rtol=1e-6)   # 0.0016526
  np.testing.assert_allclose(schedule(250), 0.01 / 3.5 ** 0.75, rtol=1e-6)
  np.testing.assert_allclose(schedule(5000), schedule(1000), rtol=1e-6)   # Clipped at p = 1.


def test_masked_cross_entropy_hand_value():
  logits = jnp.array([[0.0, 0.0], [2.0, 0.0], [100.0, -100.0]])
  labels = jnp.array([0, 1, 1])
  mask = jnp.array([1, 1, 0])
  expected = (np.log(2) + np.log(1 + np.exp(2))) / 2   # Third row is padding.
  np.testing.assert_allclose(cross_entropy(logits, labels, mask), expected, rtol=1e-6)


def _dann_setup(coeff):
  rng = np.random.default_rng(1)
  features = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(5,)), jnp.float32)
  batch = {'source': {'label': jnp.zeros(4, jnp.int32)}, 'target': {}}
  config = ml_collections.ConfigDict(dict(trade_off=1.0, grl_schedule='constant',
                                          grl_gamma=10.0, grl_coeff=coeff))

  def loss(features, w):
    ctx = StepContext(step=jnp.int32(0), progress=jnp.float32(0.0), rng=jax.random.key(0),
                      config=config, discriminate=lambda f: f @ w)
    return methods.dann({'features': features}, batch, ctx)[0]

  return features, w, loss


def test_dann_reverses_a_nonzero_gradient_into_the_features():
  """The feature extractor must receive -coeff * the discriminator loss gradient (not zero)."""
  features, w, loss = _dann_setup(coeff=0.7)
  grad_features = jax.grad(loss, 0)(features, w)
  labels = jnp.array([0, 0, 0, 0, 1, 1], jnp.float32)
  plain = jax.grad(lambda f: jnp.mean(
      jnp.logaddexp(0, f @ w) - labels * (f @ w)))(features)   # BCE without reversal.
  assert float(jnp.abs(plain).max()) > 1e-3
  np.testing.assert_allclose(grad_features, -0.7 * plain, rtol=1e-5, atol=1e-7)
  # The discriminator descends its own loss: its gradient is not reversed.
  grad_w = jax.grad(loss, 1)(features, w)
  plain_w = jax.grad(lambda w: jnp.mean(
      jnp.logaddexp(0, features @ w) - labels * (features @ w)))(w)
  np.testing.assert_allclose(grad_w, plain_w, rtol=1e-5)


def test_dann_domain_loss_is_log2_for_an_undecided_discriminator():
  features, _, loss = _dann_setup(coeff=1.0)
  np.testing.assert_allclose(loss(features, jnp.zeros(5)), np.log(2), rtol=1e-6)


def test_source_only_adds_nothing():
  loss, metrics = methods.source_only({}, {}, None)
  assert float(loss) == 0.0 and metrics == {}


def test_unknown_method_names_the_choices():
  with pytest.raises(ValueError, match="choose one of \\['adda', 'afn', 'bsp', 'cdan', 'cdan_e'"):
    methods.get_method('dann2')
