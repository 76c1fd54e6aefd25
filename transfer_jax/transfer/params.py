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


def flatten_variables(variables: Any) -> dict[str, np.ndarray]:
  """{'collection/module/.../leaf': array} of a Flax variables dict ({'params', 'batch_stats'})."""
  return {f'{collection}/{name}': np.asarray(leaf) for collection, tree in variables.items()
          for name, leaf in zip(param_names(tree), jax.tree.leaves(tree), strict=True)}


def save_flat(path: str, variables: Any) -> None:
  """Writes `variables` as an .npz that `config.init_from.path` loads."""
  np.savez(path, **flatten_variables(variables))


def count_params(params: Any) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def compile_regex(pattern: str, field: str):
  """`pattern` compiled (None if empty), or a one-line error naming the config field."""
  if not pattern:
    return None
  try:
    return re.compile(pattern)
  except re.error as e:
    raise UserError(f'config.{field}: {pattern!r} is not a valid regex: {e}') from None


def _key_name(key) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)
