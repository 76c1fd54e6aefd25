"""PyTorch state dicts to Flax variables (and back): any state dict into any model, by name.

`load_torch_state_dict` reads a `.safetensors` file, or a `.pth`/`.pt`/`.bin` file with
`torch.load(weights_only=True)` (never an unrestricted unpickle). `convert` turns every tensor
into a flat Flax leaf in Flax layout, named by a fixed rule (every `.N`, an `nn.Sequential`
index, is joined to the name before it with `_`):

  conv weight (O,I,H,W) / (O,I,W)  -> params/MODULE/kernel (H,W,I,O) / (W,I,O)
  linear weight (out,in)           -> params/MODULE/kernel (in,out)
  BatchNorm weight / bias          -> params/MODULE/scale / bias
  running_mean / running_var       -> batch_stats/MODULE/mean / var
  num_batches_tracked              -> skipped

e.g. `layer1.0.downsample.1.running_var` -> `batch_stats/layer1_0/downsample_1/var`. Regex rules
'REGEX=>REPLACEMENT' (the form of `config.init_from.rename`) then map these names onto a model's
(`params/fc3/kernel` -> `params/classifier/out/kernel`); the first rule that matches a whole name
applies, an empty replacement drops the tensor. A model that flattens NHWC conv maps into a
dense layer reads them in another order than torch's `x.flatten(1)` on NCHW: `flatten={'fc1':
(C, H, W)}` permutes that layer's input rows (the library's LeNet flattens in torch's order and
needs none).

From a config, `init_from.path=model.pth` with `init_from.rename` rules imports any state dict
into any model (the loader then checks every name and shape, after the rules). The built-in
architectures (`init_from.torch_arch`: the torchvision ResNets and VGG-16, the DANN reference
LeNet) are such rule sets, `ARCHS`: torchvision's `fc` / `classifier.6` and the DANN
reference's `label_head` / `domain_head` become the TransferModel's `classifier` /
`domain_discriminator`, everything else goes under `backbone/`.
"""

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import traverse_util

from transfer_jax import config_lib
from transfer_jax.errors import UserError
from transfer_jax.models import BACKBONES, MLP


class TorchArch(NamedTuple):
  image_size: tuple[int, int]  # Default image size for deriving the expected Flax shapes.
  first_conv: str              # The torch key whose input channels are the images' channels.
  heads: dict[str, str]        # TransferModel head attribute -> torch prefix.
  head_rules: tuple[str, ...]  # Rules naming the head tensors (dropped without the heads).
  pooled: bool = True          # Feature size independent of the image size (global pooling).
  # Everything that is not a head: the backbone, under the same names.
  rules: tuple[str, ...] = (r'(params|batch_stats)/(.*)=>\1/backbone/\2',)


_RESNET = TorchArch((224, 224), 'conv1.weight', {'classifier': 'fc'},
                    (r'params/fc/(.*)=>params/classifier/out/\1',))
