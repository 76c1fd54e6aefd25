"""The DANN digits training step against the PyTorch reference, on the same machine.

  python -m transfer_jax.bench.dann_step [--steps 100] [--repeats 7] [--rounds 3]
      [--conv_impl fused|xla] [--net dann|tllib|tllib_mcd|skada] [--no_torch]

Measures the step that trains: `build_program` on configs/digits.py, with overrides that make it
the step of ../shared/bench/torch_dann_reference.py (DANN with a constant gradient-reversal
coefficient 1 and trade-off 1; Adam, lr 1e-3, no weight decay; 64 source + 64 target random
28x28x1 images, one feature pass). A measurement is the median over `--repeats` timings of
`--steps` steps, the last one waited for. Rounds alternate the torch reference (a subprocess,
when torch is installed) and JAX, so that a change in machine load hits both; each prints a JSON
line, and a summary line gives jax_steps_per_s / torch_steps_per_s (medians over rounds).

Each JAX line also gives the step's flops_per_step (XLA's cost analysis of the compiled step,
per device on a mesh of several), achieved_gflops_per_s, and matmul_peak_gflops_per_s: a 2048^3
fp32 matmul timed in the same round (`common.matmul_peak_gflops`), with fraction_of_peak, their
ratio. `--net tllib` measures
the TLlib digits LeNet step of configs/mnist_usps_tllib.py (DANN at its batch of 128 + 128,
its discriminator 256-1024-1024-1 with BatchNorm) the same way; the torch reference builds only
the DANN paper's network, so no ratio is given for it. `--net skada` times the step of
configs/mnist_usps_skada.py (the MNIST-example CNN, DANN at 256 + 256) and `--net tllib_mcd`
MCD's iteration on the TLlib LeNet.

Use an otherwise idle machine: when another process takes a core, torch's OpenMP threads slow
down ~15x (their barriers wait for the preempted thread) and the ratio means nothing. The XLA
flags of `runtime.CPU_XLA_FLAGS` apply here as in training (printed as xla_flags).
"""

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

import jax
import numpy as np

from transfer_jax import config_lib
from transfer_jax.bench.common import (
  matmul_peak_gflops,
  median_rate,
  peak_rss_mib,
  process_start_time,
  report,
  run_child,
)
from transfer_jax.training import parallel, runtime
from transfer_jax.training.program import build_program

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TORCH_REFERENCE = os.path.join(ROOT, '..', 'shared', 'bench', 'torch_dann_reference.py')
# configs/digits.py made identical to the torch reference's step.
OVERRIDES = ('method.name=dann', 'method.grl_schedule=constant', 'method.grl_coeff=1.0',
             'method.trade_off=1.0', 'optimizer.name=adam', 'optimizer.learning_rate=1e-3',
             'optimizer.schedule=constant', 'optimizer.weight_decay=0.0', 'batch_size=64',
             'compilation_cache_dir=')  # A real compilation, not a cache hit.
# --net -> (config, overrides): the DANN paper's net made the torch reference's step, or TLlib's
# digits LeNet step as configs/mnist_usps_tllib.py trains it (batch 128 + 128).
NETS = {'dann': ('digits.py', OVERRIDES),
        'tllib': ('mnist_usps_tllib.py:method=dann', ('compilation_cache_dir=',)),
        # MCD's iteration on that net (six passes: steps A, B and 4 x C, two 1024-wide heads).
        'tllib_mcd': ('mnist_usps_tllib.py:method=mcd', ('compilation_cache_dir=',)),
        # skada-bench's MNIST-example CNN, DANN at its batch of 256 + 256.
        'skada': ('mnist_usps_skada.py:method=dann', ('compilation_cache_dir=',))}


