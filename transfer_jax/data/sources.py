"""Random-access sources of examples and the protocols that carve them into splits.

A source has `__len__` and `__getitem__(i) -> {'image' or 'features': array, 'label': int}`:
TFDS array_record data sources (`builders`), `ArraySource` for numpy arrays, and `Subset`.
`make_splits` turns a dataset's stored splits into a domain's `train` / `test` (and, if asked,
`val`, `oracle_val` and `labeled`) according to the domain's config:

  train_split  the stored split trained on (e.g. 'train'; 'mnist' for the JDA pair)
  test_split   the stored split reported on; 'holdout' holds out `test_fraction` of train_split;
               equal to train_split for transductive protocols (JDA, Office-Caltech SURF)
  train_size   >0: a fixed random subset of the training examples (after any holdout; the
               ADDA protocol: 2000 MNIST / 1800 USPS)
  val_fraction held out of the training examples as `val` (source) or `oracle_val` (target,
               labelled: an upper bound for model selection, never a realistic rule)
  labeled_per_class  k labelled target examples per class (`labeled`), removed from `train`;
               -1: every training example is also in `labeled`
All draws use `split_seed`, independent of the run seed, so splits never change between runs.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from transfer_jax.errors import UserError

READ_CHUNK = 4096


class ArraySource:
  """A source over in-memory arrays of equal length (e.g. `{'image': ..., 'label': ...}`)."""

  def __init__(self, arrays: Mapping[str, np.ndarray]):
    self.arrays = dict(arrays)
    sizes = {len(a) for a in self.arrays.values()}
    if len(sizes) != 1:
      raise UserError(f'arrays of one split must have the same length, got {sorted(sizes)}')
    self._size = sizes.pop()

  def __len__(self) -> int:
    return self._size

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {name: array[index] for name, array in self.arrays.items()}

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    picked = {name: array[np.asarray(indices, np.int64)] for name, array in self.arrays.items()}
    return [{name: picked[name][i] for name in picked} for i in range(len(indices))]


class Subset:
  """The examples of `source` at `indices`, in that order."""

  def __init__(self, source: Any, indices: np.ndarray):
    self.source, self.indices = source, np.asarray(indices, np.int64)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self.source[int(self.indices[index])]

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    return read_many(self.source, self.indices[np.asarray(indices, np.int64)].tolist())


def read_batch(source: Any, indices: np.ndarray) -> dict[str, np.ndarray]:
  """The examples at `indices`, stacked: one fancy-indexing read for arrays, one bulk read else."""
  indices = np.asarray(indices, np.int64)
  if isinstance(source, ArraySource):
    return {name: array[indices] for name, array in source.arrays.items()}
  if isinstance(source, Subset):
    return read_batch(source.source, source.indices[indices])
  rows = read_many(source, indices.tolist())
  return {key: np.stack([np.asarray(row[key]) for row in rows]) for key in rows[0]}


def read_many(source: Any, indices: Sequence[int]) -> list[dict[str, Any]]:
  if hasattr(source, '__getitems__'):
    return source.__getitems__(list(indices))
  return [source[i] for i in indices]


def to_arrays(source: Any) -> dict[str, np.ndarray]:
  """Reads a whole source into stacked arrays (in chunks)."""
  rows = []
  for start in range(0, len(source), READ_CHUNK):
    rows += read_many(source, range(start, min(len(source), start + READ_CHUNK)))
  if not rows:
    raise UserError('cannot read an empty split')
  return {key: np.stack([np.asarray(row[key]) for row in rows]) for key in rows[0]}


def labels_of(source: Any) -> np.ndarray:
  if isinstance(source, ArraySource):
    return np.asarray(source.arrays['label'])
  if isinstance(source, Subset):
    return labels_of(source.source)[source.indices]
  return to_arrays(source)['label']


def make_splits(stored: Mapping[str, Any], domain: ml_collections.ConfigDict,
                data: ml_collections.ConfigDict, role: str) -> dict[str, Any]:
  """A domain's splits from its dataset's stored splits; see the module docstring."""
  name = domain.name
  for key in ('train_split', 'test_split'):
    split = domain[key]
    if split != 'holdout' and split not in stored:
      raise UserError(f'{name} has no split {split!r} (config.data.{role}.{key}); it has '
                      f'{sorted(stored)}')
  rng = np.random.default_rng([data.split_seed, _stable_hash(name)])
  train_source = stored[domain.train_split]
  train = np.arange(len(train_source))
  splits = {}
  if domain.test_split == 'holdout':
    train, test = _hold_out(train, data.test_fraction, rng)
    splits['test'] = Subset(train_source, test)
  else:
    splits['test'] = stored[domain.test_split]
  if domain.train_size:
    if domain.train_size > len(train):
      raise UserError(f'config.data.{role}.train_size={domain.train_size} but {name}/'
                      f'{domain.train_split} has {len(train)} training examples')
    train = np.sort(rng.choice(train, domain.train_size, replace=False))
  if domain.labeled_per_class == -1:  # Every training example labelled (and also unlabelled).
    splits['labeled'] = Subset(train_source, train)
  elif domain.labeled_per_class:
    # The labels are read only here: a streamed split is not read whole to build its splits.
    labeled = _per_class(train, labels_of(train_source), domain.labeled_per_class, rng, name)
    train = np.setdiff1d(train, labeled)
    splits['labeled'] = Subset(train_source, labeled)
  if domain.val_fraction:
    train, val = _hold_out(train, domain.val_fraction, rng)
    splits['oracle_val' if role == 'target' else 'val'] = Subset(train_source, val)
  splits['train'] = Subset(train_source, train)
  return splits


def _hold_out(indices: np.ndarray, fraction: float, rng: np.random.Generator):
  if not 0.0 < fraction < 1.0:
    raise UserError(f'a held-out fraction must be in (0, 1), got {fraction}')
  shuffled = rng.permutation(indices)
  count = int(round(len(indices) * fraction))
  return np.sort(shuffled[count:]), np.sort(shuffled[:count])


def _per_class(indices, labels, k, rng, name) -> np.ndarray:
  chosen = []
  for label in np.unique(labels[indices]):
    members = indices[labels[indices] == label]
    if len(members) < k:
      raise UserError(f'{name} has only {len(members)} training examples of class {label}, '
                      f'fewer than labeled_per_class={k}')
    chosen.append(rng.choice(members, k, replace=False))
  return np.sort(np.concatenate(chosen))


def _stable_hash(text: str) -> int:
  return int.from_bytes(text.encode()[:16].ljust(16, b'\0'), 'little') % (2**32)
