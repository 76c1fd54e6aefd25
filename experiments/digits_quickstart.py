"""Source-only and DANN on the embedded digits (MNIST-5000 -> UCI optdigits), one table.

  python -m experiments.digits_quickstart [--seeds 0,1,2] [--steps N] [--workdir runs/digits]

Each (method, seed) run goes through the one training loop into WORKDIR/METHOD/seedK; finished
runs are read back, interrupted ones resume. Prints target and source test accuracy at the last
step (no model selection on target data), mean +- std over seeds.
"""

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ('source_only', 'dann')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--seeds', default='0', help='comma-separated seeds')
  parser.add_argument('--steps', type=int, default=0, help='training steps (0: the config\'s)')
  parser.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'digits'))
  parser.add_argument('--reverse', action='store_true', help='optdigits -> MNIST-5000')
  args = parser.parse_args()
  sys.path.insert(0, ROOT)
  from transfer_jax import config_lib
  from transfer_jax.training import runtime, train

  seeds = [int(s) for s in args.seeds.split(',')]
  results = {}
  for method in METHODS:
    for seed in seeds:
      arg = f'method={method}' + (',reverse' if args.reverse else '')
      overrides = [f'seed={seed}'] + ([f'total_steps={args.steps}'] if args.steps else [])
      config = config_lib.load_config(os.path.join(ROOT, 'configs', 'digits.py:' + arg), overrides)
      runtime.setup(config)
      workdir = os.path.join(args.workdir + ('_reverse' if args.reverse else ''), method,
                             f'seed{seed}')
      print(f'== {method}, seed {seed} -> {workdir}', flush=True)
      summary = train.train_and_evaluate(config, workdir)
      results.setdefault(method, []).append(summary)

  direction = 'optdigits -> MNIST-5000' if args.reverse else 'MNIST-5000 -> optdigits'
  print(f'\n{direction}, last step, {len(seeds)} seed(s): {args.seeds}')
  print('| method | target test acc. (%) | source test acc. (%) | steps | wall s/run |')
  print('|---|---|---|---|---|')
  for method, summaries in results.items():
    target = [100 * s['final']['target/test/accuracy'] for s in summaries]
    source = [100 * s['final']['source/test/accuracy'] for s in summaries]
    wall = np.mean([s['wall_s'] for s in summaries])
    print(f'| {method} | {_mean_std(target)} | {_mean_std(source)} | {summaries[0]["steps"]} | '
          f'{wall:.0f} |')


def _mean_std(values: list[float]) -> str:
  return f'{np.mean(values):.1f} ± {np.std(values):.1f}' if len(values) > 1 else f'{values[0]:.1f}'


if __name__ == '__main__':
  main()
