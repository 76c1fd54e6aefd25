"""What the experiment scripts share: running one config in-process (finished runs are read
back, not rerun), mean ± std cells, and the commit a table was produced at."""

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(ROOT, '..', 'shared', 'datasets')


def runner(manual_dir: str):
  """A function (spec, workdir, overrides) -> summary that trains `configs/spec` in-process."""
  sys.path.insert(0, ROOT)
  from transfer_jax import config_lib
  from transfer_jax.training import runtime, train

  def run(spec: str, workdir: str, overrides: list[str]) -> dict:
    config = config_lib.load_config(os.path.join(ROOT, 'configs', spec),
                                    [f'data.manual_dir={manual_dir}', *overrides])
    runtime.setup(config)
    print(f'== {spec} {" ".join(overrides)} -> {workdir}', flush=True)
    return train.train_and_evaluate(config, workdir)

  return run


def cell(values: list[float]) -> str:
  """'mean ± std' of percentages, one decimal (population std over seeds)."""
  return f'{np.mean(values):.1f} ± {np.std(values):.1f}'


def git_commit() -> str:
  """The short commit of this tree ('+dirty' with uncommitted changes), as runs record it."""
  sys.path.insert(0, ROOT)
  from transfer_jax.training.workdir import git_commit as full_commit
  commit = full_commit() or '?'
  return commit[:7] + ('+dirty' if commit.endswith('+dirty') else '')


# Label-free selection criteria at every evaluation (transfer_jax/selection.py): 10 % of the
# source training data is held out as source validation, 10 % of the target training data as
# the labelled oracle_val split (an upper bound in the tables, never a rule).
SELECTION = {'selection': True, 'data.source.val_fraction': 0.1, 'data.target.val_fraction': 0.1}
# The target-supervised reference row: target labels only, no source, no selection.
TARGET_SUPERVISED = {'method.name': 'source_only', 'objective.source_weight': 0.0,
                     'objective.target_weight': 1.0, 'data.target.labeled_per_class': -1}


def da_runs(tasks: dict[str, str], methods: dict[str, dict], seeds=(0, 1, 2), steps: int = 500,
            evaluations: int = 5, supervised: dict | None = None):
  """The runs of a domain-adaptation table for a sweep file: every row of `methods` (row name ->
  {'method': name, **overrides}) on every task (label -> config arg) and seed, logging the
  selection criteria at `evaluations` evenly spaced steps; plus a 'target_supervised' row with
  the overrides `supervised` (None: no such row). Data is read from ../shared/datasets."""
  cadence = {'total_steps': steps, 'eval_every_steps': steps // evaluations,
             'checkpoint_every_steps': steps, 'log_every_steps': max(steps // 10, 1),
             'data.manual_dir': '../shared/datasets'}
  rows = dict(methods)
  if supervised is not None:
    rows['target_supervised'] = {'method': 'source_only', **TARGET_SUPERVISED, **supervised}
  for task, arg in tasks.items():
    for row, settings in rows.items():
      settings = dict(settings)
      method = settings.pop('method')
      extra = settings if row == 'target_supervised' else {**SELECTION, **settings}
      for seed in seeds:
        yield {'arg': f'{arg},method={method}',
               'overrides': {'seed': seed, **cadence, **extra},
               'labels': {'task': task, 'method': row, 'seed': seed}}
