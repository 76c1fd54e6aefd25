"""The DANN LeNet's conv implementations: same parameters, outputs and gradients; torch's numbers.

'fused' (custom VJP, the default) is checked against 'xla' and against the textbook network built
from nn.Conv + nn.max_pool, on random inputs and on images with exact ties in the max-pools; and,
with torch installed, against the DANN paper's network written in torch (tests/torch_references.py).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from transfer_jax.errors import UserError
from transfer_jax.models import MLP, DannLeNetFeatures, TransferModel
from transfer_jax.objectives.gradient_reversal import gradient_reversal

TOL = 1e-5


class TextbookLeNet(nn.Module):
  """The network as first written: nn.Conv + nn.max_pool, differentiated by JAX."""

  @nn.compact
  def __call__(self, x):
    x = nn.max_pool(nn.relu(nn.Conv(32, (5, 5), padding='VALID', name='conv1')(x)), (2, 2), (2, 2))
    x = nn.max_pool(nn.relu(nn.Conv(48, (5, 5), padding='VALID', name='conv2')(x)), (2, 2), (2, 2))
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def _random_params(params, seed):
  """Replaces every leaf (biases too) with N(0, 1/fan_in) values, so no ReLU sits at zero."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  fan_in = lambda x: int(np.prod(x.shape[:-1])) if x.ndim > 1 else 25
  return treedef.unflatten([jax.random.normal(k, x.shape) / np.sqrt(fan_in(x))
                            for k, x in zip(keys, leaves, strict=True)])


@jax.jit
def _outputs_and_grads(params, images, projection):
  """Features of each formulation and the gradients (params, images) of a fixed projection."""
  results = {}
  for name, module in (('textbook', TextbookLeNet()), ('xla', DannLeNetFeatures('xla')),
                       ('fused', DannLeNetFeatures('fused'))):
    loss = lambda p, x, module=module: jnp.sum(module.apply({'params': p}, x) * projection)
    features = module.apply({'params': params}, images)
    results[name] = (features,) + jax.grad(loss, argnums=(0, 1))(params, images)
  return results


def _assert_same(results, what):
  reference = results['textbook']
  for name in ('xla', 'fused'):
    for got, want in zip(jax.tree.leaves(results[name]), jax.tree.leaves(reference), strict=True):
      np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL * float(jnp.max(jnp.abs(want))),
                                 err_msg=f'{name} vs textbook ({what})')


@pytest.fixture(scope='module')
def lenet_params():
  images = jnp.zeros((1, 28, 28, 1))
  return jax.tree.map(np.asarray, TextbookLeNet().init(jax.random.key(0), images)['params'])


def test_parameters_are_nn_conv_parameters(lenet_params):
  """Same names, shapes and initial values as nn.Conv's: checkpoints stay interchangeable."""
  images = jnp.zeros((1, 28, 28, 1))
  for conv_impl in ('xla', 'fused'):
    params = DannLeNetFeatures(conv_impl).init(jax.random.key(0), images)['params']
    assert jax.tree.structure(params) == jax.tree.structure(lenet_params)
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(lenet_params), strict=True):
      np.testing.assert_array_equal(got, want)
  assert lenet_params['conv1']['kernel'].shape == (5, 5, 1, 32)  # HWIO.
  assert lenet_params['conv2']['kernel'].shape == (5, 5, 32, 48)


def test_fused_matches_textbook_on_random_inputs(lenet_params):
  params = _random_params(lenet_params, seed=1)
  images = jax.random.uniform(jax.random.key(2), (8, 28, 28, 1))
  projection = jax.random.normal(jax.random.key(3), (8, 768))
  _assert_same(_outputs_and_grads(params, images, projection), 'random images')


def test_fused_matches_textbook_with_tied_maxima(lenet_params):
  """Blank borders give equal conv outputs in a pool window; the first one takes the gradient.

  Tied outputs come from identical patches, so the kernel gradients cannot tell who took it; the
  image gradients can (splitting ties, as jnp.max's gradient does, fails here).
  """
  params = _random_params(lenet_params, seed=4)
  params['conv1']['bias'] = jnp.abs(params['conv1']['bias'])  # ReLU passes the blank areas.
  params['conv2']['bias'] = jnp.abs(params['conv2']['bias'])
  digits = jax.random.uniform(jax.random.key(5), (8, 12, 12, 1))
  images = jnp.zeros((8, 28, 28, 1)).at[:, 8:20, 8:20].set(digits)
  projection = jax.random.normal(jax.random.key(6), (8, 768))
  _assert_same(_outputs_and_grads(params, images, projection), 'images with blank borders')


@pytest.mark.parametrize('size', [29, 30])
def test_fused_matches_textbook_on_odd_maps(lenet_params, size):
  """Odd conv outputs (29 -> 25, or 30 -> 26 -> 13 -> 9): the pools drop the last row, column."""
  params = _random_params(lenet_params, seed=7)
  images = jax.random.uniform(jax.random.key(8), (4, size, size, 1))
  projection = jax.random.normal(jax.random.key(9), (4, 768))
  _assert_same(_outputs_and_grads(params, images, projection), f'{size}x{size} images')


def test_unknown_conv_impl_is_a_user_error():
  with pytest.raises(UserError, match='conv_impl'):
    DannLeNetFeatures('cudnn').init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))


