"""What a run reads: its domains (target, source, tasks, and which label set the classifier
serves) and its endless training batches, one stream per batch the step takes (`TrainBatches`
for one run or for a vectorized group, `make_iterators` for grain iterators)."""

from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from transfer_jax import data as data_lib
from transfer_jax.data.pipeline import IndexOrder, gather_batches, in_memory
from transfer_jax.errors import UserError
from transfer_jax.objectives.methods import get_method


def load_domains(config: ml_collections.ConfigDict) -> dict[str, data_lib.Domain]:
  """The target domain, the source domain if anything uses it, and under 'labels' the domain
  whose label set the classifier serves."""
  method = get_method(config.method.name)
  # The classifier serves the source label set, unless only target labels train it (fine-tuning
  # to a new label set, e.g. CIFAR-10 -> CIFAR-100); then the source may differ or be unused.
  source_labels = (config.objective.source_weight > 0
                   or (method.uses_target and method.uses_source)
                   or config.regularizer.name == 'fisher_sp')
  source_used = source_labels or any(s.startswith('source/') for s in config.eval_splits)
  means = {}  # 'center' normalisation: each domain's training sample is read once.
  domains = {'target': data_lib.load_domain(config.data.target, config.data, 'target', means)}
  if source_used:
    domains['source'] = data_lib.load_domain(config.data.source, config.data, 'source', means)
    data_lib.check_compatible(domains['source'], domains['target'], same_label_set=source_labels)
  for name, task in config.tasks.items():
    # A task with head '' shares the main classifier: another source domain (multi-source).
    domain = data_lib.load_domain(task.domain, config.data, f'tasks.{name}.domain')
    data_lib.check_compatible(domain, domains['target'], same_label_set=not task.head)
    domains[f'task_{name}'] = domain
  for split_name in config.eval_splits:
    role, _, split = split_name.partition('/')
    if role in config.tasks:
      role = 'task_' + role
    if split == 'train':
      raise UserError(f"config.eval_splits names {split_name!r}: training metrics already use "
                      "that name; evaluate 'test', 'val', 'oracle_val' or 'labeled' splits")
    if role not in domains or split not in domains[role].splits:
      raise UserError(f'config.eval_splits names {split_name!r}, but the {role} domain has splits '
                      f'{sorted(domains[role].splits) if role in domains else "(none)"} (roles: '
                      'source, target and the names of config.tasks)')
  domains['labels'] = domains['source' if source_labels else 'target']
  return domains


# The data order of every stream a run reads (its seed offset from config.seed): the step's
# fixed streams, then the hooks' passes (transfer_jax.training.hooks); task streams follow.
STREAM_SEEDS = {'source': 0, 'target': 1, 'target_labeled': 2, 'fisher': 3, 'adabn': 4}


def stream_seed(stream: str) -> int:
  """The seed offset of a fixed stream or of a hook's pass (STREAM_SEEDS)."""
  return STREAM_SEEDS[stream]


def _stream_specs(streams: tuple[str, ...], domains: dict[str, data_lib.Domain]) -> dict:
  """Stream -> (domain role, split, labelled?, stream seed) for each stream the step uses."""
  specs = {  # stream -> (domain, split, labelled?); target labels only in target_labeled.
      'source': ('source', 'train', True),
      'target': ('target', 'train', False),
      'target_labeled': ('target', 'labeled', True),
  }
  task_names = [name for name in domains if name.startswith('task_')]
  specs.update({name: (name, 'train', True) for name in task_names})
  seeds = dict(STREAM_SEEDS)
  seeds.update({name: len(STREAM_SEEDS) + i for i, name in enumerate(task_names)})
  chosen = {}
  for stream in streams:
    role, split, labelled = specs[stream]
    if split not in domains[role].splits:
      raise UserError('config.objective.target_weight > 0 needs labelled target examples: set '
                      'config.data.target.labeled_per_class (k per class, or -1 for all)')
    chosen[stream] = (role, split, labelled, seeds[stream])
  return chosen


def make_iterators(streams: tuple[str, ...], domains: dict[str, data_lib.Domain],
                   config: ml_collections.ConfigDict, process: dict[str, int]) -> dict[str, Any]:
  """One endless grain iterator per stream the step uses (each with its own data order)."""
  iterators = {}
  for stream, (role, split, labelled, seed) in _stream_specs(streams, domains).items():
    batch_fn = domains[role].batch_fn if labelled else domains[role].unlabeled_fn
    iterators[stream] = data_lib.train_iterator(
        domains[role].splits[split], batch_fn, config.batch_size, config.seed,
        stream=seed, **process)
  return iterators


class TrainBatches:
  """The training batches of R runs (R = len(configs)), each run's data order exactly that of
  `make_iterators` for its config, so that a vectorized group trains on the batches its runs
  would read alone.

  A stream of an in-memory split is read once per step for all R runs: R index orders
  (`data.pipeline.IndexOrder`), one gather from the arrays and one preprocessing call. A
  streamed split keeps one grain iterator per run. `next()` gives {stream: {key: array}}, with
  a leading run axis when `stacked` (else R must be 1). Checkpoints hold each run's
  `get_state(run)`, the states of `make_iterators`' iterators.
  """

  def __init__(self, streams: tuple[str, ...], domains: dict[str, data_lib.Domain],
               configs: Sequence[ml_collections.ConfigDict], process: dict[str, int],
               stacked: bool):
    if not stacked and len(configs) != 1:
      raise ValueError('unstacked batches serve one run')
    self.stacked, self.count = stacked, len(configs)
    self._streams = {}   # stream -> (source, batch_fn, per-run orders or grain iterators).
    for stream, (role, split, labelled, seed) in _stream_specs(streams, domains).items():
      source = domains[role].splits[split]
      batch_fn = domains[role].batch_fn if labelled else domains[role].unlabeled_fn
      if in_memory(source):
        orders = [IndexOrder(len(source), c.batch_size, c.seed, seed, **process)
                  for c in configs]
      else:
        orders = [data_lib.train_iterator(source, batch_fn, c.batch_size, c.seed, stream=seed,
                                          **process) for c in configs]
      self._streams[stream] = (source, batch_fn, orders)

  def next(self) -> dict[str, dict[str, np.ndarray]]:
    batches = {}
    for stream, (source, batch_fn, orders) in self._streams.items():
      if isinstance(orders[0], IndexOrder):
        batch = gather_batches(source, batch_fn,
                                        np.stack([order.next_indices() for order in orders]))
        batches[stream] = batch if self.stacked else {k: v[0] for k, v in batch.items()}
      else:
        runs = [next(iterator) for iterator in orders]
        batches[stream] = ({k: np.stack([run[k] for run in runs]) for k in runs[0]}
                           if self.stacked else runs[0])
    return batches

  def get_state(self, run: int) -> dict[str, Any]:
    """Run `run`'s position in each stream (what `make_iterators`' iterators would save)."""
    return {stream: orders[run].get_state() for stream, (_, _, orders) in self._streams.items()}

  def set_state(self, run: int, states: dict[str, Any]) -> None:
    for stream, (_, _, orders) in self._streams.items():
      orders[run].set_state(states[stream])
