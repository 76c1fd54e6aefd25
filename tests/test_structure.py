"""Structural transfer: Net2Net widening and deepening, adapters, heads, truncation.

Every function-preserving operation is checked on random inputs with random parameters (biases,
BatchNorm scales and statistics too, so no unit sits at a trivial value): the outputs before and
after agree to 1e-5.
"""

import functools
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from transfer_jax.errors import UserError
from transfer_jax.models import MLP, ResNetFeatures, TransferModel
from transfer_jax.models.growable import GrowableConvNet, GrowableMLP, ResNetTrunk
from transfer_jax.models.multi_head import MultiHeadModel
from transfer_jax.transfer import adapters, net2net, structure
from transfer_jax.transfer.params import param_names

TOL = 1e-5
VECTORS = jax.random.normal(jax.random.key(1), (16, 7))
IMAGES = jax.random.normal(jax.random.key(2), (4, 8, 8, 3))


def _init(model, inputs, seed=0):
  """Variables of `model` (all heads: TransferModel.init_all) drawn in numpy, no init run:
  N(0, 1/fan_in) weights, N(0, 0.5) biases and BN shifts/means, BN scales and variances in
  [0.5, 1.5], so that every unit does something."""
  method = getattr(model, 'init_all', None)
  shapes = jax.eval_shape(functools.partial(model.init, method=method), jax.random.key(0), inputs)
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(shapes))
  rng = np.random.default_rng(seed)
  out = {}
  for path, x in sorted(flat.items()):
    if path[-1] in ('scale', 'var'):
      out[path] = rng.uniform(0.5, 1.5, x.shape)
    elif len(x.shape) > 1:
      out[path] = rng.normal(size=x.shape) / np.sqrt(np.prod(x.shape[:-1]))
    else:
      out[path] = 0.5 * rng.normal(size=x.shape)
  return flax.traverse_util.unflatten_dict(
      {path: jnp.asarray(value, jnp.float32) for path, value in out.items()})


def _logits(model, variables, inputs, train=False):
  outputs = model.apply(variables, inputs, train=train, mutable=['batch_stats'] if train else False)
  outputs = outputs[0] if train else outputs
  return outputs['logits'] if isinstance(outputs, dict) else outputs


def _same_leaves(a, b):
  """The same tree of the very same arrays (bit-identical, not even copied)."""
  return (jax.tree.structure(a) == jax.tree.structure(b) and
          all(x is y for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)))


def _max_diff(a, b):
  return float(jnp.max(jnp.abs(a - b)))


def _mlp_model(batch_norm=False, adapter_width=0):
  return TransferModel(backbone=GrowableMLP((6, 5), batch_norm, adapter_width),
                       classifier=MLP((4,), 3))


def _conv_model(batch_norm=False, adapter_width=0):
  return TransferModel(backbone=GrowableConvNet((4, 5), pools=(True, False),
                                                batch_norm=batch_norm,
                                                adapter_width=adapter_width),
                       classifier=MLP((), 3), domain_discriminator=MLP((4,), 1))


CASES = {  # name -> (model, inputs)
    'dense': (_mlp_model(), VECTORS),
    'conv': (_conv_model(), IMAGES),
    'dense_bn': (_mlp_model(batch_norm=True), VECTORS),
    'conv_bn': (_conv_model(batch_norm=True), IMAGES),
    'dense_adapter': (_mlp_model(adapter_width=2), VECTORS),
}


@pytest.mark.parametrize('case', sorted(CASES))
@pytest.mark.parametrize('layer', [0, 1])
def test_widen_preserves_outputs(case, layer):
  model, inputs = CASES[case]
  variables = _init(model, inputs)
  wide, wide_vars = net2net.widen(model, variables, layer, 9, rng=jax.random.key(3))
  assert wide.backbone.widths[layer] == 9
  for train in (False, True):  # Batch statistics replicate per channel: exact in train mode too.
    diff = _max_diff(_logits(model, variables, inputs, train), _logits(wide, wide_vars, inputs,
                                                                       train))
    assert diff <= TOL, f'{case} layer {layer} train={train}: outputs moved by {diff:.2e}'
  if 'domain_discriminator' in wide_vars['params']:  # Every head reading the features.
    before, after = (m.apply(v, m.apply(v, inputs)['features'], method=m.discriminate)
                     for m, v in ((model, variables), (wide, wide_vars)))
    assert _max_diff(before, after) <= TOL


