"""Multi-phase methods (MCD, ADDA): each phase's term by hand, which parameters each phase moves,
and the gradient each sends where the paper says."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import tiny_digits
from transfer_jax.config_lib import base_config
from transfer_jax.objectives import StepContext, multi_phase

RNG = np.random.default_rng(0)


def _ctx(**fields):
  config = ml_collections.ConfigDict(base_config('mcd', tiny=True).method.to_dict())
  config.mcd_entropy_weight = 0.5
  return StepContext(step=jnp.int32(0), progress=jnp.float32(0.5), rng=jax.random.key(0),
                     config=config, trade_off=0.3, **fields)


def _softmax(x):
  e = np.exp(x - x.max(1, keepdims=True))
  return e / e.sum(1, keepdims=True)


def test_mcd_discrepancy_and_class_balance_by_hand():
  p1 = jnp.asarray([[1.0, 0.0], [0.5, 0.5]])
  p2 = jnp.asarray([[0.0, 1.0], [0.5, 0.5]])
  np.testing.assert_allclose(multi_phase.mcd_discrepancy(p1, p2), (1 + 1 + 0 + 0) / 4)
  # Mean prediction (0.75, 0.25): -(log 0.75 + log 0.25) / 2; balanced (0.5, 0.5): log 2.
  np.testing.assert_allclose(multi_phase.mcd_class_balance(p1),
                             -(np.log(0.75 + 1e-6) + np.log(0.25 + 1e-6)) / 2, rtol=1e-6)
  np.testing.assert_allclose(multi_phase.mcd_class_balance(jnp.full((3, 2), 0.5)),
                             -np.log(0.5 + 1e-6), rtol=1e-6)


def test_mcd_phase_terms_by_hand():
  features = RNG.normal(size=(4, 3)).astype(np.float32)
  w1, w2 = RNG.normal(size=(3, 2)).astype(np.float32), RNG.normal(size=(3, 2)).astype(np.float32)
  labels = np.array([0, 1])
  logits_1, logits_2 = features @ w1, features @ w2
  p1, p2 = _softmax(logits_1[2:]), _softmax(logits_2[2:])
  source_2 = -np.mean(np.log(_softmax(logits_2[:2])[[0, 1], labels]))
  balance = 0.5 * sum(-np.mean(np.log(p.mean(0) + 1e-6)) for p in (p1, p2))
  discrepancy = np.mean(np.abs(p1 - p2))
  outputs = {'features': jnp.asarray(features), 'logits': jnp.asarray(logits_1)}
  batch = {'source': {'label': jnp.asarray(labels)}, 'target': {}}
  ctx = _ctx(adversary=lambda f: f @ w2)
  np.testing.assert_allclose(multi_phase.mcd_fit(outputs, batch, ctx)[0], source_2 + balance,
                             rtol=1e-5)
  np.testing.assert_allclose(multi_phase.mcd_maximize(outputs, batch, ctx)[0],
                             source_2 + balance - 0.3 * discrepancy, rtol=1e-5)
  np.testing.assert_allclose(multi_phase.mcd_minimize(outputs, batch, ctx)[0], 0.3 * discrepancy,
                             rtol=1e-5)


def _mcd_harness():
  rng = np.random.default_rng(3)
  inputs = jnp.asarray(rng.normal(size=(8, 5)), jnp.float32).at[4:].add(1.5)
  batch = {'source': {'label': jnp.asarray(rng.integers(0, 3, 4))}, 'target': {}}
  extractor = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
  w1, w2 = (jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) for _ in range(2))

  def term(phase, extractor, w1, w2):
    features = jnp.tanh(inputs @ extractor)
    outputs = {'features': features, 'logits': features @ w1}
    return phase(outputs, batch, _ctx(adversary=lambda f: f @ w2))[0]

  return term, extractor, w1, w2


def test_mcd_step_c_sends_the_generator_a_gradient_that_lowers_the_discrepancy():
  term, extractor, w1, w2 = _mcd_harness()
  value, grad = jax.value_and_grad(lambda e: term(multi_phase.mcd_minimize, e, w1, w2))(extractor)
  assert float(jnp.abs(grad).max()) > 1e-4
  assert float(term(multi_phase.mcd_minimize, extractor - 1e-3 * grad / jnp.linalg.norm(grad),
                    w1, w2)) < float(value)


def test_mcd_step_b_sends_the_classifiers_a_gradient_that_raises_the_discrepancy():
  term, extractor, w1, w2 = _mcd_harness()
  fit = jax.grad(lambda a, b: term(multi_phase.mcd_fit, extractor, a, b), argnums=(0, 1))(w1, w2)
  maximize = jax.grad(lambda a, b: term(multi_phase.mcd_maximize, extractor, a, b),
                      argnums=(0, 1))(w1, w2)
  # The difference is -trade_off * d(discrepancy): a step along -(B's gradient - A's) raises it.
  difference = [m - f for m, f in zip(maximize, fit, strict=True)]
  assert all(float(jnp.abs(d).max()) > 1e-5 for d in difference)
  before = float(term(multi_phase.mcd_minimize, extractor, w1, w2))
  norm = jnp.sqrt(sum(jnp.sum(d ** 2) for d in difference))
  after = float(term(multi_phase.mcd_minimize, extractor, w1 - 1e-3 * difference[0] / norm,
                     w2 - 1e-3 * difference[1] / norm))
  assert after > before


@pytest.fixture(scope='module')
def mcd_program():
  from jax.sharding import Mesh

  from transfer_jax.training.program import build_program
  config = tiny_digits('method=mcd', **{'method.group_momentum': "(('generator', 0.0),)"})
  mesh = Mesh(np.asarray(jax.devices()[:1]), ('data',))
  return config, build_program(config, mesh, (28, 28, 1), 10)


def _batch(config, rng):
  n = config.batch_size
  return {'source': {'input': jnp.asarray(rng.normal(size=(n, 28, 28, 1)), jnp.float32),
                     'label': jnp.asarray(rng.integers(0, 10, n), jnp.int32)},
          'target': {'input': jnp.asarray(rng.normal(size=(n, 28, 28, 1)) + 0.5, jnp.float32)}}


def test_mcd_step_runs_its_three_phases_each_on_its_own_groups(mcd_program):
  """One jitted step runs 2 + num_k phases (A, B, C x num_k); every module moves; the generator
  has no momentum (group_momentum), so no trace state, the classifiers have one."""
  config, program = mcd_program
  state = program.init_state(jax.random.key(0))
  before = jax.tree.map(np.asarray, state.params)
  state, metrics = program.train_step(state, _batch(config, np.random.default_rng(0)),
                                      jax.random.key(1))
  assert set(state.opt_state) == {'generator', 'classifiers'}
  assert f'train/phase{1 + config.method.mcd_num_k}_loss' in metrics
  assert f'train/phase{2 + config.method.mcd_num_k}_loss' not in metrics
  traces = lambda tree: [leaf for leaf in jax.tree.leaves(tree) if np.ndim(leaf) > 0]  # noqa: E731
  assert not traces(state.opt_state['generator'])           # No momentum: no trace.
  assert traces(state.opt_state['classifiers'])
  for module in ('backbone', 'classifier', 'adversary'):
    moved = [not np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(before[module]), jax.tree.leaves(state.params[module]), strict=True)]
    assert any(moved), module
  assert np.isfinite(float(metrics['mcd/discrepancy']))


def test_mcd_step_c_moves_only_the_generator_and_step_b_only_the_classifiers(mcd_program):
  """Runs with num_k = 0 and 1 differ only in the extra step C: the classifiers end equal."""
  from jax.sharding import Mesh

  from transfer_jax.training.program import build_program
  config, _ = mcd_program
  mesh = Mesh(np.asarray(jax.devices()[:1]), ('data',))
  ends = {}
  for num_k in (0, 1):
    cfg = tiny_digits('method=mcd', **{'method.mcd_num_k': num_k})
    program = build_program(cfg, mesh, (28, 28, 1), 10)
    state, _ = program.train_step(program.init_state(jax.random.key(0)),
                                  _batch(cfg, np.random.default_rng(0)), jax.random.key(1))
    ends[num_k] = jax.tree.map(np.asarray, state.params)
  for module in ('classifier', 'adversary'):  # Equal up to rounding of two compiled programs.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9),
                 ends[0][module], ends[1][module])
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(ends[0]['backbone']), jax.tree.leaves(ends[1]['backbone']), strict=True))


def test_adda_discriminator_and_inverted_label_mapping_losses_by_hand():
  source_inputs = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
  target_features = jnp.asarray([[2.0, 0.0], [0.0, -1.0]])
  w = jnp.asarray([0.5, -1.0])
  source_model = lambda x: {'features': x * 2.0}  # noqa: E731 (a frozen 'encoder')
  ctx = _ctx(discriminate=lambda f: f @ w, source_model=source_model)
  batch = {'source': {'input': source_inputs, 'label': jnp.zeros(2, jnp.int32)}, 'target': {}}
  outputs = {'features': jnp.concatenate([jnp.zeros((2, 2)), target_features])}
  softplus = lambda z: np.log1p(np.exp(z))  # noqa: E731 (BCE(z, 0) = softplus(z))
  source_logits, target_logits = np.array([1.0, -2.0]), np.array([1.0, 1.0])
  expected = (softplus(source_logits).sum() + softplus(-target_logits).sum()) / 4
  np.testing.assert_allclose(multi_phase.adda_discriminate(outputs, batch, ctx)[0], expected,
                             rtol=1e-6)
  np.testing.assert_allclose(multi_phase.adda_map(outputs, batch, ctx)[0],
                             softplus(target_logits).mean(), rtol=1e-6)


def test_adda_gradients_reach_only_where_the_paper_sends_them():
  """The discriminator step sends nothing into the target encoder; the mapping step sends the
  target encoder a gradient that makes target features look like source to the discriminator."""
  rng = np.random.default_rng(5)
  inputs = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
  batch = {'source': {'input': inputs[:3], 'label': jnp.zeros(3, jnp.int32)}, 'target': {}}
  source_encoder = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3,)), jnp.float32)
  ctx = _ctx(discriminate=lambda f: f @ w,
             source_model=lambda x: {'features': jnp.tanh(x @ source_encoder)})

  def term(phase, encoder):
    return phase({'features': jnp.tanh(inputs @ encoder)}, batch, ctx)[0]

  encoder = source_encoder + 0.3
  discriminator_grad = jax.grad(lambda e: term(multi_phase.adda_discriminate, e))(encoder)
  assert float(jnp.abs(discriminator_grad).max()) == 0
  value, grad = jax.value_and_grad(lambda e: term(multi_phase.adda_map, e))(encoder)
  assert float(jnp.abs(grad).max()) > 1e-4
  stepped = encoder - 1e-2 * grad / jnp.linalg.norm(grad)
  assert float(term(multi_phase.adda_map, stepped)) < float(value)


def test_per_domain_passes_normalise_each_domain_with_its_own_batch_statistics():
  """`model.per_domain_passes` (TLlib's afn.py: model(x_s), then model(x_t)): the step's
  BatchNorm statistics are those of a source pass followed by a target pass; by default, those
  of one pass over the concatenated batch. The two differ when the domains do."""
  from jax.sharding import Mesh

  from transfer_jax.training.program import build_program
  mesh = Mesh(np.asarray(jax.devices()[:1]), ('data',))
  batch = _batch(tiny_digits(), np.random.default_rng(0))
  batch['target']['input'] = batch['target']['input'] * 3.0 + 1.0   # A shifted target domain.
  stats = {}
  for per_domain in (False, True):
    config = tiny_digits('method=dann', **{'model.backbone': 'lenet', 'model.lenet_conv': '(4, 8)',
                                           'model.bottleneck_dim': 8,
                                           'model.per_domain_passes': per_domain})
    program = build_program(config, mesh, (28, 28, 1), 10)
    state = program.init_state(jax.random.key(0))
    source, target = batch['source']['input'], batch['target']['input']
    statistics = jax.jit(lambda variables, x, model=program.model: model.apply(
        variables, x, train=True, mutable=['batch_stats'])[1])
    if per_domain:
      expected = statistics({'params': state.params, **state.model_state}, source)
      expected = statistics({'params': state.params, **expected}, target)
    else:
      expected = statistics({'params': state.params, **state.model_state},
                            jnp.concatenate([source, target]))
    state, metrics = program.train_step(state, batch, jax.random.key(1))
    assert np.isfinite(float(metrics['train/total_loss']))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 jax.tree.map(np.asarray, state.model_state['batch_stats']),
                 jax.tree.map(np.asarray, expected['batch_stats']))
    stats[per_domain] = jax.tree.leaves(state.model_state['batch_stats'])
  assert any(not np.allclose(a, b, atol=1e-4) for a, b in zip(stats[False], stats[True],
                                                              strict=True))
