"""T1 / T3 / T4: the feature-alignment methods on digits, Amazon reviews and Office-Caltech SURF.

  python -m experiments.feature_transfer --table t1 [--seeds 0,1,2] [--steps N]
  python -m experiments.feature_transfer --table t3
  python -m experiments.feature_transfer --table t4
  python -m experiments.feature_transfer --table t4_multi    # three SURF domains -> the fourth

Runs every method of the table on every task and seed (in-process; finished runs are read back,
not rerun), plus a target-supervised row (target labels, no source: an upper reference), and
writes experiments/TABLE.md: target test accuracy (%) at the last step, mean ± std over seeds,
a column per task and the average, with the anchors from the literature. Selection rule: none,
the last step (no checkpoint is chosen, so the target test set selects nothing). Method
hyperparameters are the configs' and the papers' defaults (config_lib.METHOD_DEFAULTS), fixed
before any run, not tuned on target data.
"""

import argparse
import os

import numpy as np

from experiments.common import ROOT, SHARED_DATA, cell, git_commit, runner

AMAZON = {'B': 'books', 'D': 'dvd', 'E': 'electronics', 'K': 'kitchen'}
# Extra rows: a method with other settings (row name -> method, overrides).
VARIANTS = {'dan_ramp': ('dan', ['method.trade_off_schedule=dann'])}
SUPERVISED = ['method.name=source_only', 'objective.source_weight=0.0',
              'objective.target_weight=1.0', 'data.target.labeled_per_class=-1']


def _pairs(letters):
  return [(s, t) for s in letters for t in letters if s != t]