def test_widen_noise_breaks_symmetry():
  model, inputs = CASES['dense']
  variables = _init(model, inputs)
  rng = jax.random.key(4)
  exact, exact_vars = net2net.widen(model, variables, 0, 12, rng=rng)
  noisy, noisy_vars = net2net.widen(model, variables, 0, 12, rng=rng, noise=0.01)
  diff = _max_diff(_logits(model, variables, inputs), _logits(noisy, noisy_vars, inputs))
  assert 1e-4 < diff < 0.05, diff
  # Copies of a unit read the same inputs; their outgoing weights now differ.
  outgoing = noisy_vars['params']['backbone']['layer1']['dense']['kernel']
  incoming = noisy_vars['params']['backbone']['layer0']['dense']['kernel']
  copy = 6  # The first extra unit, and the unit it copies.
  original = int(jnp.argmax(jnp.all(incoming == incoming[:, copy:copy + 1], axis=0)))
  assert original < 6
  assert not np.allclose(outgoing[copy], outgoing[original])
  exact_outgoing = exact_vars['params']['backbone']['layer1']['dense']['kernel']
  np.testing.assert_allclose(exact_outgoing[copy], exact_outgoing[original])


@pytest.mark.parametrize('case', ['dense', 'conv', 'dense_bn', 'conv_bn', 'dense_adapter'])
@pytest.mark.parametrize('after', [0, 1])
def test_deepen_preserves_outputs(case, after):
  model, inputs = CASES[case]
  variables = _init(model, inputs)
  deep, deep_vars = net2net.deepen(model, variables, after, rng=jax.random.key(5))
  assert len(deep.backbone.widths) == 3
  diff = _max_diff(_logits(model, variables, inputs), _logits(deep, deep_vars, inputs))
  assert diff <= TOL, f'{case} after {after}: eval outputs moved by {diff:.2e}'


def test_grow_then_truncate_and_bare_backbone():
  backbone = GrowableConvNet((4, 6), kernel_size=3, batch_norm=True)
  variables = _init(backbone, IMAGES)
  model, grown = net2net.deepen(backbone, variables, 0, rng=jax.random.key(0))
  model, grown = net2net.widen(model, grown, 1, 7, rng=jax.random.key(1))
  model, grown = adapters.add_adapters(model, grown, 3, rng=jax.random.key(2))
  assert model.widths == (4, 7, 6) and model.adapter_width == 3
  before = backbone.apply(variables, IMAGES)
  assert _max_diff(before, model.apply(grown, IMAGES)) <= TOL
  short, short_vars = structure.truncate(model, grown, 2)
  _, state = model.apply(grown, IMAGES, capture_intermediates=True)
  hidden = state['intermediates']['layer1']['__call__'][0].mean(axis=(1, 2))
  assert _max_diff(short.apply(short_vars, IMAGES), hidden) <= TOL


@pytest.mark.parametrize('case', ['dense', 'conv_bn'])
def test_adapters_preserve_outputs_and_train_alone(case):
  model, inputs = CASES[case]
  variables = _init(model, inputs)
  adapted, adapted_vars = adapters.add_adapters(model, variables, 2, rng=jax.random.key(6))
  diff = _max_diff(_logits(model, variables, inputs), _logits(adapted, adapted_vars, inputs))
  assert diff <= TOL, f'{case}: adapters moved the outputs by {diff:.2e}'

  params = adapted_vars['params']
  mask = adapters.adapter_mask(params)
  names = param_names(params)
  assert {n for n, m in zip(names, jax.tree.leaves(mask), strict=True) if m} == {
      n for n in names if '/adapter/' in n}
  optimizer = optax.multi_transform(
      {True: optax.sgd(0.1), False: optax.set_to_zero()}, mask)

  def loss(p):
    out = adapted.apply({**adapted_vars, 'params': p}, inputs, train=True,
                        mutable=['batch_stats'])[0]
    return jnp.mean(out['logits'] ** 2)

  updates, _ = optimizer.update(jax.grad(loss)(params), optimizer.init(params), params)
  new_params = optax.apply_updates(params, updates)
  changed = {n for n, a, b in zip(names, jax.tree.leaves(params), jax.tree.leaves(new_params),
                                  strict=True) if not np.array_equal(a, b)}
  assert changed and all('/adapter/' in n for n in changed), sorted(changed)
  # The same selection as a config.optimizer.freeze regex (fullmatch, as optimizer.py does).
  freeze = re.compile(adapters.adapter_freeze_regex(train_heads=('classifier',)))
  trainable = {n for n in names if not freeze.fullmatch(n)}
  assert trainable == {n for n in names if '/adapter/' in n or n.startswith('classifier/')}
  head_mask = adapters.adapter_mask(params, train_heads=('classifier',))
  assert {n for n, m in zip(names, jax.tree.leaves(head_mask), strict=True) if m} == trainable


