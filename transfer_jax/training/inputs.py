"""What a run reads: its domains (target, source, tasks, and which label set the classifier
serves) and one endless grain iterator per batch stream of the step."""

from typing import Any

import ml_collections

from transfer_jax import data as data_lib
from transfer_jax.errors import UserError
from transfer_jax.objectives.methods import get_method
from transfer_jax.training.step import STREAMS


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
  domains = {'target': data_lib.load_domain(config.data.target, config.data, 'target')}
  if source_used:
    domains['source'] = data_lib.load_domain(config.data.source, config.data, 'source')
    data_lib.check_compatible(domains['source'], domains['target'], same_label_set=source_labels)
  for name, task in config.get('tasks', {}).items():
    # A task with head '' shares the main classifier: another source domain (multi-source).
    domain = data_lib.load_domain(task.domain, config.data, f'tasks.{name}.domain')
    data_lib.check_compatible(domain, domains['target'], same_label_set=not task.head)
    domains[f'task_{name}'] = domain
  for split_name in config.eval_splits:
    role, _, split = split_name.partition('/')
    if role in config.get('tasks', {}):
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


def make_iterators(streams: tuple[str, ...], domains: dict[str, data_lib.Domain],
                   config: ml_collections.ConfigDict, process: dict[str, int]) -> dict[str, Any]:
  """One endless grain iterator per stream the step uses (each with its own data order)."""
  specs = {  # stream -> (domain, split, labelled?); target labels only in target_labeled.
      'source': ('source', 'train', True),
      'target': ('target', 'train', False),
      'target_labeled': ('target', 'labeled', True),
  }
  task_names = [name for name in domains if name.startswith('task_')]
  specs.update({name: (name, 'train', True) for name in task_names})
  seeds = {name: i for i, name in enumerate(STREAMS)}   # Fisher and AdaBN take the next two.
  seeds.update({name: len(STREAMS) + 2 + i for i, name in enumerate(task_names)})
  iterators = {}
  for stream in streams:
    role, split, labelled = specs[stream]
    batch_fn = domains[role].batch_fn if labelled else domains[role].unlabeled_fn
    if split not in domains[role].splits:
      raise UserError('config.objective.target_weight > 0 needs labelled target examples: set '
                      'config.data.target.labeled_per_class (k per class, or -1 for all)')
    iterators[stream] = data_lib.train_iterator(
        domains[role].splits[split], batch_fn, config.batch_size, config.seed,
        stream=seeds[stream], **process)
  return iterators
