"""T6: Net2Net growth of an MNIST-trained conv net, fine-tuned on USPS, against the large net
trained from scratch: accuracy versus steps and steps to a fixed accuracy.

  python -m experiments.t6_net2net [--seeds 0,1,2] [--threshold 90] [--noise 0.01]

Per seed: pretrain the small net on MNIST (configs/net2net_digits.py:stage=pretrain), grow it
(transfer/net2net.py: widen block 0 to 32 and block 1 to 64 channels, insert an identity conv
block after block 1; `--noise` breaks the symmetry of copied units), save it as .npz, check that
the grown net computes the small net's outputs, fine-tune it on USPS (stage=grown), and train
the same large net from scratch (stage=scratch). Writes experiments/t6_net2net.md and the plot
experiments/t6_net2net.{png,pdf}. Finished runs are read back, not rerun.
"""

import argparse
import json
import os

import numpy as np

from experiments.common import ROOT, SHARED_DATA, cell, git_commit, runner


def grow(pretrain_dir: str, output: str, seed: int, noise: float) -> float:
  """Grows the pretrained small model; returns max |grown - small| logits on random inputs
  before noise (the function-preservation check)."""
  import jax

  from transfer_jax import config_lib
  from transfer_jax.models import build_model
  from transfer_jax.training.checkpoint import load_state
  from transfer_jax.transfer import net2net
  from transfer_jax.transfer.params import save_flat

  config = config_lib.load_config(os.path.join(ROOT, 'configs', 'net2net_digits.py:'
                                               'stage=pretrain'))
  model = build_model(config.model, 10)
  state = load_state(os.path.join(pretrain_dir, 'checkpoints'), None)
  variables = {'params': state['params'], **state['model_state']}
  keys = jax.random.split(jax.random.key(seed), 4)
  x = jax.random.uniform(keys[0], (16, 28, 28, 1))

  def grown_net(noise_level):
    m, v = net2net.widen(model, variables, 0, 32, rng=keys[1], noise=noise_level)
    m, v = net2net.widen(m, v, 1, 64, rng=keys[2], noise=noise_level)
    return net2net.deepen(m, v, 1, rng=keys[3])

  exact_model, exact_vars = grown_net(0.0)
  gap = float(np.abs(exact_model.apply(exact_vars, x)['logits']
                     - model.apply(variables, x)['logits']).max())
  _, noisy_vars = grown_net(noise)
  save_flat(output, noisy_vars)
  return gap


def steps_to(steps: np.ndarray, accuracies: np.ndarray, threshold: float) -> int | None:
  """The first evaluated step at which the accuracy reaches `threshold` (None: never)."""
  reached = np.flatnonzero(accuracies >= threshold)
  return int(steps[reached[0]]) if reached.size else None


