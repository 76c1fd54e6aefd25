"""Data: named domains, their splits (the protocols), preprocessing, and the grain pipeline.

`load_domain(domain_config, data_config, role)` gives a `Domain`: its splits as random-access
sources and the function that turns a stored example into a model example. A domain's `name` is
  - a dataset of `builders.DATASETS` ('usps', 'mnist', 'office_caltech10_surf/amazon', ...),
    prepared once as TFDS array_record files under `data.data_dir` from `data.manual_dir`;
  - 'npz:PATH', a file with x_train, y_train and optionally x_test, y_test (images uint8
    (N, H, W, C) or features (N, D));
  - 'folder:ROOT/DOMAIN', images in ROOT/DOMAIN/CLASS/*.jpg|png (every domain of ROOT must
    have the same class folders), resized to `data.image_size`, one stored split 'train'; or
  - a name given to `register_arrays` in Python.
"""

import dataclasses
import functools
import os
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
import numpy as np

from transfer_jax.data import builders, preprocess
from transfer_jax.data.pipeline import eval_batches, train_iterator
from transfer_jax.data.sources import ArraySource, make_splits, read_many, to_arrays
from transfer_jax.errors import UserError

# Domains added from Python with `register_arrays`: name -> {split: {'image'|'features', 'label'}}.
REGISTERED: dict[str, dict[str, dict[str, np.ndarray]]] = {}
STATS_EXAMPLES = 10_000  # Examples used to estimate standardisation statistics.


@dataclasses.dataclass(frozen=True)
class Domain:
  name: str
  num_classes: int
  splits: dict[str, Any]                 # 'train', 'test', maybe 'val' / 'oracle_val' / 'labeled'.
  batch_fn: Callable[[dict], dict]       # Stored batch -> {'input', 'label'}.
  unlabeled_fn: Callable[[dict], dict]   # Stored batch -> {'input'}: target labels never leak.

  @property
  def input_shape(self) -> tuple[int, ...]:
    first = read_many(self.splits['train'], [0])[0]
    return tuple(self.batch_fn(_stack([first]))['input'].shape[1:])


def register_arrays(name: str, splits: Mapping[str, Mapping[str, np.ndarray]]) -> None:
  """Adds a domain from numpy arrays: `{'train': {'image': uint8 (N,H,W,C), 'label': (N,)}, ...}`.

  Use 'features' (N, D) instead of 'image' for vector data. Then set `config.data.target.name`
  (or `.source.name`) to `name`.
  """
  checked = {}
  for split, arrays in splits.items():
    _validate(f'{name}/{split}', arrays)
    checked[split] = {key: np.asarray(value) for key, value in arrays.items()}
  REGISTERED[name] = checked


def stored_splits(name: str, data: ml_collections.ConfigDict) -> tuple[dict[str, Any], int]:
  """The stored splits of dataset `name` as sources, and its number of classes."""
  if not name:
    raise UserError('a domain of config.data has an empty name, but the run needs it; set '
                    'config.data.source.name or config.data.target.name')
  if name in REGISTERED:
    sources = {split: ArraySource(arrays) for split, arrays in REGISTERED[name].items()}
    return sources, _num_classes(name, sources)
  if name.startswith('npz:'):
    sources = _npz_splits(name[4:])
    return sources, _num_classes(os.path.expanduser(name[4:]), sources)
  if name.startswith('folder:'):
    root, domain = os.path.split(os.path.normpath(os.path.expanduser(name[7:])))
    builder = builders.ImageFolder(root=root, domain=domain, image_size=data.image_size or 224,
                                   data_dir=os.path.expanduser(data.data_dir))
  else:
    builder = builders.make_builder(name, data.data_dir, data.manual_dir,
                                    data.image_size if name.split('/')[0] in _FOLDERS else None)
  if not builders.is_prepared(builder):
    if not name.startswith('folder:'):  # A folder domain was checked when its builder was made.
      builders.check_manual_files(name, data.manual_dir)
    builders.prepare(builder, data.manual_dir)
  sources = {split: builder.as_data_source(split) for split in builder.info.splits}
  if data.in_memory:
    sources = {split: ArraySource(to_arrays(source)) for split, source in sources.items()}
  return sources, builders.num_classes(builder)


_FOLDERS = ('office31', 'office_home', 'domainnet')