def test_replace_head_keeps_every_other_leaf():
  model, inputs = CASES['conv_bn']
  variables = _init(model, inputs)
  new, new_vars = structure.replace_head(model, variables, 7, rng=jax.random.key(7))
  assert _logits(new, new_vars, inputs).shape == (4, 7)
  for col, tree in variables.items():
    for name in ('backbone', 'domain_discriminator'):
      if name in tree:
        assert _same_leaves(tree[name], new_vars[col][name]), f'{col}/{name} changed'
  mlp_model, vectors = CASES['dense']
  mlp_vars = _init(mlp_model, vectors)
  _, kept = structure.replace_head(mlp_model, mlp_vars, 2, rng=jax.random.key(8),
                                   keep_hidden=True)
  assert _same_leaves(kept['params']['classifier']['dense0'],
                      mlp_vars['params']['classifier']['dense0'])
  assert kept['params']['classifier']['out']['kernel'].shape == (4, 2)
  with pytest.raises(UserError, match='no head'):
    structure.replace_head(mlp_model, mlp_vars, 2, rng=jax.random.key(0), name='adversary')


def test_add_head_gives_a_multi_head_model():
  model, inputs = CASES['conv_bn']
  variables = _init(model, inputs)
  multi, multi_vars = structure.add_head(model, variables, 'digits', 10, hidden=(8,),
                                         rng=jax.random.key(9))
  assert isinstance(multi, MultiHeadModel)
  outputs = multi.apply(multi_vars, inputs)
  assert _max_diff(outputs['logits'], _logits(model, variables, inputs)) == 0
  assert outputs['head_logits']['digits'].shape == (4, 10)
  assert _same_leaves(multi_vars['params']['heads_classifier'], variables['params']['classifier'])
  # A second new label set; then a new head for it, and Net2Net growth under several heads.
  multi, multi_vars = structure.add_head(multi, multi_vars, 'letters', 26, rng=jax.random.key(1))
  multi, multi_vars = structure.replace_head(multi, multi_vars, 5, name='letters',
                                             rng=jax.random.key(2))
  wide, wide_vars = net2net.widen(multi, multi_vars, 1, 8, rng=jax.random.key(3))
  before, after = multi.apply(multi_vars, inputs), wide.apply(wide_vars, inputs)
  for name in ('classifier', 'digits', 'letters', 'domain_discriminator'):
    assert _max_diff(before['head_logits'][name], after['head_logits'][name]) <= TOL, name


def test_truncate_growable_mlp_matches_intermediate():
  model, inputs = CASES['dense_bn']
  variables = _init(model, inputs)
  short, short_vars = structure.truncate(model, variables, 1, rng=jax.random.key(0),
                                         inputs=inputs)
  assert short.backbone.widths == (6,)
  _, state = model.apply(variables, inputs, capture_intermediates=True)
  hidden = state['intermediates']['backbone']['layer0']['__call__'][0]
  features = short.apply(short_vars, inputs)['features']
  assert _max_diff(features, hidden) <= TOL
  assert short.apply(short_vars, inputs)['logits'].shape == (16, 3)
  with pytest.raises(UserError, match='rng'):
    structure.truncate(model, variables, 1)


def test_truncate_resnet_matches_stage_output():
  resnet = ResNetFeatures(depth=18, stem='cifar', widths=(4, 4, 8, 8))
  variables = _init(resnet, IMAGES)
  trunk, trunk_vars = structure.truncate(resnet, variables, 2)
  assert isinstance(trunk, ResNetTrunk)
  assert sorted(trunk_vars['params']) == ['bn1', 'conv1', 'layer1_0', 'layer1_1', 'layer2_0',
                                          'layer2_1']
  _, state = resnet.apply(variables, IMAGES, capture_intermediates=True)
  stage2 = state['intermediates']['layer2_1']['__call__'][0].mean(axis=(1, 2))
  assert _max_diff(trunk.apply(trunk_vars, IMAGES), stage2) <= TOL
  with pytest.raises(UserError, match='num_blocks'):
    structure.truncate(resnet, variables, 5)


def test_growth_refuses_other_backbones():
  model = TransferModel(backbone=ResNetFeatures(depth=18, stem='cifar', widths=(4, 4, 8, 8)),
                        classifier=MLP((), 3))
  with pytest.raises(UserError, match='Growable'):
    net2net.widen(model, {'params': {}}, 0, 8, rng=jax.random.key(0))
  model, inputs = CASES['dense']
  variables = _init(model, inputs)
  with pytest.raises(UserError, match='smaller'):
    net2net.widen(model, variables, 0, 3, rng=jax.random.key(0))


def test_deepen_with_batch_norm_is_exact_only_in_eval_mode():
  model, inputs = CASES['dense_bn']
  variables = _init(model, inputs)
  deep, deep_vars = net2net.deepen(model, variables, 0, rng=jax.random.key(0))
  block = deep_vars['params']['backbone']['layer1']
  np.testing.assert_array_equal(block['dense']['kernel'], np.eye(6))
  np.testing.assert_allclose(block['bn']['scale'], np.sqrt(1 + 1e-5))
  # Train mode normalises with the batch's statistics, not the running ones: no longer exact.
  diff = _max_diff(_logits(model, variables, inputs, True), _logits(deep, deep_vars, inputs, True))
  assert diff > 1e-3
