"""Sweep: DANN's trade-off lambda on Office-Caltech10 SURF A -> W, 3 seeds (a sweep file example).

  transfer-jax sweep experiments/sweep_surf_dann_lambda.py [--executor=process --parallel=2]
      [--only seed=0]
  transfer-jax report experiments/sweep_surf_dann_lambda.py   # runs/sweep_surf_dann_lambda/*.md
Runs land in runs/sweep_surf_dann_lambda/, named by their labels; a rerun skips the finished ones.
"""

from transfer_jax.sweep import grid

CONFIG = 'configs/office_caltech_surf.py'
TABLE = {'rows': 'trade_off', 'columns': 'task', 'seed': 'seed',
         'title': 'DANN trade-off on SURF A→W'}


def runs():
  for point in grid(trade_off=[0.1, 0.3, 1.0], seed=[0, 1, 2]):
    yield {'arg': 'source=A,target=W,method=dann',
           'overrides': {'seed': point['seed'], 'method.trade_off': point['trade_off'],
                         'total_steps': 500, 'data.manual_dir': '../shared/datasets'},
           'labels': {'task': 'A→W', 'trade_off': point['trade_off'], 'seed': point['seed']}}
