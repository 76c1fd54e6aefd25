"""Multi-source Office-Caltech10 SURF sweep: three domains into the fourth, 3 seeds, selection
rules side by side.

  python -m transfer_jax.sweep experiments/t4_office_caltech_surf_multi_source.py --vectorize 3
  python -m transfer_jax.report experiments/t4_office_caltech_surf_multi_source.py --publish

`source=ACD,target=W`: the first source letter is config.data.source, the others are
config.tasks sharing the main classifier (one batch per source domain per step; the alignment
terms see every source row against the target). 500 steps, the criteria logged every 100.
"""

from experiments.common import da_runs

CONFIG = 'configs/office_caltech_surf.py'
TASKS = {f'{"".join(s for s in "ACDW" if s != t)}→{t}':
         f'source={"".join(s for s in "ACDW" if s != t)},target={t}' for t in 'ACDW'}
METHODS = {name: {'method': name} for name in ('source_only', 'dann', 'dan', 'coral', 'mcc')}
TABLE = {'rows': 'method', 'columns': 'task', 'seed': 'seed', 'selection': True,
         'title': 'Office-Caltech10 SURF, multi-source: three domains into the fourth, 500 steps',
         'notes': ['Single-source rows of the same methods: experiments/t4_office_caltech_surf.md '
                   '(each target there has three single-source tasks). Only the first source '
                   'domain holds out source validation data (data.source.val_fraction).']}


def runs():
  yield from da_runs(TASKS, METHODS, steps=500)