def curve(workdir: str) -> tuple[np.ndarray, np.ndarray]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  evals = [r for r in records if 'target/test/accuracy' in r]
  return (np.array([r['step'] for r in evals]),
          np.array([100 * r['target/test/accuracy'] for r in evals]))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--threshold', type=float, default=90.0, help='accuracy (%%) to reach')
  parser.add_argument('--noise', type=float, default=0.01)
  parser.add_argument('--lr', type=float, default=0.0,
                      help='learning rate of both USPS runs (0: the config\'s, 0.05); output '
                      'files get the suffix _lrLR')
  parser.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 't6'))
  parser.add_argument('--manual_dir', default=SHARED_DATA)
  args = parser.parse_args()
  run = runner(args.manual_dir)
  seeds = [int(s) for s in args.seeds.split(',')]
  summaries, curves, gaps = {}, {}, []
  for seed in seeds:
    pretrain_dir = os.path.join(args.workdir, 'pretrain', f'seed{seed}')
    summaries['pretrain', seed] = run('net2net_digits.py:stage=pretrain', pretrain_dir,
                                      [f'seed={seed}'])
    grown_path = os.path.join(args.workdir, f'grown_seed{seed}.npz')
    gaps.append(grow(pretrain_dir, grown_path, seed, args.noise))
    for stage in ('grown', 'scratch'):
      workdir = os.path.join(args.workdir, stage, f'seed{seed}')
      overrides = [f'seed={seed}'] + ([f'init_from.path={grown_path}'] if stage == 'grown' else [])
      if args.lr:
        overrides.append(f'optimizer.learning_rate={args.lr}')
        workdir = os.path.join(args.workdir, f'{stage}_lr{args.lr:g}', f'seed{seed}')
      summaries[stage, seed] = run(f'net2net_digits.py:stage={stage}', workdir, overrides)
      curves[stage, seed] = curve(workdir)

  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for stage, color in (('grown', 'tab:blue'), ('scratch', 'tab:orange')):
    steps = curves[stage, seeds[0]][0]
    values = np.stack([curves[stage, s][1] for s in seeds])
    mean, std = values.mean(0), values.std(0)
    label = 'Net2Net-grown from MNIST' if stage == 'grown' else 'large net from scratch'
    ax.plot(steps, mean, color=color, label=label)
    ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2)
  ax.axhline(args.threshold, color='grey', linestyle=':', linewidth=1)
  ax.set_xlabel('USPS training step')
  ax.set_ylabel('USPS test accuracy (%)')
  ax.set_title(f'T6: Net2Net growth vs scratch ({len(seeds)} seeds, mean ± std)')
  ax.legend(loc='lower right')
  fig.tight_layout()
  name = 't6_net2net' + (f'_lr{args.lr:g}' if args.lr else '')
  for ext in ('png', 'pdf'):
    fig.savefig(os.path.join(ROOT, 'experiments', f'{name}.{ext}'), dpi=150)

  def steps_cell(stage):
    reached = [steps_to(*curves[stage, s], args.threshold) for s in seeds]
    if any(r is None for r in reached):
      return f'{sum(r is not None for r in reached)}/{len(seeds)} seeds reached it'
    return f'{np.mean(reached):.0f} ± {np.std(reached):.0f}'

  pretrained = [100 * summaries['pretrain', s]['final']['source/test/accuracy'] for s in seeds]
  zero_shot = [100 * summaries['pretrain', s]['final']['target/test/accuracy'] for s in seeds]
  first = {stage: [curves[stage, s][1][0] for s in seeds] for stage in ('grown', 'scratch')}
  lines = [
      '# T6: Net2Net growth (MNIST -> USPS) against training the large net from scratch', '',
      f'Small net pretrained on MNIST: {cell(pretrained)} % on MNIST test, {cell(zero_shot)} % '
      'on USPS test without USPS labels. Grown net = small net widened (16 -> 32, 32 -> 64 '
      'channels) and deepened (an identity conv block), then trained on all USPS labels; '
      f'before the symmetry-breaking noise ({args.noise}) it computes the small net\'s logits to '
      f'{max(gaps):.1e} (max over seeds). Scratch = the same large net from a fresh '
      f'initialisation. USPS test accuracy (%), mean ± std over seeds {args.seeds}; selection '
      'rule: none (the last step).', '',
      f'| run | at step {int(curves["grown", seeds[0]][0][0])} | final '
      f'(step {int(curves["grown", seeds[0]][0][-1])}) | steps to {args.threshold:.0f} % | '
      'trainable params |',
      '|---|---|---|---|---|']
  for stage in ('grown', 'scratch'):
    final = [100 * summaries[stage, s]['final']['target/test/accuracy'] for s in seeds]
    lines.append(f'| {stage} | {cell(first[stage])} | {cell(final)} | {steps_cell(stage)} | '
                 f'{summaries[stage, seeds[0]]["trainable_param_count"]:,} |')
  lr = args.lr or 0.05
  lines += ['', f'![T6 accuracy versus steps]({name}.png)', '',
            f'Commit {git_commit()}; command: `python -m experiments.t6_net2net --seeds '
            f'{args.seeds} --threshold {args.threshold:g} --noise {args.noise:g}'
            + (f' --lr {args.lr:g}' if args.lr else '') + '`. Config: configs/net2net_digits.py '
            f'(SGD momentum 0.9, USPS learning rate {lr:g} constant for both runs, batch 64).']
  with open(os.path.join(ROOT, 'experiments', f'{name}.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
