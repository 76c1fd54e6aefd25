"""K vectorized runs against the same K runs one after another, on the same machine.

  python -m transfer_jax.bench.vectorized [--variant surf|digits|digits_tllib | --config SPEC]
      [--runs 8] [--vary seed|trade_off|learning_rate] [--steps 100] [--repeats 3]
      [--end_to_end --total_steps 500] [--manual_dir ../shared/datasets] [--override k=v ...]

Step mode (default): the training step that trains (`build_program`), on real batches of the
config's data fetched beforehand (data loading is not timed). Sequential: each of the K runs
takes `--steps` steps with the plain jitted step; vectorized: the K runs take `--steps` steps
together with the group's step (transfer_jax.training.vectorized: vmapped, or unrolled for
convolutional nets on CPU; the record's run_axis says which). Prints a JSON line per mode
(median over `--repeats`, runs x steps per second) and the speed-up.

End-to-end mode (`--end_to_end`): whole runs through the loop, with data loading, evaluation and
checkpoints: K calls of `train_and_evaluate` against one `train_runs` of the K configs (fresh
workdirs under a temporary folder, the persistent compilation cache as configured: compile or
cache-hit time is included in both).

`--variant` names the config: 'surf' Office-Caltech SURF DANN (an 800-256 MLP, batch 32 + 32, the
default), 'digits' MNIST -> USPS DANN (the DANN paper's LeNet, full splits, batch 64 + 64),
'digits_tllib' MNIST -> USPS DANN at TLlib's protocol (its LeNet, batch 128 + 128).

`--vary` picks what the runs differ in: seeds 0..K-1 (each run its own data order), or K
trade-offs / learning rates with seed 0 (one shared data order, the batch passed once).
"""

import argparse
import os
import sys
import tempfile
import time

import jax
import numpy as np

from transfer_jax import config_lib
from transfer_jax.bench.common import median_rate, peak_rss_mib, report
from transfer_jax.training import inputs, parallel, runtime, train, vectorized
from transfer_jax.training.program import build_program

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VARIANTS = {'surf': 'configs/office_caltech_surf.py:method=dann',
            'digits': 'configs/mnist_usps.py:method=dann,protocol=full',
            'digits_tllib': 'configs/mnist_usps_tllib.py:method=dann'}
VARY = {'seed': lambda i: [f'seed={i}'],
        'trade_off': lambda i: ['seed=0', f'method.trade_off={0.1 * (i + 1):.1f}'],
        'learning_rate': lambda i: ['seed=0', f'optimizer.learning_rate={0.005 * (i + 1):g}']}


def _configs(args) -> list:
  spec = args.config if os.path.isabs(args.config.split(':')[0]) else os.path.join(ROOT,
                                                                                   args.config)
  common = [f'data.manual_dir={args.manual_dir}', *args.override] + (
      [f'total_steps={args.total_steps}'] if args.total_steps else [])
  return [config_lib.load_config(spec, common + VARY[args.vary](i)) for i in range(args.runs)]


