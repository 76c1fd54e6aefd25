"""Label-free model-selection criteria at an evaluation step (see `transfer_jax.selection`):
features and predictions on source validation, source training and target training examples
(a fixed random subset of each, `config.selection_examples`), never target labels."""

from typing import Any

import ml_collections
import numpy as np
from jax.sharding import Mesh

from transfer_jax import data as data_lib
from transfer_jax import selection
from transfer_jax.data.sources import Subset
from transfer_jax.errors import UserError
from transfer_jax.training import parallel


def check(config: ml_collections.ConfigDict, domains: dict[str, Any]) -> None:
  if config.selection and ('source' not in domains or 'val' not in domains['source'].splits):
    raise UserError('config.selection needs held-out labelled source data: set '
                    'config.data.source.val_fraction (e.g. 0.1)')


def _subset(split: Any, size: int, seed: int) -> Any:
  if len(split) <= size:
    return split
  order = np.random.default_rng(seed).permutation(len(split))[:size]
  return Subset(split, np.sort(order))


def _predict(program, state, split, batch_fn, config, mesh, process) -> dict[str, np.ndarray]:
  """Features, logits (labels) of the real rows of `split`; outputs are replicated, so every
  process fetches the whole global batch."""
  parts = []
  for batch in data_lib.eval_batches(split, batch_fn, config.eval_batch_size, **process):
    outputs = program.predict_step(state, parallel.to_global(batch, mesh))
    parts.append({k: np.asarray(v.addressable_data(0)) for k, v in outputs.items()})
  return {key: np.concatenate([p[key][p['mask'].astype(bool)] for p in parts])
          for key in parts[0] if key != 'mask'}


def selection_record(program, state, domains: dict[str, Any], config: ml_collections.ConfigDict,
                     mesh: Mesh, process: dict[str, int]) -> dict[str, float]:
  size, seed = config.selection_examples, config.seed
  source, target = domains['source'], domains['target']
  source_val = _predict(program, state, _subset(source.splits['val'], size, seed),
                        source.batch_fn, config, mesh, process)
  source_train = _predict(program, state, _subset(source.splits['train'], size, seed + 1),
                          source.unlabeled_fn, config, mesh, process)
  target_train = _predict(program, state, _subset(target.splits['train'], size, seed + 2),
                          target.unlabeled_fn, config, mesh, process)
  return selection.criteria(source_val, source_train['features'], target_train)
