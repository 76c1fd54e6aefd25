"""PyTorch state_dicts to Flax variables (and back) for the torchvision-named backbones.

`load_torch_state_dict` reads a `.safetensors` file, or a `.pth`/`.pt`/`.bin` file with
`torch.load(weights_only=True)` (never an unrestricted unpickle). `torch_to_flax` renames and
re-lays out the tensors for one architecture and checks them against the Flax model's shapes.

Names: every `.N` (an `nn.Sequential` index) is joined to the name before it with `_`
(`layer1.0.downsample.1` -> `layer1_0/downsample_1`, `features.28` -> `features_28`). Leaves:

  conv weight (O,I,H,W)          -> kernel (H,W,I,O)          params
  linear weight (out,in)         -> kernel (in,out)           params
  BatchNorm weight / bias        -> scale / bias              params
  running_mean / running_var     -> mean / var                batch_stats
  num_batches_tracked            -> skipped

Heads: torchvision's `fc` (ResNet), `classifier.6` (VGG) and the DANN reference's `label_head` /
`domain_head` map to the TransferModel's `classifier` / `domain_discriminator` MLPs when
`with_head=True` (one Linear -> `out`; a Linear-ReLU Sequential -> `dense0`, `dense1`, ..., `out`)
and are skipped otherwise. VGG needs no row permutation of `classifier.0`: `VGGFeatures` flattens
the pooled map in torch's (C, H, W) order.
"""

import os
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import traverse_util

from transfer_jax.errors import UserError
from transfer_jax.models import BACKBONES, MLP


class TorchArch(NamedTuple):
  image_size: tuple[int, int]  # Default image size for deriving the expected Flax shapes.
  first_conv: str              # The torch key whose input channels are the images' channels.
  heads: dict[str, str]        # TransferModel head attribute -> torch prefix.
  pooled: bool = True          # Feature size independent of the image size (global pooling).


# Keys are also BACKBONES keys.
ARCHS = {
    'resnet18': TorchArch((224, 224), 'conv1.weight', {'classifier': 'fc'}),
    'resnet50': TorchArch((224, 224), 'conv1.weight', {'classifier': 'fc'}),
    'resnet18_cifar': TorchArch((32, 32), 'conv1.weight', {'classifier': 'fc'}),
    'resnet50_cifar': TorchArch((32, 32), 'conv1.weight', {'classifier': 'fc'}),
    'vgg16': TorchArch((224, 224), 'features.0.weight', {'classifier': 'classifier.6'}),
    # The DANN reference network of /work/shared/bench/torch_dann_reference.py.
    'dann_lenet': TorchArch((28, 28), 'conv1.weight', {'classifier': 'label_head',
                                                       'domain_discriminator': 'domain_head'},
                            pooled=False),
}
_MAX_LISTED = 10
_TORCH_SUFFIXES = ('.pth', '.pt', '.bin', '.ckpt')


def load_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """Name -> numpy array from a `.safetensors` or a weights-only `.pth`/`.pt` file."""
  if not os.path.isfile(path):
    raise UserError(f'no PyTorch weights file at {path}')
  if path.endswith('.safetensors'):
    try:
      from safetensors.numpy import load_file
    except ImportError:
      raise UserError(f'reading {path} needs safetensors: pip install safetensors') from None
    try:
      state_dict = load_file(path)
    except Exception as e:  # Any parse failure means a bad file.
      raise UserError(f'{path} is not a readable safetensors file: {_first_line(e)}') from None
  elif path.endswith(_TORCH_SUFFIXES):
    try:
      import torch
    except ImportError:
      raise UserError(f'reading {path} needs torch: pip install torch (CPU build) or '
                      'convert it to .safetensors') from None
    try:
      obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # weights_only refuses anything but tensors and plain containers.
      raise UserError(f'{path} is not a weights-only PyTorch state_dict '
                      f'({type(e).__name__}: {_first_line(e)})') from None
    state_dict = _tensors_to_numpy(_unwrap(obj, path, torch.Tensor))
  else:
    raise UserError(f'{path}: unknown weights format; expected .safetensors or one of '
                    f'{", ".join(_TORCH_SUFFIXES)}')
  if not state_dict:
    raise UserError(f'{path} holds no tensors')
  # Models saved from DataParallel / DistributedDataParallel prefix every key with 'module.'.
  if all(k.startswith('module.') for k in state_dict):
    state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
  return state_dict


