"""The LeNet family (models/lenet.py LeNetFeatures) against PyTorch networks written here:
TLlib's digits LeNet with its bottleneck, and LeNet-5; channel dropout (torch's Dropout2d)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transfer_jax import config_lib
from transfer_jax.errors import UserError
from transfer_jax.models import DannLeNetFeatures, LeNetFeatures, build_model

torch = pytest.importorskip('torch')
nn = torch.nn

TLLIB = dict(conv=(20, 50), conv_dropout=0.5, dense=(500,), dense_dropout=0.5, bottleneck=256)
LENET5 = dict(conv=(6, 16), dense=(120, 84))


def tllib_torch(dropout: float) -> 'nn.Module':
  """TLlib's digits LeNet (conv -> pool -> ReLU order, Dropout2d before the second pool), then
  the bottleneck Linear 256 -> BatchNorm1d -> ReLU of its ImageClassifier."""
  return nn.Sequential(
      nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.ReLU(),
      nn.Conv2d(20, 50, 5), nn.Dropout2d(dropout), nn.MaxPool2d(2), nn.ReLU(),
      nn.Flatten(1), nn.Linear(800, 500), nn.ReLU(), nn.Dropout(dropout),
      nn.Linear(500, 256), nn.BatchNorm1d(256), nn.ReLU())


def lenet5_torch() -> 'nn.Module':
  """LeNet-5 with ReLU and max-pool on 32x32 inputs: conv 1->6->16 @5x5, dense 400->120->84."""
  return nn.Sequential(
      nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
      nn.MaxPool2d(2), nn.Flatten(1), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
      nn.ReLU())


def to_flax(module: 'nn.Module') -> dict:
  """Flax variables of LeNetFeatures from a torch Sequential (OIHW -> HWIO, (out, in) -> (in,
  out); the flatten order is torch's already)."""
  params, stats = {}, {}
  convs = [m for m in module if isinstance(m, nn.Conv2d)]
  linears = [m for m in module if isinstance(m, nn.Linear)]
  norms = [m for m in module if isinstance(m, nn.BatchNorm1d)]
  for i, conv in enumerate(convs):
    params[f'conv{i + 1}'] = {'kernel': conv.weight.detach().numpy().transpose(2, 3, 1, 0),
                              'bias': conv.bias.detach().numpy()}
  dense = linears[:-1] if norms else linears
  for i, linear in enumerate(dense):
    params[f'fc{i + 1}'] = {'kernel': linear.weight.detach().numpy().T,
                            'bias': linear.bias.detach().numpy()}
  if norms:
    params['bottleneck'] = {'kernel': linears[-1].weight.detach().numpy().T,
                            'bias': linears[-1].bias.detach().numpy()}
    params['bottleneck_bn'] = {'scale': norms[0].weight.detach().numpy(),
                               'bias': norms[0].bias.detach().numpy()}
    stats['bottleneck_bn'] = {'mean': norms[0].running_mean.numpy(),
                              'var': norms[0].running_var.numpy()}
  # Copies: torch updates its running statistics in place, numpy views would follow.
  params, stats = jax.tree.map(np.array, params), jax.tree.map(np.array, stats)
  return {'params': params, **({'batch_stats': stats} if stats else {})}


def _seeded(build, *args, seed: int) -> 'nn.Module':
  """`build(*args)` with torch's initialisation drawn from `seed`, not from whatever state the
  tests before this one left in torch's global generator."""
  torch.manual_seed(seed)
  return build(*args)


def _randomise(module: 'nn.Module', seed: int) -> None:
  torch.manual_seed(seed)
  for m in module:
    if isinstance(m, nn.BatchNorm1d):  # Statistics and affine parameters away from 0 / 1.
      m.running_mean.uniform_(-0.5, 0.5)
      m.running_var.uniform_(0.5, 2.0)
      m.weight.data.uniform_(0.5, 1.5)
      m.bias.data.uniform_(-0.2, 0.2)


@pytest.mark.parametrize('conv_impl', ['fused', 'xla'])
def test_tllib_lenet_matches_torch_in_inference(conv_impl):
  reference = _seeded(tllib_torch, 0.5, seed=0)
  _randomise(reference, 0)
  reference.eval()
  images = np.random.default_rng(0).uniform(-1, 1, (8, 1, 28, 28)).astype(np.float32)
  want = reference(torch.from_numpy(images)).detach().numpy()
  got = LeNetFeatures(**TLLIB, conv_impl=conv_impl).apply(
      to_flax(reference), jnp.asarray(images.transpose(0, 2, 3, 1)))
  assert got.shape == (8, 256)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_tllib_lenet_matches_torch_in_training_with_batch_statistics():
  """Training mode: BatchNorm normalises with the batch's statistics and moves its running
  averages by torch's momentum 0.1 (dropout 0 on both sides, so the outputs are deterministic)."""
  reference = _seeded(tllib_torch, 0.0, seed=1)
  _randomise(reference, 1)
  variables = to_flax(reference)
  reference.train()
  images = np.random.default_rng(1).uniform(-1, 1, (16, 1, 28, 28)).astype(np.float32)
  want = reference(torch.from_numpy(images)).detach().numpy()
  module = LeNetFeatures(**{**TLLIB, 'conv_dropout': 0.0, 'dense_dropout': 0.0})
  got, updated = module.apply(variables, jnp.asarray(images.transpose(0, 2, 3, 1)), train=True,
                              mutable=['batch_stats'])
  # Batch statistics over 16 examples, reduced in float32 in another order by each framework:
  # a few of the 4096 features differ by ~1e-5 (the weights of seed 1 give one such).
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=5e-5)
  bn = reference[12]
  np.testing.assert_allclose(updated['batch_stats']['bottleneck_bn']['mean'],
                             bn.running_mean.numpy(), rtol=1e-5, atol=1e-6)
  # torch keeps the unbiased batch variance in running_var; flax the biased one (n / (n - 1)).
  n = images.shape[0]
  flax_var = np.asarray(updated['batch_stats']['bottleneck_bn']['var'])
  old_var = variables['batch_stats']['bottleneck_bn']['var']
  torch_batch_var = (bn.running_var.numpy() - 0.9 * old_var) / 0.1
  np.testing.assert_allclose((flax_var - 0.9 * old_var) / 0.1 * n / (n - 1), torch_batch_var,
                             rtol=1e-4, atol=1e-5)


