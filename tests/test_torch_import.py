"""PyTorch state_dict import: torchvision-named ResNet / VGG / DANN LeNet against torch references.

The torch networks are re-built with torchvision's module names (no torchvision needed; the ResNets
and the DANN LeNet are in tests/torch_references.py, the tests' own copies), given random
weights and BatchNorm running statistics, saved as .pth and .safetensors, imported, and run side
by side in eval mode.
"""

import os
import pathlib

import jax
import numpy as np
import pytest
from flax import traverse_util

torch = pytest.importorskip('torch', reason='torch is not installed (pip install torch, CPU)')
from torch import nn  # noqa: E402

from torch_references import Dann, resnet  # noqa: E402
from transfer_jax import config_lib  # noqa: E402
from transfer_jax.errors import UserError  # noqa: E402
from transfer_jax.models import BACKBONES, MLP, DannLeNetFeatures, TransferModel  # noqa: E402
from transfer_jax.models.vgg import VGGFeatures, adaptive_avg_pool  # noqa: E402
from transfer_jax.transfer import torch_import  # noqa: E402

# --- torchvision-identical reference networks (module names as in torchvision.models) ---

class VGG16(nn.Module):

  def __init__(self, num_classes=10):
    super().__init__()
    layers, in_channels = [], 3
    for v in VGGFeatures.layers:
      if v == 'M':
        layers.append(nn.MaxPool2d(2, 2))
      else:
        layers += [nn.Conv2d(in_channels, v, 3, padding=1), nn.ReLU(inplace=True)]
        in_channels = v
    self.features = nn.Sequential(*layers)
    self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    self.classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, num_classes))

  def trunk(self, x):
    return self.classifier[:6](torch.flatten(self.avgpool(self.features(x)), 1))

  def forward(self, x):
    return self.classifier[6](self.trunk(x))