def torch_to_flax(state_dict: Mapping[str, Any], arch: str, *, with_head: bool = False,
                  input_shape: tuple[int, int, int] | None = None) -> tuple[dict, dict]:
  """(params, batch_stats) in TransferModel naming ('backbone', 'classifier', ...) for `arch`.

  `with_head=True` maps the classifier head (required) and any auxiliary head the state_dict has
  (DANN's domain head); otherwise head tensors are skipped. Every converted tensor is checked
  against the shapes of the Flax model built for images of `input_shape` (height, width,
  channels; default: the arch's usual size, channels read from the first conv; a head's input
  width is checked only for pooled backbones or an explicit `input_shape`). Missing, unexpected
  and mis-shaped tensors raise one UserError listing them.
  """
  image_size, first_conv, heads, pooled = _arch(arch)
  check_head_input = pooled or input_shape is not None
  if input_shape is None:
    conv_ok = first_conv in state_dict and np.ndim(state_dict[first_conv]) == 4
    channels = np.shape(state_dict[first_conv])[1] if conv_ok else 3
    input_shape = (*image_size, channels)

  backbone = BACKBONES[arch](ml_collections.ConfigDict())
  features, variables = jax.eval_shape(
      backbone.init_with_output, jax.random.key(0), jnp.zeros((1, *input_shape), jnp.float32))
  expected = {(col, 'backbone/' + path): leaf.shape for col, tree in variables.items()
              for path, leaf in traverse_util.flatten_dict(tree, sep='/').items()}
  converted = {}  # (collection, flax path) -> (torch key, array)
  head_keys = {prefix: [] for prefix in heads.values()}
  for key, value in state_dict.items():
    prefix = next((p for p in heads.values() if key.startswith(p + '.')), None)
    if prefix is not None:
      head_keys[prefix].append(key)
    elif not key.endswith('num_batches_tracked'):
      collection, path, array = _convert(key, _float32(value))
      converted[(collection, 'backbone/' + path)] = (key, array)

  torch_names = {}  # Flax path -> torch key, for head tensors that are missing.
  if with_head:
    for attr, prefix in heads.items():
      if attr != 'classifier' and not head_keys[prefix]:
        continue
      head_expected, head_names = _convert_head(
          state_dict, head_keys[prefix], attr, prefix,
          features.shape[-1] if check_head_input else None, converted)
      expected.update(head_expected)
      torch_names.update(head_names)
  elif any(head_keys.values()):
    logging.info('torch_to_flax(%s): skipped the head tensors under %s', arch,
                 [p for p, keys in head_keys.items() if keys])
  _check(expected, converted, torch_names, arch)
  params, batch_stats = {}, {}
  for (collection, path), (_, array) in converted.items():
    (params if collection == 'params' else batch_stats)[path] = array
  return (traverse_util.unflatten_dict(params, sep='/'),
          traverse_util.unflatten_dict(batch_stats, sep='/'))


