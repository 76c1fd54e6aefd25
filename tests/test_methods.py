"""Unit tests of the feature-transfer methods: hand-computed values, properties, and for every
transfer term a gradient test: it must send a non-zero, correctly signed gradient into the
feature extractor (a discriminator whose output is constant would silently train source-only).
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from transfer_jax.config_lib import base_config
from transfer_jax.models import ResidualMLP
from transfer_jax.objectives import StepContext, discrepancy, methods, self_training

RNG = np.random.default_rng(0)


def _config(**overrides):
  config = ml_collections.ConfigDict(base_config('dann', tiny=True).method.to_dict())
  config.update(overrides)
  return config


# -- statistics ------------------------------------------------------------------------------

def test_entropy_and_squared_distances_by_hand():
  probs = jnp.array([[0.5, 0.5], [1.0, 0.0]])
  np.testing.assert_allclose(discrepancy.entropy(probs), [np.log(2), 0.0], atol=1e-6)
  x, y = RNG.normal(size=(4, 3)), RNG.normal(size=(5, 3))
  expected = ((x[:, None] - y[None]) ** 2).sum(-1)
  np.testing.assert_allclose(discrepancy.squared_distances(jnp.asarray(x), jnp.asarray(y)),
                             expected, rtol=1e-5, atol=1e-5)


def test_quadratic_mmd_is_zero_for_identical_samples_and_matches_a_hand_value():
  z = jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32)
  kernel = discrepancy.multi_gaussian_kernel(jnp.concatenate([z, z]), (0.5, 1.0, 2.0))
  assert abs(float(discrepancy.mmd_from_kernel(kernel, 4))) < 1e-6
  # 1-d points s = (0, 1), t = (3, 4) with a plain kernel matrix k(a, b) = exp(-(a-b)^2).
  points = np.array([0.0, 1.0, 3.0, 4.0])
  k = np.exp(-(points[:, None] - points[None]) ** 2)
  expected = (k[:2, :2].mean() + k[2:, 2:].mean() - 2 * k[:2, 2:].mean())
  np.testing.assert_allclose(discrepancy.mmd_from_kernel(jnp.asarray(k), 2), expected, rtol=1e-6)
  # Linear-time: one pair, h = k(s0,s1) + k(t0,t1) - k(s0,t1) - k(s1,t0).
  linear = k[0, 1] + k[2, 3] - k[0, 3] - k[1, 2]
  np.testing.assert_allclose(discrepancy.mmd_from_kernel(jnp.asarray(k), 2, linear=True), linear,
                             rtol=1e-6)
  with pytest.raises(ValueError, match='equal, even'):
    discrepancy.mmd_from_kernel(jnp.asarray(k[:3, :3]), 2, linear=True)


def test_linear_mmd_is_an_unbiased_estimate_of_the_quadratic_one():
  """Averaged over many batches, the linear-time estimator approaches the unbiased U-statistic."""
  s = RNG.normal(size=(4000, 2))
  t = RNG.normal(size=(4000, 2)) + 0.7
  kernel = lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / 2)  # noqa: E731
  sub_s, sub_t = s[:600], t[:600]
  k_ss, k_tt, k_st = kernel(sub_s, sub_s), kernel(sub_t, sub_t), kernel(sub_s, sub_t)
  n = len(sub_s)
  unbiased = ((k_ss.sum() - np.trace(k_ss)) / (n * (n - 1))
              + (k_tt.sum() - np.trace(k_tt)) / (n * (n - 1)) - 2 * k_st.mean())
  s0, s1, t0, t1 = s[0::2], s[1::2], t[0::2], t[1::2]
  pair = lambda a, b: np.exp(-((a - b) ** 2).sum(-1) / 2)  # noqa: E731
  linear = np.mean(pair(s0, s1) + pair(t0, t1) - pair(s0, t1) - pair(s1, t0))
  assert abs(linear - unbiased) < 0.03, (linear, unbiased)


def test_coral_by_hand_and_zero_for_identical_covariances():
  s, t = RNG.normal(size=(8, 3)), RNG.normal(size=(8, 3)) * 2.0
  expected = ((np.cov(s, rowvar=False) - np.cov(t, rowvar=False)) ** 2).sum() / (4 * 9)
  np.testing.assert_allclose(discrepancy.coral(jnp.asarray(s), jnp.asarray(t)), expected,
                             rtol=1e-5)
  assert float(discrepancy.coral(jnp.asarray(s), jnp.asarray(s + 5.0))) < 1e-9  # Shift only.


def test_multilinear_map_is_the_outer_product_and_the_randomized_map_preserves_it():
  f, g = RNG.normal(size=(2, 3)), RNG.dirichlet(np.ones(4), size=2)
  outer = discrepancy.multilinear_map(jnp.asarray(f), jnp.asarray(g))
  np.testing.assert_allclose(outer, np.einsum('bi,bj->bij', f, g).reshape(2, 12), rtol=1e-6)
  # E[<T(f1,g1), T(f2,g2)>] = <f1,f2><g1,g2> for the randomized map (Long et al. 2018, Thm 1).
  randomized = discrepancy.multilinear_map(jnp.asarray(f), jnp.asarray(g), randomized_dim=20000)
  np.testing.assert_allclose(float(randomized[0] @ randomized[1]),
                             float(outer[0] @ outer[1]), atol=0.15 * float(
                                 jnp.linalg.norm(outer[0]) * jnp.linalg.norm(outer[1])))


# -- method terms by hand --------------------------------------------------------------------

def _ctx(config=None, **heads):
  return StepContext(step=jnp.int32(0), progress=jnp.float32(1.0), rng=jax.random.key(0),
                     config=config or _config(), trade_off=1.0, **heads)


def test_mcc_by_hand_and_zero_for_confident_distinct_predictions():
  logits = RNG.normal(size=(6, 3)).astype(np.float32)
  temperature = 2.5
  p = np.exp(logits / temperature)
  p /= p.sum(1, keepdims=True)
  h = -(p * np.log(p)).sum(1)
  w = 1 + np.exp(-h)
  w = 6 * w / w.sum()
  c = (p * w[:, None]).T @ p
  c = c / c.sum(1, keepdims=True)
  expected = (c.sum() - np.trace(c)) / 3
  batch = {'source': {'label': jnp.zeros(0, jnp.int32)}, 'target': {}}
  loss, _ = methods.mcc({'logits': jnp.asarray(logits)}, batch, _ctx())
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  confident = jnp.asarray(np.eye(3)[[0, 1, 2, 0]] * 200.0)
  loss, _ = methods.mcc({'logits': confident}, batch, _ctx())
  assert float(loss) < 1e-6


def test_mdd_by_hand():
  features = jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32)
  logits = jnp.asarray(RNG.normal(size=(4, 2)), jnp.float32)
  w = jnp.asarray(RNG.normal(size=(3, 2)), jnp.float32)
  adv = np.asarray(features @ w)
  predictions = np.asarray(jnp.argmax(logits, -1))
  log_p = adv - np.log(np.exp(adv).sum(1, keepdims=True))
  source = -np.mean(log_p[[0, 1], predictions[:2]])
  p_t = np.exp(log_p[[2, 3], predictions[2:]])
  expected = 4.0 * source - np.mean(np.log(1 - p_t))
  batch = {'source': {'label': jnp.zeros(2, jnp.int32)}, 'target': {}}
  loss, metrics = methods.mdd({'features': features, 'logits': logits}, batch,
                              _ctx(adversary=lambda f: f @ w))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(metrics['mdd/source_disparity'], source, rtol=1e-5)


def test_bsp_is_dann_plus_the_squared_top_singular_values_of_each_domain():
  # Source rows [[3, 0], [0, 1]] have singular values (3, 1); target rows [[0, 2], [1, 0]] (2, 1).
  features = jnp.asarray([[3.0, 0.0], [0.0, 1.0], [0.0, 2.0], [1.0, 0.0]])
  batch = {'source': {'label': jnp.zeros(2, jnp.int32)}, 'target': {}}
  constant = lambda f: jnp.zeros(f.shape[0])  # noqa: E731 (p = 1/2: DANN's loss is log 2)
  for k, penalty in ((1, 9.0 + 4.0), (2, 9.0 + 1.0 + 4.0 + 1.0)):
    config = _config(bsp_weight=0.1, bsp_k=k)
    loss, metrics = methods.bsp({'features': features}, batch, _ctx(config, discriminate=constant))
    np.testing.assert_allclose(metrics['bsp/penalty'], penalty, rtol=1e-6)
    np.testing.assert_allclose(loss, np.log(2) + 0.1 * penalty, rtol=1e-6)


def test_bsp_gram_eigenvalues_equal_the_squared_singular_values_and_their_gradient():
  rng = np.random.default_rng(7)
  left, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  right, _ = np.linalg.qr(rng.normal(size=(4, 4)))
  matrix = left[:, :4] @ np.diag([4.0, 3.0, 2.0, 1.0]) @ right.T  # Separated singular values.
  for rows in (matrix, matrix.T):  # Both Gram matrices: rows > columns and rows < columns.
    rows = jnp.asarray(rows, jnp.float32)
    for k in (1, 3):
      expected = np.linalg.svd(np.asarray(rows, np.float64), compute_uv=False)[:k] ** 2
      np.testing.assert_allclose(methods.top_squared_singular_values(rows, k), expected,
                                 rtol=1e-5)
      grad = jax.grad(lambda x, k=k: jnp.sum(methods.top_squared_singular_values(x, k)))(rows)
      svd_grad = jax.grad(
          lambda x, k=k: jnp.sum(jnp.linalg.svd(x, compute_uv=False)[:k] ** 2))(rows)
      np.testing.assert_allclose(grad, svd_grad, rtol=1e-4, atol=1e-5)


def test_afn_pushes_every_feature_norm_up_by_delta_r():
  features = jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32)
  batch = {'source': {'label': jnp.zeros(2, jnp.int32)}, 'target': {}}
  loss_fn = lambda f: methods.afn({'features': f}, batch, _ctx())[0]  # noqa: E731
  np.testing.assert_allclose(loss_fn(features), 1.0, rtol=1e-6)   # delta_r^2 by construction.
  unit = features / jnp.linalg.norm(features, axis=1, keepdims=True)
  np.testing.assert_allclose(jax.grad(loss_fn)(features), -2.0 * unit / 4, rtol=1e-5)


def test_afn_entropy_term_reads_only_the_target_predictions():
  """SAFN+ENT (TLlib's --trade-off-entropy): + w x the mean entropy of the target softmax,
  by hand; the source rows' logits get no gradient from it."""
  features = jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32)
  logits = jnp.asarray(RNG.normal(size=(4, 5)), jnp.float32)
  batch = {'source': {'label': jnp.zeros(1, jnp.int32)}, 'target': {}}
  cfg = _config(afn_entropy_weight=0.03, afn_delta_r=0.3)
  loss_fn = lambda z: methods.afn({'features': features, 'logits': z}, batch,  # noqa: E731
                                  _ctx(cfg))[0]
  p = np.exp(np.asarray(logits[1:], np.float64))
  p /= p.sum(1, keepdims=True)
  want = 0.3 ** 2 + 0.03 * np.mean(-(p * np.log(p)).sum(1))
  np.testing.assert_allclose(loss_fn(logits), want, rtol=1e-5)
  grad = np.asarray(jax.grad(loss_fn)(logits))
  assert np.all(grad[0] == 0) and np.all(np.abs(grad[1:]).sum(1) > 0)