def _flax_params_from_torch(torch_model):
  """OIHW conv weights -> HWIO kernels, (out, in) linear weights -> (in, out) kernels."""
  state = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
  conv = lambda name: {'kernel': state[f'{name}.weight'].transpose(2, 3, 1, 0),
                       'bias': state[f'{name}.bias']}
  dense = lambda name: {'kernel': state[f'{name}.weight'].T, 'bias': state[f'{name}.bias']}
  return {'backbone': {'conv1': conv('conv1'), 'conv2': conv('conv2')},
          'classifier': {'dense0': dense('label_head.0'), 'dense1': dense('label_head.2'),
                         'out': dense('label_head.4')},
          'domain_discriminator': {'dense0': dense('domain_head.0'),
                                   'out': dense('domain_head.2')}}


def test_matches_the_torch_reference_logits_and_gradients():
  torch = pytest.importorskip('torch', reason='torch is not installed (pip install torch, CPU)')
  from torch_references import Dann
  torch.manual_seed(0)
  torch_model = Dann()
  batch = 8
  rng = np.random.default_rng(0)
  images = rng.random((2 * batch, 1, 28, 28), dtype=np.float32)
  labels = rng.integers(0, 10, batch)
  domain = np.concatenate([np.zeros(batch), np.ones(batch)]).astype(np.float32)

  logits, domain_logits = torch_model(torch.from_numpy(images), 1.0)
  loss = (torch.nn.functional.cross_entropy(logits[:batch], torch.from_numpy(labels)) +
          torch.nn.functional.binary_cross_entropy_with_logits(domain_logits,
                                                               torch.from_numpy(domain)))
  loss.backward()

  model = TransferModel(DannLeNetFeatures(), MLP(hidden=(100, 100), out_dim=10),
                        MLP(hidden=(100,), out_dim=1))
  params = _flax_params_from_torch(torch_model)

  def dann_loss(params):
    outputs = model.apply({'params': params}, jnp.asarray(images.transpose(0, 2, 3, 1)))
    domain_out = model.apply({'params': params}, gradient_reversal(outputs['features'], 1.0),
                             method=TransferModel.discriminate)
    task = optax.softmax_cross_entropy_with_integer_labels(outputs['logits'][:batch], labels)
    adversarial = optax.sigmoid_binary_cross_entropy(domain_out, domain)
    return jnp.mean(task) + jnp.mean(adversarial), (outputs['logits'], domain_out)

  (jax_loss, (jax_logits, jax_domain)), grads = jax.value_and_grad(dann_loss, has_aux=True)(params)
  np.testing.assert_allclose(jax_logits, logits.detach().numpy(), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(jax_domain, domain_logits.detach().numpy(), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(jax_loss, loss.item(), rtol=1e-5)
  for name in ('conv1', 'conv2'):  # The reversed domain gradient reaches the convolutions.
    want = getattr(torch_model, name).weight.grad.numpy().transpose(2, 3, 1, 0)
    np.testing.assert_allclose(grads['backbone'][name]['kernel'], want, rtol=1e-4,
                               atol=1e-4 * np.abs(want).max(), err_msg=name)


def test_head_init_std_draws_the_afn_initialisation():
  """model.head_init_std = 0.01 (TLlib's AFN ImageClassifier): bottleneck and classifier
  kernels and biases N(0, 0.01), the bottleneck BatchNorm scale N(1, 0.01); 0 keeps flax's
  defaults (LeCun normal kernels, zero biases, unit scales). A negative std is refused."""
  from transfer_jax import config_lib
  from transfer_jax.models import build_model
  images = jnp.zeros((2, 28, 28, 1))
  params = {}
  for std in (0.0, 0.01):
    model_config = config_lib.model_config(
        'lenet', lenet_conv=(4, 8), lenet_dense=(500,), bottleneck_dim=1000, head_init_std=std)
    model = build_model(model_config, 10)
    params[std] = model.init(jax.random.key(0), images)['params']
  afn, default = params[0.01], params[0.0]
  for leaf in (afn['backbone']['bottleneck']['kernel'], afn['backbone']['bottleneck']['bias'],
               afn['classifier']['out']['kernel']):   # 1000 to 500k draws each.
    assert abs(float(jnp.mean(leaf))) < 2e-3 and 0.009 < float(jnp.std(leaf)) < 0.011
  bias = np.asarray(afn['classifier']['out']['bias'])  # 10 draws.
  assert np.all(bias != 0) and np.all(np.abs(bias) < 0.05)
  scale = afn['backbone']['bottleneck_bn']['scale']
  assert abs(float(jnp.mean(scale)) - 1) < 2e-3 and 0.009 < float(jnp.std(scale)) < 0.011
  # The layers it does not name keep the defaults: the same draws as without it.
  np.testing.assert_array_equal(afn['backbone']['fc1']['kernel'],
                                default['backbone']['fc1']['kernel'])
  assert float(jnp.std(default['backbone']['bottleneck']['kernel'])) > 0.04   # LeCun: 1/sqrt(500).
  assert not np.any(default['classifier']['out']['bias'])
  np.testing.assert_array_equal(default['backbone']['bottleneck_bn']['scale'], 1.0)
  with pytest.raises(UserError, match='head_init_std=-0.1 is negative'):
    build_model(config_lib.model_config('lenet', head_init_std=-0.1), 10)
