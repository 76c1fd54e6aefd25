"""T6 sweep: Net2Net growth of an MNIST-trained conv net, fine-tuned on USPS, against the large net
trained from scratch, at two USPS learning rates.

  python -m transfer_jax.sweep experiments/t6_net2net.py
  python -m transfer_jax.report experiments/t6_net2net.py --publish
  python -m experiments.t6_net2net --publish   # accuracy versus steps, steps to 90 %

Per seed: pretrain the small net on MNIST (run `pretrain_seedS`: configs/net2net_digits.py:
stage=pretrain); before each grown run, grow it (transfer/net2net.py: widen block 0 to 32 and
block 1 to 64 channels, insert an identity conv block after block 1; NOISE breaks the symmetry
of copied units), check that the grown net computes the small net's outputs, save it as
`grown_seedS.npz` in the sweep's workdir; fine-tune it on USPS (stage=grown) and train the same
large net from scratch (stage=scratch), each at every learning rate of LEARNING_RATES. With
--publish the report writes experiments/t6_net2net.{md,tex} and this file, which reads the
finished runs, draws experiments/t6_net2net.{png,pdf} (else both write into the workdir). A
smoke test in seconds:
  python -m transfer_jax.sweep experiments/t6_net2net.py --workdir=/tmp/t6 \\
      --override total_steps=4
"""

import argparse
import functools
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = 'configs/net2net_digits.py'
SEEDS = (0, 1, 2)
LEARNING_RATES = (0.05, 0.01)   # USPS learning rate of both the grown and the scratch runs.
NOISE = 0.01                    # Symmetry-breaking noise on the copied units (transfer/net2net.py).
MAX_GROWTH_GAP = 1e-4           # Largest |grown - small| logit before noise that counts as exact.
DATA = {'data.manual_dir': '../shared/datasets'}
TABLE = {'rows': 'init', 'columns': 'lr', 'seed': 'seed', 'versus': 'scratch',
         'title': 'T6: Net2Net growth (MNIST -> USPS) against training the large net from scratch',
         'notes': [
             'USPS test accuracy (%) at the last step (600 steps); selection rule: none. The '
             'small net (conv 16 -> 32) is pretrained on MNIST per seed (runs pretrain_seedS '
             'above: source/test is MNIST test, target/test is USPS test without USPS labels). '
             'grown = the small net widened (16 -> 32, 32 -> 64 channels) and deepened (an '
             f'identity conv block), with symmetry-breaking noise {NOISE}, then trained on all '
             'USPS labels; scratch = the same large net from a fresh initialisation. Both train '
             'with SGD momentum 0.9, batch 64, and the column\'s constant learning rate '
             '(configs/net2net_digits.py).',
             'Before the noise, the grown net computes the small net\'s logits to within '
             f'{MAX_GROWTH_GAP:g} (checked before every grown run). `python -m '
             'experiments.t6_net2net` prints these gaps and the steps to 90 % and draws the '
             'accuracy versus steps:',
             '![T6 accuracy versus steps](t6_net2net.png)']}


def runs():
  """The pretraining run of each seed, then grown and scratch runs per learning rate and seed."""
  for seed in SEEDS:
    yield {'name': f'pretrain_seed{seed}', 'arg': 'stage=pretrain',
           'overrides': {'seed': seed, **DATA}}
  for lr in LEARNING_RATES:
    for stage in ('grown', 'scratch'):
      for seed in SEEDS:
        run = {'arg': f'stage={stage}',
               'overrides': {'seed': seed, 'optimizer.learning_rate': lr, **DATA},
               'labels': {'init': stage, 'lr': f'lr {lr:g}', 'seed': seed}}
        if stage == 'grown':
          run['overrides']['init_from.path'] = f'{{sweep_workdir}}/grown_seed{seed}.npz'
          run['needs'] = [f'pretrain_seed{seed}']
          run['before'] = functools.partial(grow_pretrained, seed=seed)
        yield run


def grow(pretrain_dir: str, output: str, seed: int, noise: float) -> float:
  """Grows the pretrained small model into `output` (.npz); returns max |grown - small| logits
  on random inputs before noise (the function-preservation check)."""
  import jax

  from transfer_jax import config_lib
  from transfer_jax.checkpoint import load_state
  from transfer_jax.models import build_model
  from transfer_jax.transfer import net2net
  from transfer_jax.transfer.params import save_flat

  config = config_lib.load_config(os.path.join(ROOT, CONFIG + ':stage=pretrain'))
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


def grow_pretrained(run_dir: str, sweep_workdir: str, seed: int) -> None:
  """A grown run's `before`: grows pretrain_seedS into grown_seedS.npz (and its gap into
  grown_seedS.json); fails if the grown net does not compute the small net's function."""
  del run_dir  # The .npz is shared by the grown runs of every learning rate.
  output = os.path.join(sweep_workdir, f'grown_seed{seed}')
  gap = grow(os.path.join(sweep_workdir, f'pretrain_seed{seed}'), output + '.npz', seed, NOISE)
  with open(output + '.json', 'w') as f:
    json.dump({'seed': seed, 'noise': NOISE, 'max_logit_gap_before_noise': gap}, f)
  print(f'grown pretrain_seed{seed} -> {output}.npz (logit gap before noise {gap:.1e})')
  if gap > MAX_GROWTH_GAP:
    raise RuntimeError(f'the grown net differs from the small one by {gap:.1e} before noise')


