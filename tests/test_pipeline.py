"""The in-memory pipeline: determinism, resumable state, process slicing, exact padding."""

import numpy as np
import pytest

from transfer_jax.data import ShuffledBatches, padded_batches


def _arrays(n=10):
  return {'image': np.arange(n, dtype=np.float32)[:, None], 'label': np.arange(n)}


def _draw(iterator, k):
  return np.concatenate([next(iterator)['label'] for _ in range(k)])


def test_same_seed_same_order_and_every_epoch_is_a_permutation():
  a = _draw(ShuffledBatches(_arrays(), 4, seed=1), 10)
  b = _draw(ShuffledBatches(_arrays(), 4, seed=1), 10)
  np.testing.assert_array_equal(a, b)
  for epoch in range(4):
    assert sorted(a[epoch * 10:(epoch + 1) * 10]) == list(range(10))
  assert not np.array_equal(a, _draw(ShuffledBatches(_arrays(), 4, seed=2), 10))
  assert not np.array_equal(a, _draw(ShuffledBatches(_arrays(), 4, seed=1, stream=1), 10))


def test_state_restores_the_same_continuation():
  it = ShuffledBatches(_arrays(), 4, seed=3)
  _draw(it, 3)
  state = it.get_state()
  expected = _draw(it, 5)
  resumed = ShuffledBatches(_arrays(), 4, seed=3)
  resumed.set_state(state)
  np.testing.assert_array_equal(_draw(resumed, 5), expected)


def test_process_slices_tile_the_global_batch():
  whole = _draw(ShuffledBatches(_arrays(), 8, seed=0), 3)
  parts = [next(ShuffledBatches(_arrays(), 8, seed=0, process_index=p, process_count=2))['label']
           for p in range(2)]
  np.testing.assert_array_equal(np.concatenate(parts), whole[:8])


def test_padded_batches_cover_the_split_exactly_once():
  batches = list(padded_batches(_arrays(10), 4))
  assert [b['mask'].sum() for b in batches] == [4, 4, 2]
  labels = np.concatenate([b['label'][b['mask']] for b in batches])
  np.testing.assert_array_equal(labels, np.arange(10))
  assert all(b['image'].shape == (4, 1) for b in batches)


def test_batch_not_divisible_by_processes_is_rejected():
  with pytest.raises(ValueError, match='not divisible by the 3 processes'):
    ShuffledBatches(_arrays(), 4, seed=0, process_count=3)
