"""grain's epoch shuffle, a whole epoch at a time: the same permutations, computed in NumPy.

`grain.MapDataset.range(n).shuffle(seed).repeat(None)` gives the example at position j of
epoch e as `index_shuffle(j, max_index=n - 1, seed=(seed + e) % 2**32, rounds=4)`: a Simon-style
Feistel cipher on a block of B >= 16 bits (round keys from C++'s `std::seed_seq{seed}`),
cycle-walked until the value falls in [0, n). grain evaluates it one index per call, and on the
small splits of the digits, SURF and Amazon tables a call walks ~2^16 / n cipher steps: 26 us an
index at n = 1000, 81 us at n = 300 (measured here), more than a small model's training step.
`epoch_permutation` computes the same epoch with vectorised cipher rounds (the cipher applied
to the whole block once, the walk by pointer doubling) and caches it, so a run's data order
is unchanged (tests/test_pipeline.py compares it with grain's index by index) and costs ~1-3 ms an
epoch. The algorithm is grain's (grain/_src/python/experimental/index_shuffle/index_shuffle.cc),
written here from its description: C++'s seed_seq generation ([rand.util.seedseq]) and the Simon
round with 1, 8, 2 rotations.
"""

import functools
import math
import sys

import grain
import numpy as np

_MASK32 = 0xFFFFFFFF
_ROUNDS = 4           # grain's MapDataset.shuffle uses 4 rounds.
_MIN_BLOCK_BITS = 16  # grain's kMinBlockSize.


def seed_seq_keys(seed: int, count: int = _ROUNDS) -> list[int]:
  """`std::seed_seq{seed}.generate(...)` into `count` uint32 words (the cipher's round keys)."""
  n, s, values = count, 1, [seed & _MASK32]
  out = [0x8B8B8B8B] * n
  t = 11 if n >= 623 else 7 if n >= 68 else 5 if n >= 39 else 3 if n >= 7 else (n - 1) // 2
  p = (n - t) // 2
  q = p + t
  m = max(s + 1, n)

  def mix(x):
    return (x ^ (x >> 27)) & _MASK32

  for k in range(m):
    r1 = (1664525 * mix(out[k % n] ^ out[(k + p) % n] ^ out[(k - 1) % n])) & _MASK32
    r2 = (r1 + (s if k == 0 else (k % n + values[k - 1]) if k <= s else k % n)) & _MASK32
    out[(k + p) % n] = (out[(k + p) % n] + r1) & _MASK32
    out[(k + q) % n] = (out[(k + q) % n] + r2) & _MASK32
    out[k % n] = r2
  for k in range(m, m + n):
    r3 = (1566083941 * mix((out[k % n] + out[(k + p) % n] + out[(k - 1) % n]) & _MASK32)
          ) & _MASK32
    r4 = (r3 - k % n) & _MASK32
    out[(k + p) % n] ^= r3
    out[(k + q) % n] ^= r4
    out[k % n] = r4
  return out


def block_bits(max_index: int) -> int:
  """grain's block size for `max_index`: ceil(log2(max_index)) made even, at least 16."""
  bits = math.ceil(math.log2(max_index))
  return max(bits + bits % 2, _MIN_BLOCK_BITS)


def _dtype(word: int) -> type:
  """Blocks of up to 32 bits (every split under 2^32 examples) compute in uint32."""
  return np.uint32 if 2 * word <= 32 else np.uint64


def _half_dtype(word: int) -> type:
  """The narrowest unsigned type holding a half of `word` bits."""
  return next(kind for kind in (np.uint8, np.uint16, np.uint32) if word <= np.iinfo(kind).bits)


