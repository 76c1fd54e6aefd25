"""Multi-task: one DANN-LeNet trunk with an MNIST head and a USPS head, against two separate
networks (one per task): accuracy per task and total parameters.

  python -m experiments.multitask_digits [--seeds 0,1,2] [--steps 1000] [--publish]

Runs configs/digits_multitask.py in modes joint, mnist and usps for each seed (in-process;
finished runs are read back) and writes WORKDIR/multitask_digits.md; with --publish, the
committed experiments/multitask_digits.md instead (the runs are then all finished).
"""

import argparse
import os

import numpy as np

from experiments.common import ROOT, SHARED_DATA, cell, git_commit, runner


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--steps', type=int, default=1000)
  parser.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'multitask'))
  parser.add_argument('--manual_dir', default=SHARED_DATA)
  parser.add_argument('--publish', action='store_true',
                      help='write the committed experiments/multitask_digits.md')
  args = parser.parse_args()
  run = runner(args.manual_dir)
  seeds = [int(s) for s in args.seeds.split(',')]
  cadence = [f'total_steps={args.steps}', f'eval_every_steps={args.steps}',
             f'checkpoint_every_steps={args.steps}']
  results = {}
  for seed in seeds:
    for mode in ('joint', 'mnist', 'usps'):
      results[mode, seed] = run(f'digits_multitask.py:mode={mode}',
                                os.path.join(args.workdir, mode, f'seed{seed}'),
                                [f'seed={seed}', *cadence])

  def accuracy(mode, key):
    return [100 * results[mode, s]['final'][key] for s in seeds]

  joint_params = results['joint', seeds[0]]['param_count']
  separate_params = (results['mnist', seeds[0]]['param_count']
                     + results['usps', seeds[0]]['param_count'])
  joint_wall = np.mean([results['joint', s]['wall_s'] for s in seeds])
  separate_wall = np.mean([results['mnist', s]['wall_s'] + results['usps', s]['wall_s']
                           for s in seeds])
  lines = [
      '# Multi-task: one LeNet trunk with MNIST and USPS heads vs two separate networks', '',
      f'Test accuracy (%) at the last step ({args.steps} steps; the joint model draws one MNIST '
      'and one USPS batch of 64 per step, each separate network one batch of its task), mean ± '
      f'std over seeds {args.seeds}. Selection rule: none (the last step).', '',
      '| model | MNIST test | USPS test | total params | wall s (2 CPU cores) |',
      '|---|---|---|---|---|',
      f'| one trunk, two heads | {cell(accuracy("joint", "source/test/accuracy"))} | '
      f'{cell(accuracy("joint", "usps/test/accuracy"))} | {joint_params:,} | {joint_wall:.0f} |',
      f'| two separate networks | {cell(accuracy("mnist", "source/test/accuracy"))} | '
      f'{cell(accuracy("usps", "target/test/accuracy"))} | {separate_params:,} | '
      f'{separate_wall:.0f} |',
      '', f'Commit {git_commit()}; command: `python -m experiments.multitask_digits --seeds '
      f'{args.seeds} --steps {args.steps} --publish`. Config: configs/digits_multitask.py (SGD '
      'momentum 0.9, lr 0.01 constant, batch 64 per task).']
  output = os.path.join(ROOT, 'experiments') if args.publish else args.workdir
  with open(os.path.join(output, 'multitask_digits.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines) + f'\n\nwritten: {os.path.join(output, "multitask_digits.md")}')


if __name__ == '__main__':
  main()