def _randomize(model, seed=0):
  """He-normal weights, small random biases and non-trivial BatchNorm affine and running stats."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.Conv2d | nn.Linear):
        fan_in = module.weight[0].numel()
        module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2 / fan_in) ** .5)
        if module.bias is not None:
          module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
      elif isinstance(module, nn.BatchNorm2d):
        n = module.num_features
        module.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.5)
        module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
        module.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
        module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
        module.num_batches_tracked.fill_(7)
  return model.eval()


def _save(model, tmp_path, fmt):
  path = os.path.join(tmp_path, f'weights.{fmt}')
  if fmt == 'pth':
    torch.save(model.state_dict(), path)
  else:
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
  return path


def _images(batch, size, channels=3, seed=0):
  return np.random.default_rng(seed).normal(size=(batch, channels, size, size)).astype(np.float32)


def _nhwc(images):
  return np.transpose(images, (0, 2, 3, 1))


def _backbone(arch):
  return BACKBONES[arch](config_lib.model_config(arch))


def _variables(params, batch_stats):
  return {'params': params, **({'batch_stats': batch_stats} if batch_stats else {})}


def _assert_close(flax_value, torch_value, what):
  torch_value = torch_value.detach().numpy()
  assert np.std(torch_value) > 0.05, f'{what}: reference output is near-constant, test is vacuous'
  np.testing.assert_allclose(np.asarray(flax_value), torch_value, rtol=1e-4, atol=1e-4,
                             err_msg=f'{what}: Flax and torch disagree')


@pytest.mark.parametrize('arch,fmt,size', [
    pytest.param('resnet18', 'pth', 64, marks=pytest.mark.slow),
    ('resnet18_cifar', 'safetensors', 32),
    pytest.param('resnet50', 'safetensors', 64, marks=pytest.mark.slow),
    pytest.param('resnet50_cifar', 'pth', 32, marks=pytest.mark.slow)])
def test_resnet_matches_torch(tmp_path, arch, fmt, size):
  torch_model = _randomize(resnet(arch))
  path = _save(torch_model, tmp_path, fmt)
  params, batch_stats = torch_import.torch_to_flax(
      torch_import.load_torch_state_dict(path), arch, with_head=True)
  model = TransferModel(_backbone(arch), MLP(hidden=(), out_dim=10))
  images = _images(2, size)
  # The flat form that transfer.pretrained merges names exactly the model's leaves.
  abstract = jax.eval_shape(model.init, jax.random.key(0), _nhwc(images))
  assert {name: value.shape for name, value in torch_import.read_flat(path, arch).items()} == {
      f'{collection}/{name}': leaf.shape for collection, tree in abstract.items()
      for name, leaf in traverse_util.flatten_dict(tree, sep='/').items()}
  outputs = jax.jit(model.apply)(_variables(params, batch_stats), _nhwc(images))
  with torch.no_grad():
    _assert_close(outputs['features'], torch_model.features(torch.from_numpy(images)), arch)
    _assert_close(outputs['logits'], torch_model(torch.from_numpy(images)), f'{arch} logits')


@pytest.mark.slow
def test_vgg16_matches_torch(tmp_path):
  torch_model = _randomize(VGG16())
  state_dict = torch_import.load_torch_state_dict(_save(torch_model, tmp_path, 'pth'))
  params, _ = torch_import.torch_to_flax(state_dict, 'vgg16', with_head=True)
  del state_dict
  model = TransferModel(_backbone('vgg16'), MLP(hidden=(), out_dim=10))
  # 224 is torchvision's size (7x7 map, identity pooling); 112 gives a 3x3 map that the adaptive
  # pooling spreads over uneven, overlapping 7x7 bins, and exercises the CHW flatten order.
  images = _images(1, 112)
  outputs = jax.jit(model.apply)({'params': params}, _nhwc(images))
  with torch.no_grad():
    _assert_close(outputs['features'], torch_model.trunk(torch.from_numpy(images)), 'vgg16')
    _assert_close(outputs['logits'], torch_model(torch.from_numpy(images)), 'vgg16 logits')


@pytest.mark.parametrize('size', [(7, 7), (14, 14), (3, 5), (1, 1), (10, 9), (16, 30)])
def test_adaptive_avg_pool_matches_torch(size):
  x = np.random.default_rng(0).normal(size=(2, 4, *size)).astype(np.float32)
  expected = nn.functional.adaptive_avg_pool2d(torch.from_numpy(x), (7, 7)).numpy()
  np.testing.assert_allclose(np.asarray(adaptive_avg_pool(_nhwc(x), (7, 7))), _nhwc(expected),
                             rtol=1e-6, atol=1e-6)


def test_vgg_rejects_too_small_images():
  with pytest.raises(UserError, match='at least 32x32'):
    VGGFeatures().init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))


def test_dann_lenet_matches_reference(tmp_path):
  torch_model = _randomize(Dann())
  state_dict = torch_import.load_torch_state_dict(_save(torch_model, tmp_path, 'safetensors'))
  params, batch_stats = torch_import.torch_to_flax(state_dict, 'dann_lenet', with_head=True)
  assert batch_stats == {}
  model = TransferModel(DannLeNetFeatures(), MLP(hidden=(100, 100), out_dim=10),
                        MLP(hidden=(100,), out_dim=1))
  images = _images(4, 28, channels=1)
  outputs = model.apply({'params': params}, _nhwc(images))
  domain_logits = model.apply({'params': params}, outputs['features'],
                              method=TransferModel.discriminate)
  with torch.no_grad():
    logits, torch_domain_logits = torch_model(torch.from_numpy(images), 1.0)
    _assert_close(outputs['logits'], logits, 'dann label head')
    _assert_close(domain_logits, torch_domain_logits, 'dann domain head')
  back = torch_import.flax_to_torch(params, batch_stats, 'dann_lenet')
  assert sorted(back) == sorted(state_dict)  # label_head.{0,2,4}, domain_head.{0,2}.
  # Without the heads only the backbone is imported (the head tensors are skipped).
  params, _ = torch_import.torch_to_flax(state_dict, 'dann_lenet')
  assert sorted(params) == ['backbone']


@pytest.fixture(scope='module')
def resnet18_state_dict():
  model = _randomize(resnet('resnet18'))
  return model, {k: v.numpy() for k, v in model.state_dict().items()}


def test_flax_to_torch_round_trip(resnet18_state_dict):
  torch_model, state_dict = resnet18_state_dict
  params, batch_stats = torch_import.torch_to_flax(state_dict, 'resnet18', with_head=True)
  back = torch_import.flax_to_torch(params, batch_stats, 'resnet18')
  assert sorted(back) == sorted(state_dict)
  for key, value in state_dict.items():
    if not key.endswith('num_batches_tracked'):
      np.testing.assert_array_equal(back[key], value, err_msg=key)
  torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


def test_mismatched_state_dict_names_the_paths(resnet18_state_dict):
  _, state_dict = resnet18_state_dict
  bad = dict(state_dict)
  del bad['layer1.0.bn1.running_var']
  bad['layer2.0.conv1.weight'] = np.zeros((128, 64, 5, 5), np.float32)
  bad['layer9.0.conv1.weight'] = np.zeros((8, 8, 3, 3), np.float32)
  del bad['fc.weight']
  with pytest.raises(UserError) as error:
    torch_import.torch_to_flax(bad, 'resnet18', with_head=True)
  message = str(error.value)
  assert '\n' not in message
  for expected in ('missing layer1.0.bn1.running_var', 'layer2.0.conv1.weight has shape',
                   'unexpected layer9.0.conv1.weight', 'missing fc.weight'):
    assert expected in message, message
  with pytest.raises(UserError, match='no PyTorch mapping'):
    torch_import.torch_to_flax(state_dict, 'resnet34')


def test_loading_something_else_fails_clearly(tmp_path, resnet18_state_dict):
  cases = {
      'list.pth': lambda p: torch.save([torch.zeros(2)], p),
      'mixed.pth': lambda p: torch.save({'weight': torch.zeros(2), 'epoch': 3}, p),
      'module.pth': lambda p: torch.save(nn.Linear(2, 2), p),  # Refused by weights_only.
      'text.pt': lambda p: pathlib.Path(p).write_text('not a checkpoint'),
      'text.safetensors': lambda p: pathlib.Path(p).write_text('not a checkpoint'),
      'weights.npz': lambda p: np.savez(p, w=np.zeros(2)),
  }
  for name, write in cases.items():
    path = os.path.join(tmp_path, name)
    write(path)
    with pytest.raises(UserError) as error:
      torch_import.load_torch_state_dict(path)
    assert '\n' not in str(error.value) and path in str(error.value), (name, str(error.value))
  with pytest.raises(UserError, match='no PyTorch weights file'):
    torch_import.load_torch_state_dict(os.path.join(tmp_path, 'missing.pth'))
  # Checkpoints that wrap the state_dict, from DataParallel, are unwrapped.
  _, state_dict = resnet18_state_dict
  path = os.path.join(tmp_path, 'wrapped.pth')
  torch.save({'state_dict': {f'module.{k}': torch.from_numpy(v) for k, v in state_dict.items()},
              'epoch': 3}, path)
  assert sorted(torch_import.load_torch_state_dict(path)) == sorted(state_dict)


def test_resnet18_batch_stats_update_only_in_train_mode():
  torch_model = _randomize(resnet('resnet18_cifar'))
  state_dict = {k: v.numpy().copy() for k, v in torch_model.state_dict().items()}
  params, batch_stats = torch_import.torch_to_flax(state_dict, 'resnet18_cifar')
  backbone = _backbone('resnet18_cifar')
  variables = _variables(params['backbone'], batch_stats['backbone'])
  images = _images(4, 16)

  def apply(variables, train):
    return backbone.apply(variables, _nhwc(images), train=train, mutable=['batch_stats'])

  apply = jax.jit(apply, static_argnums=1)
  _, eval_state = apply(variables, False)
  jax.tree.map(np.testing.assert_array_equal, eval_state['batch_stats'], variables['batch_stats'])

  features, train_state = apply(variables, True)
  torch_model.train()
  with torch.no_grad():  # Train-mode BN normalises with batch statistics in both frameworks.
    _assert_close(features, torch_model.features(torch.from_numpy(images)), 'train mode')
  new_stats = train_state['batch_stats']
  flat_stats = traverse_util.flatten_dict(new_stats, sep='/')
  # Running means follow torch's momentum 0.1; torch's running_var uses the unbiased batch
  # variance, Flax's the biased one, so bn1's variance is compared after undoing that factor.
  for key, torch_value in torch_model.state_dict().items():
    if key.endswith('running_mean'):
      path = torch_import._convert(key, torch_value.numpy())[1]
      np.testing.assert_allclose(flat_stats[path], torch_value.numpy(), rtol=1e-4, atol=1e-5,
                                 err_msg=key)
  n = 4 * 16 * 16
  old_var = state_dict['bn1.running_var']
  torch_var = torch_model.bn1.running_var.numpy()
  np.testing.assert_allclose(new_stats['bn1']['var'] - 0.9 * old_var,
                             (torch_var - 0.9 * old_var) * (n - 1) / n, rtol=1e-4, atol=1e-6)
  assert not np.allclose(new_stats['bn1']['mean'], state_dict['bn1.running_mean'])


# --- any state dict into any model: the generic names, rules in the config ---

class LeNet5(nn.Module):
  """LeNet-5 as a user writes it in torch: conv 1->6->16 @5x5, dense 400->120->84->10 on 32x32
  images (ReLU and max-pool); optionally a BatchNorm1d bottleneck before the last layer."""

  def __init__(self, bottleneck=0):
    super().__init__()
    self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
    self.fc1, self.fc2 = nn.Linear(400, 120), nn.Linear(120, 84)
    self.bottleneck = (nn.Sequential(nn.Linear(84, bottleneck), nn.BatchNorm1d(bottleneck))
                       if bottleneck else None)
    self.fc3 = nn.Linear(bottleneck or 84, 10)

  def forward(self, x):
    x = nn.functional.max_pool2d(nn.functional.relu(self.conv1(x)), 2)
    x = nn.functional.max_pool2d(nn.functional.relu(self.conv2(x)), 2)
    x = nn.functional.relu(self.fc2(nn.functional.relu(self.fc1(x.flatten(1)))))
    if self.bottleneck is not None:
      x = nn.functional.relu(self.bottleneck(x))
    return self.fc3(x)


def _randomize_bn1d(model, seed=1):
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.BatchNorm1d):
        n = module.num_features
        module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
        module.bias.copy_(torch.randn(n, generator=gen) * 0.1)
        module.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
        module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
  return model


# The name map, as a config holds it: torch's names (as `convert` reads them) -> the model's.
LENET5_RULES = (r'(params|batch_stats)/(conv\d|fc[12])/(.*)=>\1/backbone/\2/\3',
                r'(params|batch_stats)/bottleneck_0/(.*)=>\1/backbone/bottleneck/\2',
                r'(params|batch_stats)/bottleneck_1/(.*)=>\1/backbone/bottleneck_bn/\2',
                r'params/fc3/(.*)=>params/classifier/out/\1')


@pytest.mark.parametrize('bottleneck', [0, 32])
def test_a_hand_built_torch_lenet5_imports_through_the_config(tmp_path, bottleneck):
  """configs/digits.py with the LeNet family's LeNet-5 fields and init_from.rename rules: the
  loader merges the torch file into the model, whose logits equal torch's to 1e-5."""
  from conftest import tiny_digits
  from transfer_jax.models import build_model
  from transfer_jax.transfer import pretrained
  torch_model = _randomize_bn1d(_randomize(LeNet5(bottleneck)))
  path = _save(torch_model, tmp_path, 'pth')
  config = tiny_digits(**{'model.backbone': 'lenet', 'model.lenet_conv': '(6, 16)',
                          'model.lenet_dense': '(120, 84)', 'model.bottleneck_dim': bottleneck,
                          'model.classifier_hidden': '()',
                          'data.image_size': 32, 'init_from.path': path,
                          'init_from.rename': repr(LENET5_RULES)})
  model = build_model(config.model, num_classes=10)
  images = _images(4, 32, channels=1)
  abstract = jax.eval_shape(model.init, jax.random.key(0), _nhwc(images))
  loaded = pretrained.load_pretrained(config.init_from, abstract)
  assert {status for _, status, _ in loaded.table} == {'loaded'}, loaded.table
  variables = pretrained.merge(model.init(jax.random.key(1), _nhwc(images)), loaded.values)
  logits = model.apply(variables, _nhwc(images))['logits']
  with torch.no_grad():
    expected = torch_model(torch.from_numpy(images)).numpy()
  assert np.std(expected) > 0.05
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-5)

  # Without the rules the loader names what does not fit, in one line, after the rename step.
  config.unlock()
  config.init_from.rename = ()
  with pytest.raises(UserError) as error:
    pretrained.load_pretrained(config.init_from, abstract)
  message = str(error.value)
  assert '\n' not in message and 'params/backbone/conv1/bias missing' in message, message
  assert 'init_from.rename' in message