def flax_to_torch(params: Mapping[str, Any], batch_stats: Mapping[str, Any],
                  arch: str) -> dict[str, np.ndarray]:
  """The inverse of `torch_to_flax`: a state_dict that torch's `load_state_dict` accepts."""
  heads = _arch(arch).heads
  state_dict = {}
  for tree, collection in ((params, 'params'), (batch_stats, 'batch_stats')):
    for path, value in traverse_util.flatten_dict(dict(tree), sep='/').items():
      attr, *modules, leaf = path.split('/')
      if attr == 'backbone':
        module = _torch_module(modules)
      elif attr in heads:
        layers = sorted(traverse_util.flatten_dict(dict(tree[attr]), sep='/'))
        num_dense = len({p.split('/')[0] for p in layers})
        (name,) = modules
        index = num_dense - 1 if name == 'out' else int(name[len('dense'):])
        # A single Linear is the head itself; several sat in a Linear-ReLU Sequential.
        module = heads[attr] if num_dense == 1 else f'{heads[attr]}.{2 * index}'
      else:
        raise UserError(f'flax_to_torch({arch}): no torch name for {path}')
      value = np.asarray(value)
      if leaf == 'kernel':  # HWIO -> OIHW, (in, out) -> (out, in).
        value = np.ascontiguousarray(np.transpose(value, (3, 2, 0, 1)) if value.ndim == 4
                                     else value.T)
      state_dict[f'{module}.{_TORCH_LEAF.get((collection, leaf), leaf)}'] = value
      if collection == 'batch_stats' and leaf == 'mean':
        state_dict[f'{module}.num_batches_tracked'] = np.array(0, np.int64)
  return state_dict


def read_flat(path: str, arch: str) -> dict[str, np.ndarray]:
  """{'params/backbone/conv1/kernel': ..., 'batch_stats/...': ...} of a torch file.

  The flat form `transfer.pretrained` merges into a fresh TransferModel; the heads are included
  when the file has a classifier head (skip them there with init_from.skip).
  """
  classifier_prefix = _arch(arch).heads['classifier'] + '.'
  state_dict = load_torch_state_dict(path)
  with_head = any(key.startswith(classifier_prefix) for key in state_dict)
  params, batch_stats = torch_to_flax(state_dict, arch, with_head=with_head)
  return {f'{collection}/{name}': value
          for collection, tree in (('params', params), ('batch_stats', batch_stats))
          for name, value in traverse_util.flatten_dict(tree, sep='/').items()}


def _arch(arch: str) -> TorchArch:
  if arch not in ARCHS:
    raise UserError(f'no PyTorch mapping for architecture {arch!r} (init_from.torch_arch); '
                    f'choose one of {sorted(ARCHS)}')
  return ARCHS[arch]


_TORCH_LEAF = {('params', 'kernel'): 'weight', ('params', 'scale'): 'weight',
               ('params', 'bias'): 'bias', ('batch_stats', 'mean'): 'running_mean',
               ('batch_stats', 'var'): 'running_var'}


def _convert(key: str, array: np.ndarray) -> tuple[str, str, np.ndarray]:
  """(collection, '/'-joined Flax path, array in Flax layout) for one torch tensor."""
  module, _, leaf = key.rpartition('.')
  path = re.sub(r'\.(\d+)(?=\.|$)', r'_\1', module).replace('.', '/')
  if leaf in ('running_mean', 'running_var'):
    return 'batch_stats', f'{path}/{leaf[len("running_"):]}', array
  if leaf == 'weight' and array.ndim == 4:
    return 'params', f'{path}/kernel', np.transpose(array, (2, 3, 1, 0))
  if leaf == 'weight' and array.ndim == 2:
    return 'params', f'{path}/kernel', array.T
  if leaf == 'weight' and array.ndim == 1:
    return 'params', f'{path}/scale', array
  # Biases, and anything unknown (it then shows up as unexpected in `_check`).
  return 'params', f'{path}/{leaf}', array