TABLES = {
    't1': dict(
        title='T1 digits: MNIST <-> USPS, full training splits, the DANN paper LeNet',
        config='mnist_usps.py', steps=5000,
        tasks={'M→U': 'protocol=full', 'U→M': 'protocol=full,reverse'},
        methods=('source_only', 'dann', 'cdan', 'dan', 'coral', 'mcc', 'mdd'),
        supervised_extra=[],
        anchors=[
            '| anchor | M→U | U→M |', '|---|---|---|',
            '| TLlib source-only / DANN / DAN / CDAN / MCC / MDD (LeNet, 50k iterations, best '
            'epoch on target test) | 82.1 / 91.7 / 86.0 / 96.0 / 95.1 / 94.8 | '
            '74.6 / 95.2 / 89.5 / 97.7 / 94.6 / 97.8 |',
            '| skada-bench source-only / DANN / DeepCORAL / DAN / MCC / MDD (small CNN, 10 '
            'epochs, supervised scorer) | 94.2 / 92.6 / 97.1 / 95.0 / 98.2 / 92.0 | '
            '73.4 / 86.8 / 89.9 / 86.3 / 90.4 / 76.2 |']),
    't3': dict(
        title='T3 Amazon reviews: 12 pairs, the DANN paper setting (5000-d, one hidden layer)',
        config='amazon_reviews.py', steps=1000,
        tasks={f'{s}→{t}': f'source={AMAZON[s]},target={AMAZON[t]}' for s, t in _pairs('BDEK')},
        methods=('source_only', 'dann', 'dan', 'coral'),
        supervised_extra=[],
        anchors=[
            '| DANN paper, Table 1 | B→D | B→E | B→K | D→B | D→E | D→K | E→B | E→D | E→K | '
            'K→B | K→D | K→E | avg |', '|---|' + '---|' * 13,
            '| NN | 79.0 | 74.7 | 77.8 | 72.0 | 73.2 | 77.8 | 70.9 | 73.3 | 85.4 | 70.8 | '
            '73.9 | 84.1 | 76.1 |',
            '| DANN | 78.4 | 73.3 | 77.9 | 72.3 | 75.4 | 78.3 | 71.3 | 73.8 | 85.4 | 70.9 | '
            '74.0 | 84.3 | 76.3 |']),
    't4': dict(
        title='T4 Office-Caltech10 SURF (800-d), 12 pairs, transductive (all target images)',
        config='office_caltech_surf.py', steps=500,
        tasks={f'{s}→{t}': f'source={s},target={t}' for s, t in _pairs('ACDW')},
        methods=('source_only', 'dann', 'cdan', 'cdan_e', 'dan', 'jan', 'coral', 'mcc', 'mdd',
                 'afn', 'fixmatch', 'residual_fusion', 'shot'),
        # The target is evaluated on a held-out 20 % here: the other rows see all its images.
        supervised_extra=['data.target.test_split=holdout'],
        anchors=[
            '| anchor (12-task average) | avg |', '|---|---|',
            '| no adaptation, linear SVM (Sun et al. 2016, Table 3) | 41.1 |',
            '| CORAL, linear SVM (Sun et al. 2016, Table 3) | 48.8 |',
            '| JDA, 1-NN (Long et al. 2013) | 46.3 |']),
    't4_multi': dict(
        title='Office-Caltech10 SURF, multi-source: three domains into the fourth',
        config='office_caltech_surf.py', steps=500,
        tasks={f'{"".join(s for s in "ACDW" if s != t)}→{t}':
               f'source={"".join(s for s in "ACDW" if s != t)},target={t}' for t in 'ACDW'},
        methods=('source_only', 'dann', 'dan', 'coral', 'mcc'),
        supervised_extra=None,   # No target-supervised row: the sources would still train.
        anchors=['Single-source rows of the same methods: experiments/t4_office_caltech_surf.md '
                 '(each target there has three single-source tasks).']),
}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--table', choices=sorted(TABLES), required=True)
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--steps', type=int, default=0, help='0: the table default')
  parser.add_argument('--methods', default='', help='comma-separated subset (default: all); '
                      f'also the variants {sorted(VARIANTS)}')
  parser.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'feature_transfer'))
  parser.add_argument('--manual_dir', default=SHARED_DATA)
  parser.add_argument('--output', default='', help='default: experiments/TABLE_NAME.md')
  args = parser.parse_args()
  table = TABLES[args.table]
  steps = args.steps or table['steps']
  seeds = [int(s) for s in args.seeds.split(',')]
  methods = args.methods.split(',') if args.methods else list(table['methods'])
  if 'shot' in methods and 'source_only' not in methods:
    methods.insert(0, 'source_only')   # SHOT adapts the source-only model of its task and seed.
  run = runner(args.manual_dir)
  cadence = [f'total_steps={steps}', f'eval_every_steps={steps}',
             f'checkpoint_every_steps={steps}', f'log_every_steps={max(steps // 10, 1)}']
  rows = methods + (['target_supervised'] if table['supervised_extra'] is not None else [])
  results = {}
  for task, task_arg in table['tasks'].items():
    for seed in seeds:
      for method in rows:
        workdir = os.path.join(args.workdir, args.table, task.replace('→', '2'), method,
                               f'seed{seed}')
        overrides = [f'seed={seed}', *cadence]
        spec_method = 'source_only' if method == 'target_supervised' else method
        if method in VARIANTS:
          spec_method = VARIANTS[method][0]
          overrides += VARIANTS[method][1]
        if method == 'target_supervised':
          overrides += SUPERVISED + table['supervised_extra']
        if method == 'shot':
          overrides.append('init_from.path=' + os.path.join(
              args.workdir, args.table, task.replace('→', '2'), 'source_only', f'seed{seed}'))
        summary = run(f'{table["config"]}:{task_arg},method={spec_method}', workdir, overrides)
        results[method, task, seed] = summary

  tasks = list(table['tasks'])
  lines = [f'# {table["title"]}', '',
           f'Target test accuracy (%) at the last step ({steps} steps), mean ± std over seeds '
           f'{args.seeds}. Selection rule: none (the last step).'
           + ''.join(f' {name} = {VARIANTS[name][0]} with {" ".join(VARIANTS[name][1])}.'
                     for name in rows if name in VARIANTS)
           + (' target_supervised trains on target labels only (no source), an upper reference.'
              if 'target_supervised' in rows else ''), '',
           '| method | ' + ' | '.join(tasks) + ' | avg |', '|---|' + '---|' * (len(tasks) + 1)]
  for method in rows:
    per_task = {task: [100 * results[method, task, s]['final']['target/test/accuracy']
                       for s in seeds] for task in tasks}
    average = [np.mean([per_task[task][i] for task in tasks]) for i in range(len(seeds))]
    cells = [cell(per_task[task]) for task in tasks] + [cell(average)]
    lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
  wall = np.mean([r['wall_s'] for r in results.values()])
  lines += ['', f'Mean wall time per run: {wall:.0f} s (2 CPU cores).', '', 'Anchors:', '',
            *table['anchors'], '',
            f'Commit {git_commit()}; command: `python -m experiments.feature_transfer --table '
            f'{args.table} --seeds {args.seeds}' + (f' --steps {steps}' if args.steps else '')
            + (f' --methods {args.methods}' if args.methods else '') + '`. Configs: '
            f'configs/{table["config"]}; method settings: transfer_jax/config_lib.py.']
  output = args.output or os.path.join(
      ROOT, 'experiments', f'{args.table.split("_")[0]}_{table["config"].removesuffix(".py")}'
      + ('_multi_source' if args.table.endswith('_multi') else '') + '.md')
  with open(output, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