def random_batch(batch_size: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  images = lambda: rng.random((batch_size, 28, 28, 1), dtype=np.float32)
  return {'source': {'input': images(), 'label': rng.integers(0, 10, batch_size, np.int32)},
          'target': {'input': images()}}


class JaxStep:
  """The project's compiled DANN step on a fixed batch; `run(n)` times n steps."""

  def __init__(self, conv_impl: str, net: str = 'dann'):
    config_file, overrides = NETS[net]
    spec = os.path.join(ROOT, 'configs', config_file)
    overrides = overrides + ((f'model.conv_impl={conv_impl}',) if conv_impl else ())
    config = config_lib.load_config(spec, overrides)
    runtime.setup(config)
    self.net, self.batch_size = net, config.batch_size
    self.conv_impl = config.model.conv_impl
    self.mesh = parallel.make_mesh(config.num_devices)
    program = build_program(config, self.mesh, (28, 28, 1), num_classes=10)
    self.state = program.init_state(jax.random.key(config.seed))
    self.batch = parallel.to_global(random_batch(config.batch_size), self.mesh)
    self.rng = jax.random.key(1)
    self.inputs = program.inputs
    start = time.perf_counter()
    # The executable that program.train_step compiles on its first call, compiled explicitly so
    # that its cost analysis can be read.
    self.step = program.step.lower(self.state, self.batch, self.rng,
                                    self.inputs).compile()
    self.compile_s = time.perf_counter() - start
    cost = self.step.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    self.flops_per_step = float(cost['flops']) if cost and cost.get('flops', 0) > 0 else None
    self.run(1)
    self.first_step_s = time.time() - process_start_time()
    self.run(10)  # Warm-up, as the torch reference does.

  def run(self, count: int) -> None:
    for _ in range(count):
      self.state, metrics = self.step(self.state, self.batch, self.rng, self.inputs)
    jax.block_until_ready(metrics)

  def measure(self, steps: int, repeats: int, round_index: int) -> dict:
    rate, rates = median_rate(self.run, steps, repeats)
    peak = matmul_peak_gflops()
    achieved = self.flops_per_step * rate / 1e9 if self.flops_per_step else None
    record = {'benchmark': 'dann_step', 'framework': f'jax {jax.__version__}',
              'round': round_index, 'net': self.net, 'batch_size': self.batch_size,
              'conv_impl': self.conv_impl,
              'median_ms_per_step': 1e3 / rate, 'steps_per_s': rate,
              'flops_per_step': self.flops_per_step, 'achieved_gflops_per_s': achieved,
              'matmul_peak_gflops_per_s': peak,
              'fraction_of_peak': achieved / peak if achieved else None,
              'ms_per_step_each_repeat': [round(1e3 / r, 3) for r in rates],
              'compile_s': self.compile_s, 'time_to_first_step_s': self.first_step_s,
              'peak_rss_mib': peak_rss_mib(), 'devices': self.mesh.size,
              'device_kind': jax.devices()[0].device_kind, 'jax': jax.__version__,
              'xla_flags': os.environ.get('XLA_FLAGS', ''), 'load_1m': os.getloadavg()[0]}
    report(record)
    return record


def torch_available() -> str | None:
  """None if the torch reference can run here, else why not."""
  if not os.path.isfile(TORCH_REFERENCE):
    return f'the torch reference {os.path.normpath(TORCH_REFERENCE)} is absent'
  if importlib.util.find_spec('torch') is None:
    return 'torch is not installed (pip install -e ".[torch]", CPU build)'
  return None


def measure_torch(steps: int, repeats: int, round_index: int) -> dict:
  """Runs the reference in a fresh process (its own threads, no JAX in it) and reports it."""
  stdout, peak_mib = run_child([sys.executable, TORCH_REFERENCE, '--steps', str(steps),
                                '--repeats', str(repeats)])
  record = {'benchmark': 'dann_step', **json.loads(stdout.strip().splitlines()[-1]),
            'round': round_index, 'peak_rss_mib': peak_mib,
            'load_1m': os.getloadavg()[0]}
  report(record)
  return record


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=100)
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument('--rounds', type=int, default=3, help='torch, JAX alternations')
  parser.add_argument('--conv_impl', default='', help="'fused' or 'xla' (default: the config's)")
  parser.add_argument('--net', choices=sorted(NETS), default='dann')
  parser.add_argument('--no_torch', action='store_true', help='measure the JAX step alone')
  args = parser.parse_args(argv)

  step = JaxStep(args.conv_impl, args.net)
  why_not = ('skipped (--no_torch)' if args.no_torch else
             'it builds only the DANN paper network' if args.net != 'dann' else torch_available())
  if why_not:
    print(f'torch reference: {why_not}; measuring JAX alone', file=sys.stderr)
  jax_rates, torch_rates, fractions = [], [], []
  for i in range(args.rounds):
    if not why_not:
      torch_rates.append(measure_torch(args.steps, args.repeats, i)['steps_per_s'])
    record = step.measure(args.steps, args.repeats, i)
    jax_rates.append(record['steps_per_s'])
    fractions.append(record['fraction_of_peak'])
  summary = {'benchmark': 'dann_step_summary', 'net': step.net, 'conv_impl': step.conv_impl,
             'jax_steps_per_s': statistics.median(jax_rates),
             'jax_median_ms_per_step': 1e3 / statistics.median(jax_rates),
             'flops_per_step': step.flops_per_step,
             'fraction_of_peak': statistics.median(fractions) if all(fractions) else None}
  if torch_rates:
    ratios = [j / t for j, t in zip(jax_rates, torch_rates, strict=True)]
    summary.update(torch_steps_per_s=statistics.median(torch_rates),
                   torch_median_ms_per_step=1e3 / statistics.median(torch_rates),
                   ratio=statistics.median(jax_rates) / statistics.median(torch_rates),
                   ratio_each_round=[round(r, 3) for r in ratios])
  report(summary)
  return summary


if __name__ == '__main__':
  main()
