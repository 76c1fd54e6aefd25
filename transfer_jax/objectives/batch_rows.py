"""The rows of a transfer term's batch: source rows first, then unlabelled target rows (the
layout of every term's `outputs`; see `methods`)."""

from typing import Any

import jax.numpy as jnp


def num_source(batch: dict[str, Any]) -> int:
  """How many of the rows are source rows (0 for a source-free method's batch)."""
  return batch['source']['label'].shape[0] if 'source' in batch else 0


def domain_labels(num_source: int, total: int) -> jnp.ndarray:
  """0 for source rows, 1 for target rows."""
  return jnp.concatenate([jnp.zeros(num_source), jnp.ones(total - num_source)])
