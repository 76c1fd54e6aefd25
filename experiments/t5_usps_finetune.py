"""T5: an MNIST-pretrained LeNet transferred to USPS with 10, 50 and all labels per class.

  python -m experiments.t5_usps_finetune [--seeds 0,1,2] [--workdir runs/t5] \
      [--manual_dir ../shared/datasets]

Pretrains once (configs/mnist_usps.py:method=source_only, seed 0, full MNIST), then runs every
recipe of configs/usps_finetune.py for each label budget and seed, and writes
experiments/t5_usps_finetune.md: USPS test accuracy at the last step (mean ± std over seeds),
wall time per run and trainable parameters. Finished runs are read back, not rerun.
"""

import argparse
import os

import numpy as np

from experiments.common import ROOT, SHARED_DATA, git_commit, runner

RECIPES = ('scratch', 'finetune', 'head_only', 'lp_ft', 'l2', 'l2_sp', 'fisher_sp')
LABELS = (10, 50, -1)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 't5'))
  parser.add_argument('--manual_dir', default=SHARED_DATA)
  parser.add_argument('--output', default=os.path.join(ROOT, 'experiments', 't5_usps_finetune.md'))
  args = parser.parse_args()
  run = runner(args.manual_dir)

  pretrain_dir = os.path.join(args.workdir, 'pretrain_mnist')
  pretrain = run('mnist_usps.py:method=source_only', pretrain_dir, [])
  seeds = [int(s) for s in args.seeds.split(',')]
  results = {}
  for labels in LABELS:
    for recipe in RECIPES:
      for seed in seeds:
        workdir = os.path.join(args.workdir, f'{recipe}_labels{labels}', f'seed{seed}')
        overrides = [f'seed={seed}']
        if recipe != 'scratch':
          overrides.append(f'init_from.path={pretrain_dir}')
        results[recipe, labels, seed] = run(
            f'usps_finetune.py:recipe={recipe},labels={labels}', workdir, overrides)

  commit = git_commit()
  lines = [
      '# T5: MNIST-pretrained LeNet -> USPS with k labels per class',
      '',
      f'USPS test accuracy (%) at the last step (500 steps), mean ± std over seeds {args.seeds}. '
      'The pretrained model (source-only on full MNIST, 1000 steps, seed 0) reaches '
      f'{100 * pretrain["final"]["target/test/accuracy"]:.1f} % on USPS test with no USPS labels '
      f'and {100 * pretrain["final"]["source/test/accuracy"]:.1f} % on MNIST test. '
      'Selection rule: none (last step). Wall time: seconds per fine-tuning run on 2 CPU cores.',
      '',
      '| recipe | 10 / class | 50 / class | all (7291) | wall s | trainable params |',
      '|---|---|---|---|---|---|',
  ]
  for recipe in RECIPES:
    cells = []
    for labels in LABELS:
      accuracies = [100 * results[recipe, labels, s]['final']['target/test/accuracy']
                    for s in seeds]
      cells.append(f'{np.mean(accuracies):.1f} ± {np.std(accuracies):.1f}')
    wall = np.mean([results[recipe, labels, s]['wall_s'] for labels in LABELS for s in seeds])
    trainable = results[recipe, LABELS[0], seeds[0]]['trainable_param_count']
    lines.append(f'| {recipe} | {" | ".join(cells)} | {wall:.0f} | {trainable:,} |')
  lines += ['', f'Commit {commit}; command: `python -m experiments.t5_usps_finetune '
            f'--seeds {args.seeds}`. Recipes and hyperparameters: configs/usps_finetune.py '
            '(SGD momentum 0.9, lr 0.01 constant, batch 64, alpha = beta = 0.01; the Fisher is '
            'scaled to mean 1 over the transferred parameters).']
  with open(args.output, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