def test_lenet5_matches_torch():
  reference = _seeded(lenet5_torch, seed=2).eval()
  images = np.random.default_rng(2).uniform(0, 1, (4, 1, 32, 32)).astype(np.float32)
  want = reference(torch.from_numpy(images)).detach().numpy()
  got = LeNetFeatures(**LENET5).apply(to_flax(reference), jnp.asarray(images.transpose(0, 2, 3, 1)))
  assert got.shape == (4, 84)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('conv_impl', ['fused', 'xla'])
def test_same_padded_dann_net_matches_torch(conv_impl):
  """conv_padding=2: tf-dann's 'SAME' 5x5 convolutions (torch's padding=2), 28x28 RGB ->
  7x7x48 = 2352-d features."""
  reference = _seeded(lambda: nn.Sequential(
      nn.Conv2d(3, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(32, 48, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(1)), seed=5).eval()
  images = np.random.default_rng(5).uniform(-0.5, 0.5, (4, 3, 28, 28)).astype(np.float32)
  want = reference(torch.from_numpy(images)).detach().numpy()
  got = LeNetFeatures(conv=(32, 48), conv_padding=2, conv_impl=conv_impl).apply(
      to_flax(reference), jnp.asarray(images.transpose(0, 2, 3, 1)))
  assert got.shape == (4, 2352)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  with pytest.raises(UserError, match='lenet_conv_padding=-1 is negative'):
    build_model(config_lib.model_config('lenet', lenet_conv_padding=-1), 10)
  with pytest.raises(UserError, match="not 'dann_lenet'"):   # It would pad nothing.
    build_model(config_lib.model_config('dann_lenet', lenet_conv_padding=2), 10)


def test_conv_dropout_drops_whole_channels():
  """Dropout2d: each (example, channel) map of the last conv block is all 0 or all x 1/(1-p)."""
  module = LeNetFeatures(conv=(4, 8), conv_dropout=0.5)
  images = jnp.asarray(np.random.default_rng(3).uniform(0.1, 1, (6, 28, 28, 1)), jnp.float32)
  variables = module.init(jax.random.key(0), images)
  kept = module.apply(variables, images).reshape(6, 8, 16)  # (example, channel, 4*4).
  dropped = module.apply(variables, images, train=True,
                         rngs={'dropout': jax.random.key(1)}).reshape(6, 8, 16)
  zero = np.all(np.asarray(dropped) == 0, axis=-1)
  scaled = np.all(np.isclose(np.asarray(dropped), 2 * np.asarray(kept), rtol=1e-6), axis=-1)
  assert np.all(zero | scaled) and 0 < zero.mean() < 1


@pytest.mark.parametrize('l2', [False, True])
def test_bottleneck_dropout_and_its_l2_preserving_scale(l2):
  """TLlib's AFN Block (Linear -> BatchNorm -> ReLU -> Dropout, kept units x 1/sqrt(1-p)
  with `l2`, else x 1/(1-p)): in training each feature is 0 or the undropped one times that
  scale; in inference the dropout is the identity."""
  fields = dict(conv=(4, 8), dense=(16,), bottleneck=32)
  module = LeNetFeatures(**fields, bottleneck_dropout=0.5, bottleneck_dropout_l2=l2)
  plain = LeNetFeatures(**fields)
  images = jnp.asarray(np.random.default_rng(4).uniform(0, 1, (8, 28, 28, 1)), jnp.float32)
  variables = module.init(jax.random.key(0), images)
  (ref, _), (got, _) = (
      m.apply(variables, images, train=True, rngs={'dropout': jax.random.key(2)},
              mutable=['batch_stats']) for m in (plain, module))
  ref, got = np.asarray(ref), np.asarray(got)
  scale = np.sqrt(2.0) if l2 else 2.0
  live = ref > 0
  kept = np.isclose(got, scale * ref, rtol=1e-5) & live
  assert np.all((got == 0) | kept) and 0.3 < kept.sum() / live.sum() < 0.7
  np.testing.assert_array_equal(module.apply(variables, images), plain.apply(variables, images))


def test_dann_paper_net_is_the_family_with_its_fields():
  images = jnp.zeros((1, 28, 28, 1))
  a = DannLeNetFeatures().init(jax.random.key(0), images)
  b = LeNetFeatures(conv=(32, 48)).init(jax.random.key(0), images)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


def test_bottleneck_dropout_without_a_bottleneck_is_refused():
  """A dropout that no layer would apply is an error, not a silent no-op."""
  cfg = config_lib.model_config('lenet', bottleneck_dim=0, bottleneck_dropout=0.5)
  with pytest.raises(UserError, match='bottleneck_dropout=0.5 needs'):
    build_model(cfg, 10)
  cfg.bottleneck_dim = 8
  assert build_model(cfg, 10).backbone.bottleneck_dropout == 0.5
