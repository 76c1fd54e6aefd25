"""Evaluation at an evaluation step: accuracy and loss on each of `config.eval_splits` (plus the
target oracle split when selection is on), and the label-free model-selection criteria (see
`transfer_jax.selection`): features and predictions on source validation, source training and
target training examples (a fixed random subset of each, `config.selection_examples`), never
target labels. The target is evaluated with the state the hooks give (AdaBN's)."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from transfer_jax import data as data_lib
from transfer_jax import selection
from transfer_jax.data.sources import Subset
from transfer_jax.errors import UserError
from transfer_jax.models import TransferModel
from transfer_jax.training import parallel
from transfer_jax.training.state import TrainState


def check(config: ml_collections.ConfigDict, domains: dict[str, Any]) -> None:
  if config.selection and ('source' not in domains or 'val' not in domains['source'].splits):
    raise UserError('config.selection needs held-out labelled source data: set '
                    'config.data.source.val_fraction (e.g. 0.1)')


def _subset(split: Any, size: int, seed: int) -> Any:
  if len(split) <= size:
    return split
  order = np.random.default_rng(seed).permutation(len(split))[:size]
  return Subset(split, np.sort(order))


class Evaluator:
  """The evaluation of one program's runs: `evaluate(state, config, hooks)` -> record."""

  def __init__(self, program, domains: dict[str, Any], mesh: Mesh, process: dict[str, int]):
    self.program, self.domains, self.mesh, self.process = program, domains, mesh, process
    replicated = parallel.replicated(mesh)
    shardings = (program.state_sharding, program.batch_sharding)
    self.eval_step = jax.jit(make_eval_step(program.model), in_shardings=shardings,
                             out_shardings=replicated, static_argnums=(2,))
    self.predict_step = jax.jit(make_predict_step(program.model), in_shardings=shardings,
                                out_shardings=replicated)

  def evaluate(self, state: TrainState, config: ml_collections.ConfigDict,
               hooks: list) -> dict[str, float]:
    domains, tasks = self.domains, config.tasks
    target_state = state
    for hook in hooks:
      target_state = hook.for_target(target_state, config)
    splits = list(config.eval_splits)
    if (config.selection and 'oracle_val' in domains['target'].splits
        and 'target/oracle_val' not in splits):
      splits.append('target/oracle_val')   # The selection tables' oracle (an upper bound).
    results = {}
    for split_name in splits:
      role, split = split_name.split('/')
      domain = domains[role if role in ('source', 'target') else f'task_{role}']
      head = tasks[role].head if role in tasks else ''
      totals = None
      for batch in data_lib.eval_batches(domain.splits[split], domain.batch_fn,
                                         config.eval_batch_size, **self.process):
        sums = self.eval_step(target_state if role == 'target' else state,
                              parallel.to_global(batch, self.mesh), head)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
      totals = jax.device_get(totals)
      results[f'{split_name}/accuracy'] = float(totals['correct'] / totals['count'])
      results[f'{split_name}/loss'] = float(totals['loss_sum'] / totals['count'])
    if config.selection:
      results.update(selection_record(self.predict_step, state, domains, config, self.mesh,
                                      self.process))
    return results


def make_eval_step(model: TransferModel) -> Callable:
  """Sums of loss, correct predictions and example count over the real (unpadded) rows, for the
  main classifier or the task head `head`."""

  def eval_step(state: TrainState, batch: dict[str, Any], head: str = '') -> dict[str, jnp.ndarray]:
    variables = {'params': state.params, **state.model_state}
    outputs = model.apply(variables, batch['input'], train=False)
    logits = outputs['logits']
    if head:
      logits = model.apply(variables, outputs['features'], head, method=TransferModel.task_logits)
    mask = batch['mask'].astype(jnp.float32)
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
    correct = (jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32)
    return {'loss_sum': jnp.sum(per_example * mask), 'correct': jnp.sum(correct * mask),
            'count': jnp.sum(mask)}

  return eval_step


def make_predict_step(model: TransferModel) -> Callable:
  """Features and logits in inference mode (with the batch's labels and padding mask)."""

  def predict_step(state: TrainState, batch: dict[str, Any]) -> dict[str, Any]:
    outputs = model.apply({'params': state.params, **state.model_state}, batch['input'])
    result = {'features': outputs['features'], 'logits': outputs['logits']}
    for key, name in (('label', 'labels'), ('mask', 'mask')):
      if key in batch:
        result[name] = batch[key]
    return result

  return predict_step


def _predict(predict_step, state, split, batch_fn, config, mesh, process) -> dict[str, np.ndarray]:
  """Features, logits (labels) of the real rows of `split`; outputs are replicated, so every
  process fetches the whole global batch."""
  parts = []
  for batch in data_lib.eval_batches(split, batch_fn, config.eval_batch_size, **process):
    outputs = predict_step(state, parallel.to_global(batch, mesh))
    parts.append({k: np.asarray(v.addressable_data(0)) for k, v in outputs.items()})
  return {key: np.concatenate([p[key][p['mask'].astype(bool)] for p in parts])
          for key in parts[0] if key != 'mask'}


def selection_record(predict_step: Callable, state, domains: dict[str, Any],
                     config: ml_collections.ConfigDict,
                     mesh: Mesh, process: dict[str, int]) -> dict[str, float]:
  size, seed = config.selection_examples, config.seed
  source, target = domains['source'], domains['target']
  source_val = _predict(predict_step, state, _subset(source.splits['val'], size, seed),
                        source.batch_fn, config, mesh, process)
  source_train = _predict(predict_step, state, _subset(source.splits['train'], size, seed + 1),
                          source.unlabeled_fn, config, mesh, process)
  target_train = _predict(predict_step, state, _subset(target.splits['train'], size, seed + 2),
                          target.unlabeled_fn, config, mesh, process)
  return selection.criteria(source_val, source_train['features'], target_train)