def load_domain(domain: ml_collections.ConfigDict, data: ml_collections.ConfigDict,
                role: str, means: dict[str, tuple] | None = None) -> Domain:
  """The domain `domain.name` with the splits its config asks for (see `sources.make_splits`).

  `means`: a dict the caller shares between the loads of one run's domains, so that 'center'
  reads each domain's training sample once (role -> (mean, training-split size)).

  With `data.in_memory`, every stored split is preprocessed once into model inputs; otherwise
  each batch is preprocessed as it is read.
  """
  stored, num_classes = stored_splits(domain.name, data)
  image_fn = preprocess.image_transform(data.image_size, data.channels, domain.box_size,
                                        domain.binarize)
  if data.in_memory:
    stored = {split: ArraySource(_materialise(source, image_fn))
              for split, source in stored.items()}
  splits = make_splits(stored, domain, data, role)
  post_fn = None
  if data.normalize == 'standardize':
    post_fn = preprocess.standardizer(_train_sample(splits, image_fn))
  elif data.normalize == 'center':
    post_fn = preprocess.centerer(_pooled_train_mean(data, (role, splits, image_fn),
                                                     {} if means is None else means))
  elif data.normalize == 'symmetric':
    post_fn = preprocess.symmetric
  elif data.normalize != 'unit':
    raise UserError(f"unknown config.data.normalize={data.normalize!r}; use 'unit', "
                    "'symmetric', 'standardize' or 'center'")
  return Domain(name=domain.name, num_classes=num_classes, splits=splits,
                batch_fn=functools.partial(preprocess.to_model_batch, image_fn=image_fn,
                                           post_fn=post_fn),
                unlabeled_fn=functools.partial(preprocess.to_model_batch, image_fn=image_fn,
                                               post_fn=post_fn, with_label=False))


def _train_sample(splits: dict[str, Any], image_fn: Callable) -> np.ndarray:
  """The model inputs of the first STATS_EXAMPLES training examples: the statistics' sample."""
  sample = np.arange(min(STATS_EXAMPLES, len(splits['train'])))
  return preprocess.model_inputs(_stack(read_many(splits['train'], sample)), image_fn)


def _pooled_train_mean(data: ml_collections.ConfigDict, loaded: tuple,
                       means: dict[str, tuple]) -> np.ndarray:
  """The per-channel mean of the source and target training images together, each domain's
  mean weighted by its training-split size ('center'; the DANN paper's "mean subtraction" as the
  reference implementations compute it). `loaded` is the (role, splits, image_fn) of the domain
  being loaded, so only the other one is read again (from its stored splits, a sample), and
  only if `means` (shared by the run's loads) does not hold it yet."""
  role, splits, image_fn = loaded
  for other in ('source', 'target'):
    if other in means and other != role:
      continue
    if other == role:
      other_splits, other_fn = splits, image_fn
    else:
      other_cfg = data[other]
      other_fn = preprocess.image_transform(data.image_size, data.channels, other_cfg.box_size,
                                            other_cfg.binarize)
      lazy = data.copy_and_resolve_references()
      with lazy.unlocked():
        lazy.in_memory = False   # Read only the sample's records, not the whole domain.
      stored, _ = stored_splits(other_cfg.name, lazy)
      other_splits = make_splits(stored, other_cfg, data, other)
    sample = _train_sample(other_splits, other_fn)
    means[other] = (sample.mean(tuple(range(sample.ndim - 1)), dtype=np.float64),
                    len(other_splits['train']))
  pooled = [means['source'], means['target']]
  return np.average([m for m, _ in pooled], axis=0, weights=[n for _, n in pooled]
                    ).astype(np.float32)


def _materialise(source: Any, image_fn: Callable) -> dict[str, np.ndarray]:
  arrays = to_arrays(source)
  inputs = [preprocess.model_inputs({k: v[i:i + 4096] for k, v in arrays.items()}, image_fn)
            for i in range(0, len(arrays['label']), 4096)]
  return {'input': np.concatenate(inputs), 'label': arrays['label']}


def _stack(rows: list[dict]) -> dict[str, np.ndarray]:
  return {key: np.stack([np.asarray(row[key]) for row in rows]) for key in rows[0]}


def check_compatible(source: Domain, target: Domain, same_label_set: bool = True) -> None:
  """Source and target must give the model inputs of one shape and, where the source labels
  train the classifier that is evaluated on the target, share the label set."""
  if source.input_shape != target.input_shape:
    raise UserError(f'source {source.name} gives inputs of shape {source.input_shape} but target '
                    f'{target.name} gives {target.input_shape}; set config.data.image_size and '
                    'config.data.channels so they agree')
  if same_label_set and source.num_classes != target.num_classes:
    raise UserError(f'source {source.name} has {source.num_classes} classes but target '
                    f'{target.name} has {target.num_classes}; the label sets must match')


