"""T1 at skada-bench's protocol: MNIST <-> USPS with USPS padded to 28×28, PyTorch's MNIST-example
CNN and skada-bench's recipe (configs/mnist_usps_skada.py), every selection rule side by side.

  python -m transfer_jax.sweep experiments/t1_mnist_usps_skada.py
  python -m transfer_jax.report experiments/t1_mnist_usps_skada.py

skada-bench's 10 epochs in steps (the config's `steps_for`): 1870 steps of 256 + 256 images for
the DA methods on both tasks; source-only trains the source's own epochs (1870 on M→U, 220 on
U→M), target-supervised the target's (220 on M→U, 1870 on U→M). An evaluation every epoch (10 per
run). skada-bench reports one run per shift: every row at seed 0, SEEDED_ROWS also at seeds 1, 2.
Method settings are the config's METHOD_SETTINGS, fixed before any run.
"""

from experiments.common import da_runs
from transfer_jax import config_lib

CONFIG = 'configs/mnist_usps_skada.py'
TASKS = {'M→U': '', 'U→M': 'reverse'}
REVERSE = {'M→U': 'reverse', 'U→M': ''}   # The task whose source is this task's target.
ROWS = ('source_only', 'dann', 'coral', 'dan', 'mcc', 'mdd', 'target_supervised')
SEEDED_ROWS = ('source_only', 'dann', 'mcc')  # Also at seeds 1 and 2 (trained last).
EVALUATIONS = 10                               # One per epoch.
TABLE = {'rows': 'method', 'columns': 'task', 'seed': 'seed', 'selection': True,
         'title': "T1 at skada-bench's protocol: MNIST ↔ USPS, the MNIST-example CNN, 10 epochs",
         'notes': [
             'Anchors (skada-bench v1, M→U / U→M, one run per shift, its "supervised" scorer, '
             'which reads target labels: compare with `oracle`): source-only 94.2 / 73.4, DANN '
             '92.6 / 86.8, DeepCORAL 97.1 / 89.9, DAN 95.0 / 86.3, MCC 98.2 / 90.4, MDD 92.0 / '
             '76.2.',
             'skada-bench with label-free scorers: DANN IWV 93.5 / 85.2, SND 95.2 / 86.1, DEV '
             '93.6 / 87.0; MCC IWV 96.8 / 87.5; MDD SND 25.6 / 15.3 (the scorer collapses).',
             'skada-bench picks each method\'s `reg` (and MCC\'s T, MDD\'s gamma) from a grid by '
             'its scorer on an inner split; these runs fix one value per method in advance '
             '(the config\'s METHOD_SETTINGS).',
             'Protocol differences: our own 80/20 holdout draw of each training split; 10 % of '
             'the rest held out (source validation, target oracle split); no dropout in DANN\'s '
             'discriminator; DAN\'s kernel bandwidths are ours.',
             'target_supervised trains on the target\'s training labels alone (skada-bench\'s '
             'TargetOnly): an upper reference.']}


def _steps(task: str, row: str) -> int:
  """The config's total_steps for the row; target-supervised trains the target's own epochs,
  which are the source-only epochs of the reverse task."""
  if row == 'target_supervised':
    return config_lib.load_config(f'{CONFIG}:{REVERSE[task]},method=source_only').total_steps
  return config_lib.load_config(f'{CONFIG}:{TASKS[task]},method={row}').total_steps


def _row_runs(row, seeds):
  for task, arg in TASKS.items():
    steps = _steps(task, row)
    if row == 'target_supervised':
      yield from da_runs({task: arg}, {}, seeds=seeds, steps=steps, evaluations=EVALUATIONS,
                         supervised={})
    else:
      yield from da_runs({task: arg}, {row: {'method': row}}, seeds=seeds, steps=steps,
                         evaluations=EVALUATIONS)


def runs():
  for row in ROWS:             # Every row at seed 0 first, then the seeded rows' other seeds.
    yield from _row_runs(row, (0,))
  for row in SEEDED_ROWS:
    yield from _row_runs(row, (1, 2))