def test_shot_information_maximisation_and_centroid_pseudo_labels():
  features = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
  centroids = self_training.shot_features(jnp.asarray([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]))
  centroids = centroids.at[2].set(0.0)   # A class with no members is never assigned.
  np.testing.assert_array_equal(self_training.nearest_centroid(features, centroids), [1, 0, 1])
  logits = jnp.asarray([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
  p = np.asarray(jax.nn.softmax(logits))
  mean_entropy = np.mean(-(p * np.log(p)).sum(1))
  diversity = -(p.mean(0) * np.log(p.mean(0))).sum()
  pseudo_ce = -np.mean(np.log(p[[0, 1, 2], [1, 0, 1]]))
  loss, _ = self_training.shot({'features': features, 'logits': logits}, {'target': {}},
                         _ctx(anchors={'centroids': centroids}))
  np.testing.assert_allclose(loss, mean_entropy - diversity + 0.3 * pseudo_ce, rtol=1e-5)


def test_fixmatch_masks_unconfident_rows_and_strong_views_differ():
  images = jnp.asarray(RNG.uniform(size=(4, 8, 8, 1)), jnp.float32)
  strong = self_training.strong_augment(images, jax.random.key(1))
  assert strong.shape == images.shape and float(jnp.abs(strong - images).mean()) > 0.05
  np.testing.assert_array_equal(strong, self_training.strong_augment(images, jax.random.key(1)))
  vectors = jnp.ones((4, 10))
  assert self_training.strong_augment(vectors, jax.random.key(1)).shape == (4, 10)
  batch = {'source': {'label': jnp.zeros(0, jnp.int32)}, 'target': {'input': images}}
  forward = lambda x: {'logits': jnp.zeros((x.shape[0], 3))}  # noqa: E731
  unsure = {'logits': jnp.zeros((4, 3))}     # Confidence 1/3 < 0.95: nothing is pseudo-labelled.
  loss, metrics = self_training.fixmatch(unsure, batch, _ctx(forward=forward))
  assert float(loss) == 0.0 and float(metrics['fixmatch/mask_rate']) == 0.0
  sure = {'logits': jnp.asarray([[9.0, 0, 0], [9.0, 0, 0], [0, 0, 0], [0, 0, 0]])}
  loss, metrics = self_training.fixmatch(sure, batch, _ctx(forward=forward))
  np.testing.assert_allclose(loss, np.log(3) * 2 / 4, rtol=1e-5)
  np.testing.assert_allclose(metrics['fixmatch/mask_rate'], 0.5)


def test_residual_fusion_module_starts_as_the_identity():
  module = ResidualMLP(hidden=(7,))
  x = jnp.asarray(RNG.normal(size=(5, 4)), jnp.float32)
  params = module.init(jax.random.key(0), x)
  np.testing.assert_allclose(module.apply(params, x), x, atol=1e-7)


# -- every transfer term sends a non-zero, correctly signed gradient into the extractor --------

ADVERSARIAL = ('dann', 'cdan', 'cdan_e', 'mdd')
# Multi-phase methods (MCD, ADDA) have tests of their own (tests/test_methods_phases.py).
TERMS = [name for name, method in methods.METHODS.items()
         if name != 'source_only' and not method.phases]


def _harness(name, coeff=0.5):
  """A linear 'network': inputs -> features (extractor W_f) -> logits, with linear heads."""
  rng = np.random.default_rng(3)
  n_source, n_target, d_in, d, c = 6, 6, 5, 4, 3
  inputs = jnp.asarray(rng.normal(size=(n_source + n_target, d_in)), jnp.float32)
  inputs = inputs.at[n_source:].add(1.5)   # The target is shifted: the terms are not at rest.
  heads = {
      'classifier': jnp.asarray(rng.normal(size=(d, c)), jnp.float32),
      'discriminator': jnp.asarray(rng.normal(size=(d * c if 'cdan' in name else d,)),
                                   jnp.float32),
      'adversary': jnp.asarray(rng.normal(size=(d, c)), jnp.float32),
  }
  config = _config(name=name, grl_schedule='constant', grl_coeff=coeff, fixmatch_threshold=0.0)
  batch = {'source': {'input': inputs[:n_source],
                      'label': jnp.asarray(rng.integers(0, c, n_source))},
           'target': {'input': inputs[n_source:]}}
  centroids = self_training.shot_features(jnp.asarray(rng.normal(size=(c, d)), jnp.float32))
  fuse_w = jnp.asarray(rng.normal(size=(d, d)) * 0.1, jnp.float32)
  method = methods.METHODS[name]
  if not method.uses_source:
    batch.pop('source')

  def term(extractor):
    def forward(x):
      features = jnp.tanh(x @ extractor)
      return {'features': features, 'logits': features @ heads['classifier']}

    rows = inputs if method.uses_source else inputs[n_source:]
    ctx = StepContext(
        step=jnp.int32(0), progress=jnp.float32(0.5), rng=jax.random.key(0), config=config,
        trade_off=1.0, discriminate=lambda f: f @ heads['discriminator'],
        adversary=lambda f: f @ heads['adversary'], classify=lambda f: f @ heads['classifier'],
        fuse=lambda f: f + f @ fuse_w, forward=forward, anchors={'centroids': centroids})
    return method.loss(forward(rows), batch, ctx)

  extractor = jnp.asarray(rng.normal(size=(d_in, d)), jnp.float32)
  return extractor, term, heads, inputs, n_source


@pytest.mark.parametrize('name', TERMS)
def test_every_term_sends_a_nonzero_gradient_into_the_feature_extractor(name):
  extractor, term, *_ = _harness(name)
  grad = jax.grad(lambda e: term(e)[0])(extractor)
  assert float(jnp.abs(grad).max()) > 1e-4, f'{name}: no gradient reaches the extractor'


@pytest.mark.parametrize('name', [n for n in TERMS if n not in ADVERSARIAL + ('afn', 'bsp')])
def test_alignment_terms_decrease_along_their_extractor_gradient(name):
  extractor, term, *_ = _harness(name)
  value, grad = jax.value_and_grad(lambda e: term(e)[0])(extractor)
  stepped = term(extractor - 1e-3 * grad / jnp.linalg.norm(grad))[0]
  assert float(stepped) < float(value), f'{name}: {float(stepped)} >= {float(value)}'


@pytest.mark.parametrize('name', ADVERSARIAL)
def test_adversarial_terms_reverse_the_discriminator_gradient(name):
  """The extractor's gradient is -coeff times the gradient of the adversary's own loss, so a
  step of the extractor makes the adversary's loss larger (it learns to fool it)."""
  extractor, term, *_ = _harness(name, coeff=0.5)
  _, reversed_term, *_ = _harness(name, coeff=-1.0)   # GRL with -1: the plain gradient.
  grad = jax.grad(lambda e: term(e)[0])(extractor)
  plain = jax.grad(lambda e: reversed_term(e)[0])(extractor)
  assert float(jnp.abs(plain).max()) > 1e-4
  np.testing.assert_allclose(grad, -0.5 * plain, rtol=1e-4, atol=1e-6)
  adversary_loss = lambda e: reversed_term(e)[0]  # noqa: E731 (same value, plain gradient)
  before = float(adversary_loss(extractor))
  after = float(adversary_loss(extractor - 1e-3 * grad / jnp.linalg.norm(grad)))
  assert after > before


def test_afn_gradient_grows_the_feature_norms():
  extractor, term, heads, inputs, _ = _harness('afn')
  grad = jax.grad(lambda e: term(e)[0])(extractor)
  norm = lambda e: float(jnp.linalg.norm(jnp.tanh(inputs @ e), axis=1).mean())  # noqa: E731
  assert norm(extractor - 1e-2 * grad) > norm(extractor)


def test_dann_discriminator_with_a_constant_output_is_caught():
  """The peer library's bug: a softmax over one logit is constant; the test above must fail."""
  extractor, term, heads, *_ = _harness('dann')
  heads['discriminator'] = jnp.zeros_like(heads['discriminator'])
  grad = jax.grad(lambda e: term(e)[0])(extractor)
  assert float(jnp.abs(grad).max()) == 0.0


def test_bsp_extractor_gradient_is_dann_s_plus_one_that_shrinks_the_top_singular_values():
  extractor, bsp_term, _, inputs, n = _harness('bsp')
  _, dann_term, *_ = _harness('dann')
  difference = (jax.grad(lambda e: bsp_term(e)[0])(extractor)
                - jax.grad(lambda e: dann_term(e)[0])(extractor))
  assert float(jnp.abs(difference).max()) > 1e-6

  def top_singular_values(e):  # NumPy's SVD, independent of the term's.
    features = np.tanh(np.asarray(inputs) @ np.asarray(e))
    return sum(np.linalg.svd(rows, compute_uv=False)[0] ** 2 for rows in (features[:n],
                                                                           features[n:]))
  stepped = extractor - 1e-2 * difference / jnp.linalg.norm(difference)
  assert top_singular_values(stepped) < top_singular_values(extractor)