def test_flatten_reorders_the_first_dense_layer_after_a_conv_for_nhwc_models():
  """torch flattens NCHW maps as (C, H, W); a Flax model that reshapes NHWC maps reads
  (H, W, C): `flatten` permutes the dense layer's rows so both compute the same function."""
  import flax.linen as flax_nn

  class ConvDense(flax_nn.Module):
    @flax_nn.compact
    def __call__(self, x):
      x = flax_nn.relu(flax_nn.Conv(4, (3, 3), padding='VALID', name='conv')(x))
      return flax_nn.Dense(5, name='fc')(x.reshape(x.shape[0], -1))

  torch_model = _randomize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
                                         nn.Linear(4 * 6 * 6, 5)))
  state_dict = {k: v.numpy() for k, v in torch_model.state_dict().items()}
  rules = (r'params/0/(.*)=>params/conv/\1', r'params/3/(.*)=>params/fc/\1')
  images = _images(2, 8)
  with torch.no_grad():
    expected = torch_model(torch.from_numpy(images)).numpy()
  values, sources = torch_import.convert(state_dict, rules, flatten={'3': (4, 6, 6)})
  assert sources['params/fc/kernel'] == '3.weight'
  params = traverse_util.unflatten_dict({k[len('params/'):]: v for k, v in values.items()},
                                        sep='/')
  np.testing.assert_allclose(ConvDense().apply({'params': params}, _nhwc(images)), expected,
                             rtol=1e-5, atol=1e-5)
  unpermuted, _ = torch_import.convert(state_dict, rules)
  params['fc']['kernel'] = unpermuted['params/fc/kernel']
  assert not np.allclose(ConvDense().apply({'params': params}, _nhwc(images)), expected,
                         atol=1e-3)
  with pytest.raises(UserError, match='reads 144 inputs, not the 4x5x5'):
    torch_import.convert(state_dict, rules, flatten={'3': (4, 5, 5)})
  with pytest.raises(UserError, match="flatten names \\['fc9'\\]"):
    torch_import.convert(state_dict, rules, flatten={'fc9': (4, 6, 6)})