def encrypt(values: np.ndarray, keys: list[int], word: int) -> np.ndarray:
  """The cipher on unsigned `values` (of `_dtype(word)`): halves of `word` bits, two Feistel
  rounds per key pair. The halves are computed in the narrowest unsigned type that holds them:
  where it is exactly `word` bits wide (the usual 16-bit block in uint8) the rotations wrap by
  themselves and need no mask, a few times faster than masked uint32 arithmetic."""
  kind, half = values.dtype.type, _half_dtype(word)
  exact = np.iinfo(half).bits == word
  mask = half((1 << word) - 1)
  left_shift = [half(r) for r in range(word + 1)]

  def rotl(x, r):
    rotated = (x << left_shift[r]) | (x >> left_shift[word - r])
    return rotated if exact else rotated & mask

  def f(x):
    return (rotl(x, 1) & rotl(x, 8)) ^ rotl(x, 2)

  left = ((values >> kind(word)) & kind((1 << word) - 1)).astype(half)
  right = (values & kind((1 << word) - 1)).astype(half)
  for k1, k2 in zip(keys[::2], keys[1::2], strict=True):
    left ^= f(right) ^ half(k1 & ((1 << word) - 1))
    right ^= f(left) ^ half(k2 & ((1 << word) - 1))
  return (left.astype(kind) << kind(word)) | right.astype(kind)


@functools.lru_cache(maxsize=64)
def epoch_permutation(size: int, seed: int) -> np.ndarray:
  """[index_shuffle(j, size - 1, seed, 4) for j in range(size)], int64, read-only."""
  if size <= 0:
    raise ValueError(f'an epoch needs a positive size, got {size}')
  if size == 1:
    out = np.zeros(1, np.int64)
  else:
    max_index = size - 1
    word = block_bits(max_index) // 2
    keys = seed_seq_keys(seed % 2**32)
    kind = _dtype(word)
    values = encrypt(np.arange(size, dtype=kind), keys, word).astype(np.int64)
    if np.any(values > max_index):
      # The cycle walk by pointer doubling: jump[x] is the cipher of x outside [0, size) and x
      # itself inside (where a walk stops); squaring it until every start has stopped takes
      # log2 of the longest walk rounds over the block, not one round per step of that walk.
      # In int64 with np.take: numpy gathers with native indices (uint32 ones are converted on
      # every gather, twice the time).
      jump = encrypt(np.arange(1 << (2 * word), dtype=kind), keys, word).astype(np.int64)
      jump[:size] = np.arange(size)
      values = np.take(jump, values)
      while np.any(values > max_index):
        jump = np.take(jump, jump)
        values = np.take(jump, values)
    out = values
  out.flags.writeable = False
  return out


class EpochShuffle(grain.MapDataset):
  """`grain.MapDataset.range(size).shuffle(seed).repeat(None)`, element for element: position i
  is epoch i // size's permutation at i % size (that epoch's seed is seed + epoch, as grain
  reseeds each epoch), computed an epoch at a time by `epoch_permutation`."""

  def __init__(self, size: int, seed: int):
    super().__init__()
    if not 0 <= seed < 2**32:
      raise ValueError(f'a shuffle seed must be in [0, 2**32), got {seed}')
    self._size, self._seed = int(size), int(seed)

  def __len__(self) -> int:
    return sys.maxsize if self._size else 0

  def __str__(self) -> str:
    return f'EpochShuffle(size={self._size}, seed={self._seed})'

  def _permutation(self, epoch: int) -> np.ndarray:
    return epoch_permutation(self._size, (self._seed + epoch) % 2**32)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    epoch, row = divmod(int(index), self._size)
    return int(self._permutation(epoch)[row])

  def _getitems(self, indices):
    return list(self.take(np.asarray(indices, np.int64)))

  def take(self, indices: np.ndarray) -> np.ndarray:
    """The elements at int64 `indices` (any shape), as an int64 array."""
    epochs, rows = np.divmod(indices, self._size)
    first = int(epochs.min()) if epochs.size else 0
    if epochs.size and first == int(epochs.max()):   # The usual case: one epoch.
      return self._permutation(first)[rows]
    out = np.empty(indices.shape, np.int64)
    for epoch in np.unique(epochs):
      where = epochs == epoch
      out[where] = self._permutation(int(epoch))[rows[where]]
    return out