def step_mode(args, configs) -> dict:
  config = configs[0]
  runtime.setup(config)
  mesh = parallel.make_mesh(config.num_devices)
  domains = inputs.load_domains(config)
  decay = vectorized.group_decay(configs)
  program = build_program(config, mesh, domains['target'].input_shape,
                          domains['labels'].num_classes, decay=decay)
  process = dict(process_index=0, process_count=1)
  shared = args.vary != 'seed'
  batches = []   # Per run (one list if shared): `steps` batches on the devices.
  for c in configs[:1] if shared else configs:
    streams = inputs.make_iterators(program.streams, domains, c, process)
    batches.append([parallel.to_global({n: next(it) for n, it in streams.items()}, mesh)
                    for _ in range(args.steps)])
  programs = [build_program(c, mesh, domains['target'].input_shape,
                            domains['labels'].num_classes, decay=decay) for c in configs]
  states = [p.init_state(jax.random.key(c.seed)) for p, c in zip(programs, configs, strict=True)]
  rngs = [jax.random.key(c.seed + 1) for c in configs]

  def sequential(count):
    for i, p in enumerate(programs):
      for step in range(count):
        states[i], metrics = p.train_step(states[i], batches[0 if shared else i][step], rngs[i])
      jax.block_until_ready(metrics)

  group = vectorized.VectorizedRuns(program, configs, mesh)
  vector = {'state': group.init(vectorized.stack([jax.random.key(c.seed) for c in configs]))}
  vector_rngs = vectorized.stack(rngs)
  stacked = (batches[0] if shared else
             [jax.tree.map(lambda *x: np.stack([np.asarray(v) for v in x]), *step_batches)
              for step_batches in zip(*batches, strict=True)])
  stacked = [b if shared else parallel.to_global(b, mesh, run_axis=True) for b in stacked]

  def together(count):
    for step in range(count):
      vector['state'], metrics = group.step(vector['state'], stacked[step], vector_rngs)
    jax.block_until_ready(metrics)

  figures = {}
  for name, fn in (('sequential', sequential), ('vectorized', together)):
    start = time.perf_counter()
    fn(1)   # Compilation (or a persistent-cache hit) and one step.
    compile_s = time.perf_counter() - start
    rate, rates = median_rate(fn, args.steps, args.repeats)
    # fn(n) advances each of the K runs by n steps, in both modes.
    figures[name] = {'benchmark': 'vectorized_step', 'mode': name, 'runs': args.runs,
                     'vary': args.vary, 'config': args.config,
                     'run_steps_per_s': round(rate * args.runs, 2),
                     'each_repeat_run_steps_per_s': [round(r * args.runs, 2) for r in rates],
                     'run_axis': group.mode if name == 'vectorized' else None,
                     'first_call_s': compile_s, 'peak_rss_mib': peak_rss_mib(),
                     'devices': mesh.size, 'load_1m': os.getloadavg()[0]}
    report(figures[name])
  summary = {'benchmark': 'vectorized_step_summary', 'runs': args.runs, 'vary': args.vary,
             'config': args.config, 'steps': args.steps,
             'speedup': figures['vectorized']['run_steps_per_s']
             / figures['sequential']['run_steps_per_s']}
  report(summary)
  return summary


def end_to_end_mode(args, configs) -> dict:
  runtime.setup(configs[0])
  load_before = os.getloadavg()[0]   # This benchmark's own threads raise the figure after it.
  with tempfile.TemporaryDirectory(prefix='bench_vectorized_') as root:
    start = time.perf_counter()
    for i, config in enumerate(configs):
      train.train_and_evaluate(config, os.path.join(root, 'sequential', str(i)))
    sequential_s = time.perf_counter() - start
    start = time.perf_counter()
    train.train_runs(configs, [os.path.join(root, 'vectorized', str(i))
                               for i in range(len(configs))])
    vectorized_s = time.perf_counter() - start
  summary = {'benchmark': 'vectorized_end_to_end', 'runs': args.runs, 'vary': args.vary,
             'config': args.config, 'total_steps': configs[0].total_steps,
             'run_axis': vectorized.run_axis_mode(configs[0]),
             'sequential_s': sequential_s, 'vectorized_s': vectorized_s,
             'speedup': sequential_s / vectorized_s, 'load_1m_before': load_before,
             'load_1m': os.getloadavg()[0]}
  report(summary)
  return summary


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--variant', choices=sorted(VARIANTS), default='surf')
  parser.add_argument('--config', default='', help='a config spec instead of --variant')
  parser.add_argument('--runs', type=int, default=8)
  parser.add_argument('--vary', choices=sorted(VARY), default='seed')
  parser.add_argument('--steps', type=int, default=100, help='timed steps (step mode)')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--end_to_end', action='store_true')
  parser.add_argument('--total_steps', type=int, default=0, help='0: the config default')
  parser.add_argument('--override', action='append', default=[], help='key=value (repeatable)')
  parser.add_argument('--manual_dir', default=os.path.join(ROOT, '..', 'shared', 'datasets'))
  args = parser.parse_args(argv)
  args.config = args.config or VARIANTS[args.variant]
  configs = _configs(args)
  return end_to_end_mode(args, configs) if args.end_to_end else step_mode(args, configs)


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  main(sys.argv[1:])