def test_corrupt_files_and_unsafe_pickles_are_one_line_errors(tmp_path):
  import pickle

  class Payload:
    def __reduce__(self):
      return (os.system, ('echo unpickled',))

  good = os.path.join(tmp_path, 'good.pth')
  torch.save({'weight': torch.zeros(3)}, good)
  data = pathlib.Path(good).read_bytes()
  cases = {
      'truncated.pth': (data[:len(data) // 2], 'not a readable state dict'),
      'random.pth': (bytes(range(256)) * 4, 'not a readable state dict'),
      'plain_pickle.pth': (pickle.dumps({'a': 1}), 'not a readable state dict'),
      'payload.pth': (pickle.dumps(Payload(), protocol=2), 'refused to unpickle posix.system'),
  }
  module = os.path.join(tmp_path, 'module.pth')
  torch.save(nn.Linear(2, 2), module)
  for name, (content, expected) in cases.items():
    path = os.path.join(tmp_path, name)
    pathlib.Path(path).write_bytes(content)
    cases[name] = (path, expected)
  cases['module.pth'] = (module, 'refused to unpickle torch.nn.modules.linear.Linear')
  for name, (path, expected) in cases.items():
    with pytest.raises(UserError) as error:
      torch_import.load_torch_state_dict(path)
    message = str(error.value)
    assert expected in message and path in message, (name, message)
    assert '\n' not in message and 'weights_only=False' not in message, (name, message)
