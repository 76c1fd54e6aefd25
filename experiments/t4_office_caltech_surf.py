"""T4 sweep: Office-Caltech10 SURF, 12 pairs, transductive, 3 seeds, selection rules side by side.

  python -m transfer_jax.sweep experiments/t4_office_caltech_surf.py
  python -m transfer_jax.report experiments/t4_office_caltech_surf.py --publish

Every method of the table on every pair and seed (500 steps, the criteria of
transfer_jax/selection.py logged every 100 steps), plus target-supervised on a held-out 20 % of
the target (the other rows are evaluated on all target images: the transductive protocol).
Method hyperparameters are the papers' defaults (config_lib.METHOD_DEFAULTS), fixed before any
run.
"""

from experiments.common import da_runs

CONFIG = 'configs/office_caltech_surf.py'
TASKS = {f'{s}→{t}': f'source={s},target={t}' for s in 'ACDW' for t in 'ACDW' if s != t}
METHODS = {name: {'method': name}
           for name in ('source_only', 'dann', 'cdan', 'dan', 'coral', 'mcc', 'mdd')}
TABLE = {'rows': 'method', 'columns': 'task', 'seed': 'seed', 'selection': True,
         'title': 'T4 Office-Caltech10 SURF (800-d), 12 pairs, transductive, 500 steps',
         'notes': [
             'Anchors (12-task average): no adaptation, linear SVM 41.1 and CORAL, linear SVM '
             '48.8 (Sun et al. 2016, Table 3); JDA, 1-NN 46.3 (Long et al. 2013).',
             'target_supervised trains on target labels only and is tested on a held-out 20 % '
             'of the target: an upper reference, not a method.']}


def runs():
  yield from da_runs(TASKS, METHODS, steps=500,
                     supervised={'data.target.test_split': 'holdout'})
