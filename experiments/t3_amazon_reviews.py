"""T3 sweep: Amazon reviews, the DANN paper's 12 pairs (5000-d, one hidden layer of 100), 3 seeds,
selection rules side by side.

  python -m transfer_jax.sweep experiments/t3_amazon_reviews.py --vectorize 3
  python -m transfer_jax.report experiments/t3_amazon_reviews.py --publish

1000 steps, the selection criteria logged every 200 steps; dan_ramp is DAN with the DANN ramp
on its trade-off (see the note in TABLE).
Method hyperparameters are the papers' defaults (config_lib.METHOD_DEFAULTS), fixed before any
run.
"""

from experiments.common import da_runs

CONFIG = 'configs/amazon_reviews.py'
AMAZON = {'B': 'books', 'D': 'dvd', 'E': 'electronics', 'K': 'kitchen'}
TASKS = {f'{s}→{t}': f'source={AMAZON[s]},target={AMAZON[t]}'
         for s in AMAZON for t in AMAZON if s != t}
METHODS = {'source_only': {'method': 'source_only'}, 'dann': {'method': 'dann'},
           'dan_ramp': {'method': 'dan', 'method.trade_off_schedule': 'dann'},
           'coral': {'method': 'coral'}, 'mcc': {'method': 'mcc'}}
TABLE = {'rows': 'method', 'columns': 'task', 'seed': 'seed', 'selection': True,
         'title': 'T3 Amazon reviews, 12 pairs, 1000 steps',
         'notes': [
             'Anchor (Ganin et al. 2016, Table 1, 12-pair average): NN 76.1, DANN 76.3; per pair '
             'NN / DANN: B→D 79.0/78.4, B→E 74.7/73.3, B→K 77.8/77.9, D→B 72.0/72.3, D→E '
             '73.2/75.4, D→K 77.8/78.3, E→B 70.9/71.3, E→D 73.3/73.8, E→K 85.4/85.4, K→B '
             '70.8/70.9, K→D 73.9/74.0, K→E 84.1/84.3 (their selection: reverse validation).',
             'dan_ramp = DAN with method.trade_off_schedule=dann. With a constant lambda = 1 DAN '
             'collapsed on every pair (50.7 % average, commit fe2171e): the MMD gradient of the '
             'first steps killed the hidden ReLUs (source training accuracy 50 % from step 100).',
             'target_supervised trains on the target training reviews with their labels: an '
             'upper reference, not a method.']}


def runs():
  yield from da_runs(TASKS, METHODS, steps=1000, supervised={})
