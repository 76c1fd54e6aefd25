"""Features of a frozen extractor for every split of both domains, computed once, cached as .npz.

The extractor is the backbone of `config.model` with the weights of `config.init_from` (read by
the one pretrained loader, `transfer.pretrained.load_pretrained`), run in eval mode: the features
are `TransferModel(...)(inputs)['features']`. With `raw=True` it is the identity on the model
inputs (flattened), the "no adaptation" baseline of shallow domain adaptation.

A split's file is named by a SHA-256 key of everything its features depend on: the content of
the backbone's weights (not their path: a checkpoint rewritten in place gets a new key), the
model config, the preprocessing (`config.data` without the other domain), the domain's split, and
the source code of `transfer_jax/data/*.py` (and `models/*.py` for a backbone). A changed weight,
preprocessing field or preprocessing code therefore misses the cache; the key is also stored
inside the file and checked on reading. `CACHE_VERSION` changes when the extraction code does.
"""

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from transfer_jax import data as data_lib
from transfer_jax import models
from transfer_jax.errors import UserError
from transfer_jax.models import build_model
from transfer_jax.training import parallel
from transfer_jax.transfer.pretrained import load_pretrained, merge

CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Features:
  features: np.ndarray  # (N, D) float32, in the split's order.
  labels: np.ndarray    # (N,) int32.
  file: str             # The cache file.
  cached: bool          # True: read from the cache, the extractor did not run.


@dataclasses.dataclass
class Extractor:
  """What determines the features besides the data (`digest`), and the forward pass, built on
  first use: a cache hit never initialises or runs the model."""
  digest: str
  model_config: dict[str, Any] | None   # None for raw inputs.
  build: Callable[[], Callable[[dict], tuple]]
  _forward: Callable[[dict], tuple] | None = None

  @property
  def forward(self) -> Callable[[dict], tuple]:
    if self._forward is None:
      self._forward = self.build()
    return self._forward


def extract_all(config: ml_collections.ConfigDict, cache_dir: str, raw: bool = False,
                mesh: Mesh | None = None) -> tuple[dict[str, Features], int]:
  """Features of every split of the source and target domains ('source/train', 'target/test',
  ...), read from `cache_dir` or computed and written there; and the number of classes."""
  mesh = mesh or parallel.make_mesh(config.num_devices)
  parallel.check_divisible(config.eval_batch_size, mesh, 'config.eval_batch_size')
  means = {}  # 'center' normalisation: each domain's training sample is read once.
  domains = {role: data_lib.load_domain(config.data[role], config.data, role, means)
             for role in ('source', 'target')}
  data_lib.check_compatible(domains['source'], domains['target'])
  num_classes = domains['source'].num_classes
  if raw:
    extractor = raw_extractor(mesh)
  else:
    extractor = backbone_extractor(config, mesh, domains['source'].input_shape, num_classes)
  process = dict(process_index=jax.process_index(), process_count=jax.process_count())
  results = {}
  for role, domain in domains.items():
    for split, source in sorted(domain.splits.items()):
      key = cache_key(extractor, config.data, role, split)
      name = f'{_safe(config.data[role].name)}-{split}-{key[:16]}.npz'
      path = os.path.join(cache_dir, name)
      cached = read_cache(path, key)
      if cached is None:
        features, labels = compute_features(extractor.forward, source, domain.batch_fn,
                                            config.eval_batch_size, mesh, process)
        if jax.process_index() == 0:
          write_cache(path, key, features, labels)
      else:
        features, labels = cached
      results[f'{role}/{split}'] = Features(features, labels, path, cached is not None)
  return results, num_classes