def _convert_head(state_dict: Mapping[str, Any], keys: list[str], attr: str, prefix: str,
                  features_dim: int | None, converted: dict) -> tuple[dict, dict]:
  """Adds a head's Linear layers to `converted` in MLP naming.

  Returns the expected shapes of the head's Flax parameters (None: any shape) and, when the head
  has no Linear weight at all, the torch name to report as missing.
  """
  weights = []  # (Sequential index or -1, torch key), in layer order.
  for key in keys:
    rest = key[len(prefix) + 1:]
    if rest == 'weight':
      weights.append((-1, key))
    elif re.fullmatch(r'\d+\.weight', rest):
      weights.append((int(rest.split('.')[0]), key))
  weights.sort()
  if not weights:
    for key in keys:  # Stray tensors (a bias without its weight) then show up as unexpected.
      converted[('params', f'{attr}/{key.replace(".", "/")}')] = (key, _float32(state_dict[key]))
    missing = ('params', f'{attr}/out/kernel')
    return {missing: None}, {missing: f'{prefix}.weight'}
  widths = [np.shape(state_dict[key])[0] for _, key in weights]
  expected = {}
  if all(np.ndim(state_dict[key]) == 2 for _, key in weights):
    mlp = MLP(hidden=tuple(widths[:-1]), out_dim=widths[-1])
    features_dim = features_dim or np.shape(state_dict[weights[0][1]])[1]
    shapes = jax.eval_shape(mlp.init, jax.random.key(0), jnp.zeros((1, features_dim)))['params']
    expected = {('params', f'{attr}/{path}'): leaf.shape
                for path, leaf in traverse_util.flatten_dict(shapes, sep='/').items()}
  names = [f'dense{i}' for i in range(len(weights) - 1)] + ['out']
  module_to_name = {key[:-len('.weight')]: name
                    for (_, key), name in zip(weights, names, strict=True)}
  for key in keys:
    module, _, leaf = key.rpartition('.')
    name = module_to_name.get(module, module.replace('.', '_'))
    array = _float32(state_dict[key])
    array = array.T if leaf == 'weight' and array.ndim == 2 else array
    converted[('params', f'{attr}/{name}/{"kernel" if leaf == "weight" else leaf}')] = (
        key, array)
  return expected, {}


def _check(expected: dict, converted: dict, torch_names: dict, arch: str) -> None:
  """One UserError naming every missing, unexpected or mis-shaped tensor (the first few)."""
  problems = []
  for (collection, path), want in expected.items():
    if (collection, path) not in converted:
      _, *modules, leaf = path.split('/')
      problems.append('missing ' + torch_names.get((collection, path), _torch_module(modules) +
                                                   f'.{_TORCH_LEAF.get((collection, leaf))}'))
    elif want is not None and tuple(converted[(collection, path)][1].shape) != tuple(want):
      key, array = converted[(collection, path)]
      problems.append(f'{key} has shape {tuple(array.shape)} but {path} needs {tuple(want)} '
                      'in Flax layout')
  problems += [f'unexpected {key}' for flax_key, (key, _) in converted.items()
               if flax_key not in expected]
  if problems:
    more = f' (and {len(problems) - _MAX_LISTED} more)' if len(problems) > _MAX_LISTED else ''
    raise UserError(f'state_dict does not fit {arch}: {"; ".join(problems[:_MAX_LISTED])}{more}')


def _torch_module(flax_modules: list[str]) -> str:
  """['layer1_0', 'downsample_1'] -> 'layer1.0.downsample.1'."""
  return '.'.join(re.sub(r'_(\d+)$', r'.\1', m) for m in flax_modules)


def _unwrap(obj: Any, path: str, tensor_type: type) -> Mapping[str, Any]:
  """The name -> tensor mapping in `obj`, looking inside {'state_dict': ...} / {'model': ...}."""
  if isinstance(obj, Mapping) and not any(isinstance(v, tensor_type) for v in obj.values()):
    for wrapper in ('state_dict', 'model'):
      if isinstance(obj.get(wrapper), Mapping):
        obj = obj[wrapper]
        break
  if not isinstance(obj, Mapping):
    raise UserError(f'{path} holds a {type(obj).__name__}, not a state_dict (name -> tensor)')
  bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or
         not isinstance(v, tensor_type)]
  if bad:
    raise UserError(f'{path} is not a state_dict: entries that are not tensors: {bad[:5]}')
  return obj


def _tensors_to_numpy(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
  out = {}
  for key, tensor in state_dict.items():
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point() and tensor.element_size() < 4:
      tensor = tensor.float()  # numpy has no bfloat16; half precision is widened too.
    out[key] = tensor.numpy()
  return out


def _float32(value: Any) -> np.ndarray:
  array = np.asarray(value)
  return array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) else array


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__