def steps_to(steps: np.ndarray, accuracies: np.ndarray, threshold: float) -> int | None:
  """The first evaluated step at which the accuracy reaches `threshold` (None: never)."""
  reached = np.flatnonzero(accuracies >= threshold)
  return int(steps[reached[0]]) if reached.size else None


def curve(workdir: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps, USPS test accuracy in %) at every evaluation of a run."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  evals = [r for r in records if 'target/test/accuracy' in r]
  return (np.array([r['step'] for r in evals]),
          np.array([100 * r['target/test/accuracy'] for r in evals]))


def main(argv: list[str] | None = None) -> None:
  """Reads the finished USPS runs: prints the growth gaps and the steps to `--threshold`, and
  draws accuracy versus steps (one panel per learning rate, mean ± std over seeds)."""
  sys.path.insert(0, ROOT)
  from transfer_jax import sweep

  parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
  parser.add_argument('--workdir', default=os.path.join('runs', 't6_net2net'))
  parser.add_argument('--threshold', type=float, default=90.0, help='accuracy (%%) to reach')
  parser.add_argument('--output', default='', help='default: WORKDIR/t6_net2net')
  parser.add_argument('--publish', action='store_true',
                      help='write the committed experiments/t6_net2net.{png,pdf}; only when every '
                      'run is finished')
  parser.add_argument('--override', action='append', default=[], metavar='KEY=VALUE',
                      help='as given to the sweep')
  args = parser.parse_args(argv)
  _, all_runs = sweep.load_sweep(os.path.abspath(__file__), sweep.parse_overrides(args.override),
                                 args.workdir)
  unfinished = [run['name'] for run in all_runs
                if not os.path.exists(os.path.join(args.workdir, run['name'], 'summary.json'))]
  if args.publish and (unfinished or args.override or args.output):
    raise SystemExit(f'--publish writes the committed figure of the finished sweep as written: '
                     f'{len(unfinished)} run(s) unfinished in {args.workdir}'
                     + ('; leave out --override and --output' if args.override or args.output
                        else ''))
  output = (os.path.join(ROOT, 'experiments', 't6_net2net') if args.publish
            else args.output or os.path.join(args.workdir, 't6_net2net'))
  curves = {}
  for run in all_runs:
    run_dir = os.path.join(args.workdir, run['name'])
    if run['labels'] and os.path.exists(os.path.join(run_dir, 'summary.json')):
      labels = run['labels']
      curves.setdefault((labels['lr'], labels['init']), []).append(curve(run_dir))
  if not curves:
    raise SystemExit(f'no finished USPS run in {args.workdir}; run the sweep first')
  for seed in SEEDS:
    path = os.path.join(args.workdir, f'grown_seed{seed}.json')
    if os.path.exists(path):
      with open(path) as f:
        print(f'seed {seed}: grown net logit gap before noise '
              f'{json.load(f)["max_logit_gap_before_noise"]:.1e}')

  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  lrs = list(dict.fromkeys(lr for lr, _ in curves))
  fig, axes = plt.subplots(1, len(lrs), figsize=(5 * len(lrs), 3.5), squeeze=False)
  print(f'| lr | init | steps to {args.threshold:g} % |\n|---|---|---|')
  for ax, lr in zip(axes[0], lrs, strict=True):
    for stage, color in (('grown', 'tab:blue'), ('scratch', 'tab:orange')):
      seeds = curves.get((lr, stage), [])
      if not seeds:
        continue
      length = min(len(steps) for steps, _ in seeds)
      values = np.stack([accuracy[:length] for _, accuracy in seeds])
      mean, std = values.mean(0), values.std(0)
      label = 'Net2Net-grown from MNIST' if stage == 'grown' else 'large net from scratch'
      ax.plot(seeds[0][0][:length], mean, color=color, label=label)
      ax.fill_between(seeds[0][0][:length], mean - std, mean + std, color=color, alpha=0.2)
      reached = [steps_to(steps, accuracy, args.threshold) for steps, accuracy in seeds]
      cell = (f'{np.mean(reached):.0f} ± {np.std(reached):.0f}' if None not in reached
              else f'{sum(r is not None for r in reached)}/{len(reached)} seeds reached it')
      print(f'| {lr} | {stage} | {cell} |')
    ax.axhline(args.threshold, color='grey', linestyle=':', linewidth=1)
    ax.set_xlabel('USPS training step')
    ax.set_ylabel('USPS test accuracy (%)')
    ax.set_title(f'{lr} ({len(seeds)} seeds, mean ± std)')
    ax.legend(loc='lower right')
  fig.suptitle('T6: Net2Net growth vs scratch')
  fig.tight_layout()
  for ext in ('png', 'pdf'):
    fig.savefig(f'{output}.{ext}', dpi=150)
  print(f'written: {output}.png, {output}.pdf')


if __name__ == '__main__':
  main()