def _validate(name: str, arrays: Mapping[str, np.ndarray]) -> None:
  if 'label' not in arrays or not ({'image', 'features'} & set(arrays)):
    raise UserError(f"{name}: needs 'label' and 'image' (N,H,W,C) or 'features' (N,D) arrays, "
                    f'got {sorted(arrays)}')
  key = 'image' if 'image' in arrays else 'features'
  inputs, labels = np.asarray(arrays[key]), np.asarray(arrays['label'])
  if key == 'image' and (inputs.ndim != 4 or inputs.dtype != np.uint8):
    raise UserError(f'{name}: images must be uint8 of shape (N, H, W, C), got {inputs.dtype} '
                    f'{inputs.shape}')
  if key == 'features' and inputs.ndim != 2:
    raise UserError(f'{name}: features must have shape (N, D), got {inputs.shape}')
  if labels.shape != (len(inputs),):
    raise UserError(f'{name}: labels must have shape ({len(inputs)},), got {labels.shape}')
  if not np.issubdtype(labels.dtype, np.integer):
    raise UserError(f'{name}: labels must be integers 0..num_classes-1, got {labels.dtype}; '
                    'store them as integers (e.g. y.astype(np.int64) if they are whole numbers)')
  if len(labels) and labels.min() < 0:
    raise UserError(f'{name}: labels must be integers 0..num_classes-1, got labels from '
                    f'{labels.min()}')


def _num_classes(name: str, sources: Mapping[str, ArraySource]) -> int:
  """max label + 1, refusing 1-based labels (1..K: a model of K+1 classes, class 0 unused)."""
  labels = [s.arrays['label'] for s in sources.values() if len(s.arrays['label'])]
  if not labels:
    raise UserError(f'{name} has no examples; give at least one labelled training example')
  low, high = min(int(y.min()) for y in labels), max(int(y.max()) for y in labels)
  if low == 1 and high > 1:
    raise UserError(f'{name}: labels span 1..{high} with no class 0; labels must be '
                    f'0..num_classes-1: subtract 1 from them')
  return high + 1


def _npz_splits(path: str) -> dict[str, ArraySource]:
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    raise UserError(f'npz file {path} not found; give npz:PATH to a file with x_train, y_train')
  try:
    with np.load(path, allow_pickle=False) as f:
      files = set(f.files)
      if 'x_train' not in files or 'y_train' not in files:
        raise UserError(f'{path} needs arrays x_train and y_train (and optionally x_test, '
                        f'y_test); it has {sorted(files)}')
      if 'x_test' in files and 'y_test' not in files:
        raise UserError(f'{path} has x_test but no y_test; add the test labels or drop x_test')
      raw = {split: (f[f'x_{split}'], f[f'y_{split}']) for split in ('train', 'test')
             if f'x_{split}' in files}
  except UserError:
    raise
  except ValueError as e:
    if 'pickle' in str(e):
      raise UserError(f'{path} holds pickled Python objects, which are not loaded (unsafe); '
                      'save plain numeric arrays (np.savez with uint8 images, int '
                      'labels)') from None
    raise UserError(f'{path} is not a readable .npz file ({e}); write it again with '
                    'np.savez') from None
  except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
    raise UserError(f'{path} is not a readable .npz file ({type(e).__name__}: {e}); write it '
                    'again with np.savez') from None
  splits = {}
  for split, (x, y) in raw.items():
    if split == 'train' and not len(x):
      raise UserError(f'{path}: x_train has no examples; give at least one')
    key = 'features' if x.ndim == 2 else 'image'
    _validate(f'{path}:{split}', {key: x, 'label': _integer_labels(f'{path}:y_{split}', y)})
    splits[split] = ArraySource({key: x, 'label': np.asarray(y).astype(np.int64)})
  return splits


def _integer_labels(name: str, labels: np.ndarray) -> np.ndarray:
  """Whole-number float labels as int64; fractional ones refused (a cast would truncate them)."""
  labels = np.asarray(labels)
  if np.issubdtype(labels.dtype, np.floating):
    if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
      raise UserError(f'{name}: labels must be integers 0..num_classes-1, got non-integer '
                      f'values such as {labels[labels != np.round(labels)][:1].tolist()}; fix '
                      'the file')
    return labels.astype(np.int64)
  return labels


__all__ = ['Domain', 'REGISTERED', 'check_compatible', 'eval_batches', 'load_domain',
           'register_arrays', 'stored_splits', 'train_iterator']
