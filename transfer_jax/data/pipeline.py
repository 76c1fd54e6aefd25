"""In-memory input pipeline: infinite shuffled training batches and padded evaluation batches.

Batches are global: every process computes the same global index list and keeps its own
contiguous slice (rows [p * B / P, (p + 1) * B / P) for process p of P), which is how
`jax.make_array_from_process_local_data` assembles a batch sharded over a 1-D data mesh.
"""

from collections.abc import Iterator, Mapping

import numpy as np

from transfer_jax.errors import UserError

Arrays = Mapping[str, np.ndarray]


class ShuffledBatches:
  """Endless batches of one split, reshuffled each epoch; deterministic in (seed, stream, position).

  The state is the number of examples drawn so far, so `get_state`/`set_state` make a resumed
  run continue with exactly the same data order.
  """

  def __init__(self, arrays: Arrays, global_batch_size: int, seed: int, stream: int = 0,
               process_index: int = 0, process_count: int = 1):
    self._arrays = dict(arrays)
    self._size = len(next(iter(self._arrays.values())))
    if any(len(a) != self._size for a in self._arrays.values()):
      raise UserError('all arrays of a split must have the same number of examples')
    if global_batch_size % process_count:
      raise UserError(f'global batch {global_batch_size} is not divisible by the '
                       f'{process_count} processes')
    self._batch = global_batch_size
    self._seed = (seed, stream)  # `stream` separates the orders of domains under one seed.
    self._local = slice(process_index * global_batch_size // process_count,
                        (process_index + 1) * global_batch_size // process_count)
    self._position = 0
    self._cached_epoch, self._cached_order = -1, None

  def _order(self, epoch: int) -> np.ndarray:
    if epoch != self._cached_epoch:
      self._cached_epoch = epoch
      self._cached_order = np.random.default_rng([*self._seed, epoch]).permutation(self._size)
    return self._cached_order

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    positions = np.arange(self._position, self._position + self._batch)[self._local]
    self._position += self._batch
    epochs, offsets = np.divmod(positions, self._size)
    indices = np.empty_like(positions)
    for epoch in np.unique(epochs):
      rows = epochs == epoch
      indices[rows] = self._order(int(epoch))[offsets[rows]]
    return {name: array[indices] for name, array in self._arrays.items()}

  def get_state(self) -> dict[str, int]:
    return {'position': self._position}

  def set_state(self, state: Mapping[str, int]) -> None:
    self._position = int(state['position'])


def padded_batches(arrays: Arrays, global_batch_size: int, process_index: int = 0,
                   process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """One pass over a split in order; the last batch is padded and `mask` marks real rows."""
  size = len(next(iter(arrays.values())))
  local = slice(process_index * global_batch_size // process_count,
                (process_index + 1) * global_batch_size // process_count)
  for start in range(0, size, global_batch_size):
    stop = min(start + global_batch_size, size)
    batch = {}
    for name, array in arrays.items():
      chunk = array[start:stop]
      if stop - start < global_batch_size:
        pad = np.zeros((global_batch_size - (stop - start),) + array.shape[1:], array.dtype)
        chunk = np.concatenate([chunk, pad])
      batch[name] = chunk[local]
    mask = np.arange(start, start + global_batch_size) < size
    batch['mask'] = mask[local]
    yield batch