def compute_features(forward: Callable, source: Any, batch_fn: Callable, batch_size: int,
                     mesh: Mesh, process: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
  """One pass of the jitted extractor over padded, mesh-sharded eval batches of `source`."""
  fetched, pending = [], None
  for batch in data_lib.eval_batches(source, batch_fn, batch_size, **process):
    outputs = forward(parallel.to_global(batch, mesh))
    if pending is not None:  # Fetch the previous batch while this one computes.
      fetched.append(_fetch(pending))
    pending = outputs
  if pending is not None:
    fetched.append(_fetch(pending))
  if not fetched:
    raise UserError('a split to extract features from is empty')
  features, labels, masks = (np.concatenate(parts) for parts in zip(*fetched, strict=True))
  return features[masks].astype(np.float32), labels[masks].astype(np.int32)


def _fetch(outputs: tuple[jax.Array, ...]) -> tuple[np.ndarray, ...]:
  # Replicated outputs: every process holds the whole batch on its first device.
  return tuple(np.asarray(x.addressable_data(0)) for x in outputs)


def raw_extractor(mesh: Mesh) -> Extractor:
  """The model inputs themselves, flattened to vectors."""
  def build():
    return _jit_forward(lambda _, inputs: inputs.reshape(inputs.shape[0], -1), {}, mesh)
  return Extractor(digest=f'raw {code_digest(data_lib)}', model_config=None, build=build)


def backbone_extractor(config: ml_collections.ConfigDict, mesh: Mesh,
                       input_shape: tuple[int, ...], num_classes: int) -> Extractor:
  """The backbone of `config.model` with the weights `config.init_from` loads, in eval mode.

  Every backbone variable must come from the checkpoint: features of a partly fresh backbone
  would be random in part.
  """
  if config.model.batch_norm == 'adabn':
    raise UserError("feature extraction uses the checkpoint's BatchNorm statistics; "
                    "model.batch_norm='adabn' is not supported here (set it to 'train')")
  if not config.init_from.path:
    raise UserError('set --config.init_from.path to the workdir of a trained run (or a torch '
                    'state dict) whose backbone extracts the features, or pass --raw')
  # The heads (classifier, discriminator, ...) play no part in the features: the model has the
  # backbone and a classifier, and the loader reads only backbone variables (any others the
  # checkpoint holds are left unused); every backbone variable must be found, with its shape.
  model = build_model(config.model, num_classes, ())
  example = jnp.zeros((1,) + tuple(input_shape), jnp.float32)

  def init_variables(rng):
    return model.init({'params': rng, 'dropout': rng}, example)

  backbone_only = ml_collections.ConfigDict(config.init_from.to_dict())
  backbone_only.update(load=f'(?=[^/]+/backbone/)(?:{config.init_from.load or ".*"})',
                       allow_missing=False, allow_unused=True)
  pretrained = load_pretrained(backbone_only, jax.eval_shape(init_variables, jax.random.key(0)))
  backbone = {path: value for path, value in pretrained.values.items() if _is_backbone(path)}
  fresh = [path for path, status, _ in pretrained.table
           if _is_backbone(path) and status != 'loaded']
  if fresh or not backbone:
    raise UserError(f'init_from {config.init_from.path} leaves backbone variables fresh '
                    f'({", ".join(fresh[:4]) or "all of them"}); features need a fully loaded '
                    'backbone (check init_from.load / skip and config.model.backbone)')

  def build():
    replicated = parallel.replicated(mesh)
    variables = jax.jit(lambda loaded: merge(init_variables(jax.random.key(0)), loaded),
                        out_shardings=replicated)(pretrained.values)
    return _jit_forward(lambda v, inputs: model.apply(v, inputs)['features'], variables, mesh)

  digest = f'{weights_digest(backbone)} {code_digest(data_lib)} {code_digest(models)}'
  return Extractor(digest=digest, model_config=config.model.to_dict(), build=build)


def _is_backbone(path: str) -> bool:
  return path.split('/')[1:2] == ['backbone']


def _jit_forward(features_fn: Callable[[Any, jax.Array], jax.Array], variables: Any,
                 mesh: Mesh) -> Callable:
  """(global batch) -> (features, labels, mask), replicated so that any process can read them."""
  def forward(variables, batch):
    features = features_fn(variables, batch['input'])
    return features.reshape(features.shape[0], -1), batch['label'], batch['mask']
  replicated = parallel.replicated(mesh)
  jitted = jax.jit(forward, in_shardings=(replicated, parallel.batch_sharding(mesh)),
                   out_shardings=replicated)
  return functools.partial(jitted, variables)


def weights_digest(values: dict[str, np.ndarray]) -> str:
  """SHA-256 of the names, shapes, dtypes and bytes of `values`."""
  digest = hashlib.sha256()
  for name in sorted(values):
    value = np.ascontiguousarray(values[name])
    digest.update(f'{name}:{value.dtype}:{value.shape};'.encode())
    digest.update(value.tobytes())
  return digest.hexdigest()


def code_digest(package: Any) -> str:
  """SHA-256 of the .py files of a package's folder (not its subfolders)."""
  folder = os.path.dirname(package.__file__)
  digest = hashlib.sha256()
  for name in sorted(os.listdir(folder)):
    if name.endswith('.py'):
      with open(os.path.join(folder, name), 'rb') as f:
        digest.update(name.encode() + b'\0' + f.read())
  return digest.hexdigest()


def cache_key(extractor: Extractor, data: ml_collections.ConfigDict, role: str,
              split: str) -> str:
  """The SHA-256 of everything the features of `role`'s `split` depend on (see the docstring).
  The other domain is left out: a source domain's features serve every target."""
  shared = {k: v for k, v in data.to_dict().items() if k not in ('source', 'target')}
  payload = dict(version=CACHE_VERSION, weights=extractor.digest, model=extractor.model_config,
                 data=shared, domain=data[role].to_dict(), split=split)
  return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def read_cache(path: str, key: str) -> tuple[np.ndarray, np.ndarray] | None:
  """(features, labels) from `path` if it exists and was written under `key`."""
  if not os.path.exists(path):
    return None
  with np.load(path) as f:
    if str(f['key']) != key:
      return None
    return f['features'], f['labels']


def write_cache(path: str, key: str, features: np.ndarray, labels: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  partial = path + '.partial.npz'
  np.savez(partial, features=features, labels=labels, key=np.asarray(key))
  os.replace(partial, path)  # Readers never see a half-written file.


def _safe(name: str) -> str:
  return ''.join(c if c.isalnum() or c in '-_' else '_' for c in name)
