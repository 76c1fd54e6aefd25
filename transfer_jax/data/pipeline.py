"""The input pipeline: grain over random-access sources, endless shuffled training batches and
exact, padded evaluation batches.

Batches are global. Every process builds the same shuffled stream and keeps, of each global batch
of B examples, its own contiguous block of B / P rows (process p of P), which is how
`jax.make_array_from_process_local_data` assembles a batch sharded over a 1-D data mesh: a run
on P processes sees exactly the batches a single process sees.
"""

import functools
from collections.abc import Callable, Iterator
from typing import Any

import grain
import numpy as np

from transfer_jax.data.shuffle import EpochShuffle
from transfer_jax.data.sources import ArraySource, Subset, read_batch
from transfer_jax.errors import UserError


class _ProcessBlocks(grain.MapDataset):
  """Of each global batch of the parent stream, the rows that belong to one process."""

  def __init__(self, parent: grain.MapDataset, global_batch: int, process_index: int,
               process_count: int):
    super().__init__(parent)
    self._global, self._local = global_batch, global_batch // process_count
    self._offset = process_index * self._local

  def __len__(self) -> int:
    return len(self._parent) // self._global * self._local

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    return self._parent[self._parent_index(index)]

  def _getitems(self, indices):
    # A batch's rows in one call down the chain (grain's batch uses it): the per-row
    # __getitem__ path costs ~0.1 ms a row in grain's wrappers, more than a small model's step.
    return self._parent._getitems(self._parent_indices(indices))  # noqa: SLF001

  def take(self, indices: Any) -> np.ndarray:
    """The example indices at `indices`, as an int64 array (an EpochShuffle parent)."""
    return self._parent.take(self._parent_indices(indices))

  def _parent_indices(self, indices: Any) -> np.ndarray:
    batch, row = np.divmod(np.asarray(indices, np.int64), self._local)
    return batch * self._global + self._offset + row

  def _parent_index(self, index: int) -> int:
    batch, row = divmod(index, self._local)
    return batch * self._global + self._offset + row

  def __str__(self) -> str:
    return f'ProcessBlocks(local={self._local}, offset={self._offset})'


def stream_seed(seed: int, stream: int) -> int:
  """One grain seed per (run seed, stream): domains get independent orders under one seed."""
  return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def train_iterator(source: Any, batch_fn: Callable, global_batch_size: int, seed: int,
                   stream: int = 0, process_index: int = 0,
                   process_count: int = 1) -> grain.DatasetIterator:
  """Endless batches of `source`, reshuffled every epoch; deterministic in (seed, stream).

  The iterator's `get_state()` / `set_state()` are saved in checkpoints, so a resumed run
  continues with the same data order.
  """
  # grain shuffles and batches example *indices*; each batch is then read from the source in
  # one bulk call and preprocessed as a whole (vectorised), not example by example.
  dataset = _index_dataset(len(source), global_batch_size, seed, stream, process_index,
                           process_count)
  dataset = dataset.batch(global_batch_size // process_count, drop_remainder=True)
  dataset = dataset.map(functools.partial(_read_and_preprocess, source=source, batch_fn=batch_fn))
  return iter(dataset)


def _index_dataset(size: int, global_batch_size: int, seed: int, stream: int,
                   process_index: int, process_count: int) -> grain.MapDataset:
  """The example indices this process trains on, in order: batch j is rows j*b..(j+1)*b-1
  (b the local batch), every epoch a new permutation of range(size)."""
  if global_batch_size % process_count:
    raise UserError(f'global batch {global_batch_size} is not divisible by the '
                    f'{process_count} processes')
  if size == 0:
    raise UserError('cannot train on an empty split')
  # grain.MapDataset.range(size).shuffle(seed).repeat(None), element for element, an epoch at a
  # time (data/shuffle.py: grain computes its shuffle one index per call, ~26 us an index here).
  dataset = EpochShuffle(size, stream_seed(seed, stream))
  return _ProcessBlocks(dataset, global_batch_size, process_index, process_count)


class IndexOrder:
  """The example indices of `train_iterator`'s batches (same arguments, same order), without
  reading the examples: for runs that gather their batches themselves (`gather_batches`).

  An epoch of batches is computed in one call (data/shuffle.py: ~1-5 ms an epoch) and handed out
  batch by batch. `get_state()` / `set_state()` exchange states with `train_iterator`'s
  iterators (the number of batches handed out).
  """

  def __init__(self, size: int, global_batch_size: int, seed: int, stream: int = 0,
               process_index: int = 0, process_count: int = 1):
    self._dataset = _index_dataset(size, global_batch_size, seed, stream, process_index,
                                   process_count)
    self._local = global_batch_size // process_count
    self._chunk = -(-size // global_batch_size)   # Batches computed at once: about an epoch.
    self._next = 0                                # Batches handed out.
    self._cached_from, self._cached = 0, np.empty((0, self._local), np.int64)

  def next_indices(self) -> np.ndarray:
    """The local batch's example indices, (local batch,) int64."""
    offset = self._next - self._cached_from
    if not 0 <= offset < len(self._cached):
      self._cached = self._batches_from(self._next)
      self._cached_from, offset = self._next, 0
    self._next += 1
    return self._cached[offset]

  def _batches_from(self, first_batch: int) -> np.ndarray:
    first = first_batch * self._local
    rows = self._dataset.take(np.arange(first, first + self._chunk * self._local))
    return rows.reshape(self._chunk, self._local)

  def get_state(self) -> dict[str, int]:
    return {'next_index': self._next}

  def set_state(self, state: dict[str, Any]) -> None:
    if set(state) != {'next_index'}:
      raise UserError(f'cannot restore a data order from the iterator state {state}: it was '
                      'saved by another version of grain or of this code')
    self._next = int(state['next_index'])


def in_memory(source: Any) -> bool:
  """Whether `source` reads from arrays in memory (`gather_batches` can serve it)."""
  while isinstance(source, Subset):
    source = source.source
  return isinstance(source, ArraySource)


def gather_batches(source: Any, batch_fn: Callable, indices: np.ndarray) -> dict:
  """The batches of an in-memory `source` at `indices` (R, b) for R runs, read in one gather
  and preprocessed in one call (batch_fn acts row by row): arrays of shape (R, b, ...)."""
  runs, rows = indices.shape
  batch = batch_fn(read_batch(source, indices.reshape(-1)))
  return {key: value.reshape(runs, rows, *value.shape[1:]) for key, value in batch.items()}


def _read_and_preprocess(indices: np.ndarray, source: Any, batch_fn: Callable) -> dict:
  return batch_fn(read_batch(source, indices))


def eval_batches(source: Any, batch_fn: Callable, global_batch_size: int,
                 process_index: int = 0, process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """One pass over `source` in order; the last batch is zero-padded and `mask` marks real rows."""
  size = len(source)
  local = slice(process_index * global_batch_size // process_count,
                (process_index + 1) * global_batch_size // process_count)
  for start in range(0, size, global_batch_size):
    indices = np.arange(start, start + global_batch_size)[local]
    real = indices < size
    # Padding rows repeat example 0 (any real example keeps shapes and dtypes); `mask` drops them.
    batch = batch_fn(read_batch(source, np.where(real, indices, 0)))
    batch['mask'] = real
    yield batch
