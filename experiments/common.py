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
