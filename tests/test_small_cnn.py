"""models/small_cnn.py against PyTorch's MNIST-example CNN written here (skada-bench's
ShallowConvNet feature layer), in inference and with its dropouts in training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transfer_jax.config_lib import model_config
from transfer_jax.models import BACKBONES
from transfer_jax.models.small_cnn import SmallCNNFeatures

torch = pytest.importorskip('torch')
nn = torch.nn


def mnist_example_torch() -> 'nn.Module':
  """conv 3x3 1->32 -> ReLU -> conv 3x3 32->64 -> ReLU -> max-pool 2 -> Dropout 0.25 -> flatten
  -> Linear 9216->128 -> ReLU -> Dropout 0.5 (the 128-d features)."""
  return nn.Sequential(
      nn.Conv2d(1, 32, 3, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 1), nn.ReLU(), nn.MaxPool2d(2),
      nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5))


def to_flax(module: 'nn.Module') -> dict:
  convs = [m for m in module if isinstance(m, nn.Conv2d)]
  linear = next(m for m in module if isinstance(m, nn.Linear))
  params = {f'conv{i + 1}': {'kernel': c.weight.detach().numpy().transpose(2, 3, 1, 0),
                             'bias': c.bias.detach().numpy()} for i, c in enumerate(convs)}
  params['fc1'] = {'kernel': linear.weight.detach().numpy().T, 'bias': linear.bias.detach().numpy()}
  return {'params': jax.tree.map(np.array, params)}


@pytest.fixture(scope='module')
def reference():
  torch.manual_seed(0)
  return mnist_example_torch()


@pytest.mark.parametrize('conv_impl', ['fused', 'xla'])
def test_matches_torch_in_inference(reference, conv_impl):
  images = np.random.default_rng(0).normal(0, 1, (4, 1, 28, 28)).astype(np.float32)
  want = reference.eval()(torch.from_numpy(images)).detach().numpy()
  got = SmallCNNFeatures(conv_impl=conv_impl).apply(to_flax(reference),
                                                    jnp.asarray(images.transpose(0, 2, 3, 1)))
  assert got.shape == (4, 128)
  assert np.abs(want).max() > 0.1  # Not an all-zero ReLU output compared with itself.
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_fused_and_textbook_blocks_have_the_same_gradients(reference):
  """The 'fused' blocks (pool before bias and ReLU, first-maximum pool gradient, width-padded
  input gradient) give the textbook blocks' training features and parameter and input
  gradients, dropout masks included (same rng)."""
  images = jnp.asarray(np.random.default_rng(2).normal(0, 1, (6, 28, 28, 1)), jnp.float32)
  weights = jnp.asarray(np.random.default_rng(3).normal(0, 1, (6, 128)), jnp.float32)
  variables = to_flax(reference)

  def loss(params, x, impl):
    features = SmallCNNFeatures(conv_impl=impl).apply(
        {'params': params}, x, train=True, rngs={'dropout': jax.random.key(4)})
    return jnp.sum(features * weights)

  grads = {impl: jax.grad(loss, argnums=(0, 1))(variables['params'], images, impl)
           for impl in ('fused', 'xla')}
  assert loss(variables['params'], images, 'fused') != 0.0
  np.testing.assert_allclose(loss(variables['params'], images, 'fused'),
                             loss(variables['params'], images, 'xla'), rtol=1e-5)
  for got, want in zip(jax.tree.leaves(grads['fused']), jax.tree.leaves(grads['xla']),
                       strict=True):
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_parameter_shapes_are_torchs(reference):
  variables = SmallCNNFeatures().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  shapes = jax.tree.map(np.shape, variables['params'])
  assert shapes == jax.tree.map(np.shape, to_flax(reference)['params'])
  assert sum(p.numel() for p in reference.parameters()) == sum(
      int(np.prod(s)) for s in jax.tree.leaves(shapes, is_leaf=lambda x: isinstance(x, tuple)))


def test_training_applies_both_dropouts(reference):
  """In training the features are dropped element-wise (about half of the ReLU's non-zeros at
  p = 0.5) and the kept ones are scaled by 1 / (1 - p): torch's nn.Dropout."""
  images = jnp.asarray(np.random.default_rng(1).normal(0, 1, (8, 28, 28, 1)), jnp.float32)
  variables, module = to_flax(reference), SmallCNNFeatures()
  kept = np.asarray(module.apply(variables, images))
  dropped = np.asarray(module.apply(variables, images, train=True,
                                    rngs={'dropout': jax.random.key(1)}))
  assert dropped.shape == kept.shape and not np.allclose(dropped, kept)
  no_conv_dropout = np.asarray(SmallCNNFeatures(conv_dropout=0.0).apply(
      variables, images, train=True, rngs={'dropout': jax.random.key(1)}))
  active = kept > 0
  # With the conv dropout off, each feature is 0 or 2x its inference value.
  zero, doubled = no_conv_dropout == 0, np.isclose(no_conv_dropout, 2 * kept, rtol=1e-4)
  assert np.all(zero | doubled)
  assert 0.35 < zero[active].mean() < 0.65
  assert not np.allclose(dropped, no_conv_dropout)  # The Dropout(0.25) before the dense layer.


def test_backbones_entry_builds_it():
  backbone = BACKBONES['small_cnn'](model_config('small_cnn'))
  assert isinstance(backbone, SmallCNNFeatures) and backbone.conv == (32, 64)