_RESNET_CIFAR = _RESNET._replace(image_size=(32, 32))
# Keys are also BACKBONES keys.
ARCHS = {
    'resnet18': _RESNET, 'resnet50': _RESNET,
    'resnet18_cifar': _RESNET_CIFAR, 'resnet50_cifar': _RESNET_CIFAR,
    # VGGFeatures flattens the pooled map in torch's (C, H, W) order: no row permutation.
    'vgg16': TorchArch((224, 224), 'features.0.weight', {'classifier': 'classifier.6'},
                       (r'params/classifier_6/(.*)=>params/classifier/out/\1',)),
    # The DANN reference network of /work/shared/bench/torch_dann_reference.py: Linear-ReLU
    # Sequentials, whose Linear layers (indices 0, 2, 4) are the MLPs' dense0, dense1, out.
    'dann_lenet': TorchArch((28, 28), 'conv1.weight',
                            {'classifier': 'label_head', 'domain_discriminator': 'domain_head'},
                            (r'params/label_head_0/(.*)=>params/classifier/dense0/\1',
                             r'params/label_head_2/(.*)=>params/classifier/dense1/\1',
                             r'params/label_head_4/(.*)=>params/classifier/out/\1',
                             r'params/domain_head_0/(.*)=>params/domain_discriminator/dense0/\1',
                             r'params/domain_head_2/(.*)=>params/domain_discriminator/out/\1'),
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
      with warnings.catch_warnings():  # e.g. on pickle protocols: the error below says it all.
        warnings.simplefilter('ignore')
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # weights_only refuses anything but tensors and plain containers.
      raise UserError(_load_error(path, e)) from None
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


def convert(state_dict: Mapping[str, Any], rules: Sequence[str] = (),
            flatten: Mapping[str, tuple[int, int, int]] | None = None
            ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """({flat Flax name: array in Flax layout}, {flat name: its torch key}) of a state dict.

  Names follow the fixed rule of the module docstring, then `rules` ('REGEX=>REPLACEMENT', the
  first that matches the whole name applies; '' drops the tensor). `flatten` maps the torch
  module of a dense layer that reads flattened conv maps to the maps' (C, H, W): its rows are
  reordered from torch's (C, H, W) flatten order to NHWC's (H, W, C).
  """
  compiled = [_rule(rule) for rule in rules]
  flatten = dict(flatten or {})
  values, sources, used = {}, {}, set()
  for key, value in state_dict.items():
    if key.endswith('num_batches_tracked'):
      continue
    module, _, leaf = key.rpartition('.')
    layout = flatten.get(module) if leaf == 'weight' else None
    used.add(module if layout is not None else '')
    collection, path, array = _convert(key, _float32(value), layout)
    name = f'{collection}/{path}'
    for pattern, replacement in compiled:
      if pattern.fullmatch(name):
        name = pattern.sub(replacement, name)
        break
    if not name:
      continue
    if name in values:
      raise UserError(f'torch tensors {sources[name]} and {key} both map to {name}; make the '
                      'rules (init_from.rename) tell them apart')
    values[name], sources[name] = array, key
  if set(flatten) - used:
    raise UserError(f'flatten names {sorted(set(flatten) - used)}, which are no torch modules '
                    'with a weight in the state dict')
  return values, sources


def _rule(rule: str) -> tuple[re.Pattern, str]:
  pattern, arrow, replacement = rule.partition('=>')
  if not arrow:
    raise UserError(f"rule {rule!r} needs the form 'regex=>replacement'")
  try:
    return re.compile(pattern), replacement
  except re.error as e:
    raise UserError(f'rule {rule!r}: {pattern!r} is not a valid regex ({e})') from None


def _arch_rules(arch: TorchArch, with_head: bool) -> tuple[str, ...]:
  heads = arch.head_rules if with_head else tuple(
      rule.partition('=>')[0] + '=>' for rule in arch.head_rules)
  return heads + arch.rules


def torch_to_flax(state_dict: Mapping[str, Any], arch: str, *, with_head: bool = False,
                  input_shape: tuple[int, int, int] | None = None) -> tuple[dict, dict]:
  """(params, batch_stats) in TransferModel naming ('backbone', 'classifier', ...) for `arch`,
  checked against the shapes of the Flax model.

  `with_head=True` maps the classifier head (required) and any auxiliary head the state_dict has
  (DANN's domain head); otherwise head tensors are skipped. The Flax model is built for images
  of `input_shape` (height, width, channels; default: the arch's usual size, channels read from
  the first conv; a head's input width is checked only for pooled backbones or an explicit
  `input_shape`). Missing, unexpected and mis-shaped tensors raise one UserError listing them,
  by their torch names.
  """
  spec = _arch(arch)
  check_head_input = spec.pooled or input_shape is not None
  if input_shape is None:
    conv_ok = spec.first_conv in state_dict and np.ndim(state_dict[spec.first_conv]) == 4
    channels = np.shape(state_dict[spec.first_conv])[1] if conv_ok else 3
    input_shape = (*spec.image_size, channels)
  if not with_head and any(key.startswith(prefix + '.') for key in state_dict
                           for prefix in spec.heads.values()):
    logging.info('torch_to_flax(%s): skipped the head tensors under %s', arch,
                 sorted(spec.heads.values()))
  values, sources = convert(state_dict, _arch_rules(spec, with_head))

  backbone = BACKBONES[arch](config_lib.model_config(arch))  # The fields' defaults.
  features, variables = jax.eval_shape(
      backbone.init_with_output, jax.random.key(0), jnp.zeros((1, *input_shape), jnp.float32))
  expected = {f'{col}/backbone/{path}': leaf.shape for col, tree in variables.items()
              for path, leaf in traverse_util.flatten_dict(tree, sep='/').items()}
  torch_names = {}  # Flax name -> torch key, for head tensors that are missing.
  for attr, prefix in spec.heads.items() if with_head else ():
    head = _head_shapes(values, attr, features.shape[-1] if check_head_input else None)
    if head is None and attr == 'classifier':
      expected[f'params/{attr}/out/kernel'] = None
      torch_names[f'params/{attr}/out/kernel'] = f'{prefix}.weight'
    expected.update(head or {})
  _check(expected, values, sources, torch_names, arch)
  params, batch_stats = {}, {}
  for name, array in values.items():
    collection, _, path = name.partition('/')
    (params if collection == 'params' else batch_stats)[path] = array
  return (traverse_util.unflatten_dict(params, sep='/'),
          traverse_util.unflatten_dict(batch_stats, sep='/'))


def _head_shapes(values: dict[str, np.ndarray], attr: str,
                 features_dim: int | None) -> dict[str, tuple[int, ...]] | None:
  """The parameter shapes of the MLP head `attr` whose dense layers `values` holds (None if it
  holds none): its widths are read from the kernels, its input width is `features_dim`."""
  kernels = {name.split('/')[2]: array for name, array in values.items()
             if name.startswith(f'params/{attr}/') and name.endswith('/kernel')}
  if not kernels:
    return None
  order = sorted((name for name in kernels if name != 'out'), key=lambda n: int(n[5:] or 0))
  layers = [*order, 'out'] if 'out' in kernels else order
  if any(np.ndim(kernels[name]) != 2 for name in layers):
    return {}
  widths = [np.shape(kernels[name])[1] for name in layers]
  features_dim = features_dim or np.shape(kernels[layers[0]])[0]
  mlp = MLP(hidden=tuple(widths[:-1]), out_dim=widths[-1])
  shapes = jax.eval_shape(mlp.init, jax.random.key(0), jnp.zeros((1, features_dim)))['params']
  return {f'params/{attr}/{path}': leaf.shape
          for path, leaf in traverse_util.flatten_dict(shapes, sep='/').items()}


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


def read_flat(path: str, arch: str = '') -> dict[str, np.ndarray]:
  """{'params/backbone/conv1/kernel': ..., 'batch_stats/...': ...} of a torch file.

  The flat form `transfer.pretrained` merges into a fresh model, after its `init_from.rename`
  rules: with `arch` ('' for none) the names of that built-in rule set (the heads are included
  when the file has a classifier head; skip them there with init_from.skip), else the fixed
  names of `convert` ('params/fc3/kernel'). Names and shapes are checked by the loader, after
  the rename rules, so any state dict loads into any model that the rules describe.
  """
  state_dict = load_torch_state_dict(path)
  if not arch:
    return convert(state_dict)[0]
  spec = _arch(arch)
  with_head = any(key.startswith(spec.heads['classifier'] + '.') for key in state_dict)
  return convert(state_dict, _arch_rules(spec, with_head))[0]


def _arch(arch: str) -> TorchArch:
  if arch not in ARCHS:
    raise UserError(f'no PyTorch mapping for architecture {arch!r} (init_from.torch_arch); '
                    f'choose one of {sorted(ARCHS)}')
  return ARCHS[arch]


_TORCH_LEAF = {('params', 'kernel'): 'weight', ('params', 'scale'): 'weight',
               ('params', 'bias'): 'bias', ('batch_stats', 'mean'): 'running_mean',
               ('batch_stats', 'var'): 'running_var'}


def _convert(key: str, array: np.ndarray, flatten: tuple[int, int, int] | None = None
             ) -> tuple[str, str, np.ndarray]:
  """(collection, '/'-joined Flax path, array in Flax layout) for one torch tensor."""
  module, _, leaf = key.rpartition('.')
  path = re.sub(r'\.(\d+)(?=\.|$)', r'_\1', module).replace('.', '/')
  if leaf in ('running_mean', 'running_var'):
    return 'batch_stats', f'{path}/{leaf[len("running_"):]}', array
  if leaf == 'weight' and array.ndim == 4:
    return 'params', f'{path}/kernel', np.transpose(array, (2, 3, 1, 0))
  if leaf == 'weight' and array.ndim == 3:
    return 'params', f'{path}/kernel', np.transpose(array, (2, 1, 0))
  if leaf == 'weight' and array.ndim == 2:
    if flatten is not None:  # The rows of a dense layer that reads flattened conv maps.
      channels, height, width = flatten
      if channels * height * width != array.shape[1]:
        raise UserError(f'{key} reads {array.shape[1]} inputs, not the {channels}x{height}x'
                        f'{width} conv maps that flatten gives it')
      array = (array.reshape(-1, channels, height, width).transpose(0, 2, 3, 1)
               .reshape(array.shape[0], -1))
    return 'params', f'{path}/kernel', array.T
  if leaf == 'weight' and array.ndim == 1:
    return 'params', f'{path}/scale', array
  # Biases, and anything else under its own name (the loader reports what has no place).
  return 'params', f'{path}/{leaf}', array


def _check(expected: dict, values: dict, sources: dict, torch_names: dict, arch: str) -> None:
  """One UserError naming every missing, unexpected or mis-shaped tensor (the first few)."""
  problems = []
  for name, want in expected.items():
    if name not in values:
      collection, _, *modules, leaf = name.split('/')
      problems.append('missing ' + torch_names.get(name, _torch_module(modules) +
                                                   f'.{_TORCH_LEAF.get((collection, leaf))}'))
    elif want is not None and tuple(values[name].shape) != tuple(want):
      problems.append(f'{sources[name]} has shape {tuple(values[name].shape)} but '
                      f'{name.partition("/")[2]} needs {tuple(want)} in Flax layout')
  problems += [f'unexpected {sources[name]}' for name in values if name not in expected]
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


def _load_error(path: str, error: Exception) -> str:
  """One line for a file torch.load(weights_only=True) refused: the global it blocked (a pickled
  object, not a state dict), or that the file is no readable state dict at all. torch's own
  advice to retry with weights_only=False is left out: that would run the file's code."""
  text = str(error)
  blocked = re.search(r'(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)', text)
  if blocked:
    return (f'{path}: refused to unpickle {blocked.group(1)} (only tensors and plain containers '
            'are read); save the weights with torch.save(model.state_dict(), path) or as '
            '.safetensors')
  if 'PytorchStreamReader' in text or isinstance(error, EOFError):
    reason = 'the file is truncated or damaged'
  else:
    reason = 'it was not written by torch.save'
  return (f'{path} is not a readable state dict ({reason}); write it again with '
          'torch.save(model.state_dict(), path)')


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__
