"""Operations on parameter pytrees: names, counts and regex-selected subsets (used to freeze)."""

import re
from typing import Any

import jax
import numpy as np

from transfer_jax.errors import UserError


def param_names(params: Any) -> list[str]:
  """'/'-joined path of every leaf, e.g. 'backbone/conv1/kernel', in tree order."""
  return ['/'.join(_key_name(k) for k in path)
          for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def count_params(params: Any) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def regex_labels(params: Any, pattern: str, matched: str, unmatched: str) -> Any:
  """A pytree like `params` holding `matched` where the leaf's path fully matches `pattern`."""
  if not pattern:
    return jax.tree.map(lambda _: unmatched, params)
  try:
    regex = re.compile(pattern)
  except re.error as e:
    raise UserError(f'invalid parameter regex {pattern!r}: {e}') from None
  names = param_names(params)
  if not any(regex.fullmatch(n) for n in names):
    raise UserError(f'parameter regex {pattern!r} matches no parameter; names look like '
                     f'{names[:3]}')
  labels = [matched if regex.fullmatch(n) else unmatched for n in names]
  return jax.tree.unflatten(jax.tree.structure(params), labels)


def _key_name(key) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)
