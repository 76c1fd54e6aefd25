"""The ResNet-18 / ResNet-50 fine-tuning training step, against the same step in PyTorch.

  python -m transfer_jax.bench.resnet_step [--arch resnet18 resnet50] [--batch_size 16]
      [--image_size 224] [--steps 3] [--repeats 3] [--rounds 2] [--num_classes 31]
      [--peak_tflops T] [--dtype float32|bfloat16] [--no_torch]

Measures the step that trains: `build_program` on configs/imagefolder_resnet50.py (SGD momentum
0.9, coupled weight decay 5e-4, backbone lr x0.1, a new linear head, BatchNorm in train mode),
with the backbone, batch and image size overridden, from a fresh initialisation (no weights are
read) and without the persistent compilation cache (a real compilation). The batch is random
images and labels. A measurement is the median over `--repeats` timings of `--steps` steps, the
last one waited for. Rounds alternate the PyTorch step (`bench/torch_models.py`, the same
torchvision ResNet, batch, head and optimizer, in a subprocess without JAX) and JAX.

Each architecture runs in its own process, so that its compile time, time to first step (from
process start) and peak memory are its own. Fields: compile_s (lowering + XLA compilation),
time_to_first_step_s (process start to the first step's result), peak_rss_mib, device_peak_mib
(accelerators that report memory_stats), flops_per_step (XLA's cost analysis of the compiled
step), achieved_gflops_per_s, and mfu (on GPUs only, against --peak_tflops or the bf16 dense peak of
an H100 / H200). `--dtype bfloat16` sets config.model.dtype: bfloat16 compute with float32
parameters, optimizer state and BatchNorm statistics (the PyTorch step stays float32, so compare
the ratio only at float32).
"""

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

import jax
import ml_collections
import numpy as np

from transfer_jax import config_lib
from transfer_jax.bench.common import (
  median_rate,
  peak_rss_mib,
  process_start_time,
  report,
  run_child,
)
from transfer_jax.training import parallel, runtime
from transfer_jax.training.program import build_program

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, 'configs', 'imagefolder_resnet50.py')
ARCHS = ('resnet18', 'resnet50')
# Dense bf16 peak TFLOP/s (SXM parts, no sparsity), matched against jax's device_kind.
PEAK_TFLOPS = {'H100': 989.4, 'H200': 989.4}


def overrides(arch: str, batch_size: int, image_size: int, num_devices: int,
              dtype: str = 'float32') -> tuple[str, ...]:
  """configs/imagefolder_resnet50.py with this backbone, batch and compute dtype, from a fresh
  init."""
  return (f'model.backbone={arch}', f'batch_size={batch_size}', f'data.image_size={image_size}',
          'init_from.required=False', 'init_from.torch_arch=', f'num_devices={num_devices}',
          f'model.dtype={dtype}',
          'compilation_cache_dir=')  # A real compilation, not a cache hit.


def random_batch(streams: tuple[str, ...], batch_size: int, image_size: int, num_classes: int,
                 seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  return {name: {'input': rng.random((batch_size, image_size, image_size, 3), dtype=np.float32),
                 'label': rng.integers(0, num_classes, batch_size, np.int32)}
          for name in streams}


def peak_tflops(device: jax.Device, flag: float) -> float | None:
  """The peak that MFU is taken against: --peak_tflops, else the table; None off GPUs."""
  if device.platform != 'gpu':
    return None
  if flag:
    return flag
  return next((peak for name, peak in PEAK_TFLOPS.items() if name in device.device_kind), None)


def device_peak_mib(device: jax.Device) -> float | None:
  stats = device.memory_stats() if device.platform != 'cpu' else None
  return stats['peak_bytes_in_use'] / 2**20 if stats and 'peak_bytes_in_use' in stats else None


class JaxStep:
  """The project's compiled fine-tuning step on a fixed batch; `run(n)` times n steps."""

  def __init__(self, arch: str, batch_size: int, image_size: int, num_classes: int,
               num_devices: int, dtype: str = 'float32'):
    self.arch, self.batch_size, self.image_size, self.dtype = arch, batch_size, image_size, dtype
    config = config_lib.load_config(CONFIG, overrides(arch, batch_size, image_size, num_devices,
                                                      dtype))
    runtime.setup(config)
    self.config = config
    self.mesh = parallel.make_mesh(config.num_devices)
    parallel.check_divisible(batch_size, self.mesh, '--batch_size')
    program = build_program(config, self.mesh, (image_size, image_size, 3), num_classes)
    self.state = program.init_state(jax.random.key(config.seed))
    batch = random_batch(program.streams, batch_size, image_size, num_classes)
    self.batch = parallel.to_global(batch, self.mesh)
    self.rng = jax.random.key(1)
    start = time.perf_counter()
    # The executable that program.train_step compiles on its first call, compiled explicitly so
    # that its cost analysis can be read.
    self.inputs = program.inputs
    self.step = program.step.lower(self.state, self.batch, self.rng,
                                    self.inputs).compile()
    self.compile_s = time.perf_counter() - start
    cost = self.step.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    self.flops_per_step = float(cost['flops']) if cost and cost.get('flops', 0) > 0 else None
    self.run(1)
    self.first_step_s = time.time() - process_start_time()
    self.run(1)  # Warm-up.

  def run(self, count: int) -> None:
    for _ in range(count):
      self.state, metrics = self.step(self.state, self.batch, self.rng, self.inputs)
    jax.block_until_ready(metrics)

  def measure(self, steps: int, repeats: int, round_index: int, peak: float | None) -> dict:
    rate, rates = median_rate(self.run, steps, repeats)
    device = jax.devices()[0]
    achieved = self.flops_per_step * rate / 1e9 if self.flops_per_step else None
    record = {'benchmark': 'resnet_step', 'framework': f'jax {jax.__version__}',
              'arch': self.arch, 'round': round_index, 'batch_size': self.batch_size,
              'image_size': self.image_size, 'dtype': self.dtype,
              'median_ms_per_step': 1e3 / rate, 'steps_per_s': rate,
              'examples_per_s': rate * self.batch_size,
              'ms_per_step_each_repeat': [round(1e3 / r, 3) for r in rates],
              'compile_s': self.compile_s, 'time_to_first_step_s': self.first_step_s,
              'peak_rss_mib': peak_rss_mib(), 'device_peak_mib': device_peak_mib(device),
              'flops_per_step': self.flops_per_step, 'achieved_gflops_per_s': achieved,
              'peak_tflops': peak, 'mfu': achieved / (1e3 * peak) if achieved and peak else None,
              'devices': self.mesh.size, 'device_kind': device.device_kind,
              'xla_flags': os.environ.get('XLA_FLAGS', ''), 'load_1m': os.getloadavg()[0]}
    report(record)
    return record


def torch_available() -> str | None:
  """None if the torch step can run here, else why not."""
  if importlib.util.find_spec('torch') is None:
    return 'torch is not installed (pip install -e ".[torch]", CPU build)'
  return None


def measure_torch(args: argparse.Namespace, arch: str, config: ml_collections.ConfigDict,
                  round_index: int) -> dict:
  """Times the same step in torch, in a fresh process (its own threads, no JAX in it)."""
  multiplier = dict(config.optimizer.lr_multipliers).get('backbone/.*', 1.0)
  stdout, peak_mib = run_child([
      sys.executable, '-m', 'transfer_jax.bench.torch_models', '--arch', arch,
      '--batch_size', str(args.batch_size), '--image_size', str(args.image_size),
      '--num_classes', str(args.num_classes), '--steps', str(args.steps),
      '--repeats', str(args.repeats), '--lr', str(config.optimizer.learning_rate),
      '--backbone_lr_multiplier', str(multiplier), '--momentum', str(config.optimizer.momentum),
      '--weight_decay', str(config.optimizer.weight_decay)])
  record = {'benchmark': 'resnet_step', **json.loads(stdout.strip().splitlines()[-1]),
            'round': round_index, 'peak_rss_mib': peak_mib, 'load_1m': os.getloadavg()[0]}
  report(record)
  return record


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--arch', nargs='+', choices=ARCHS, default=list(ARCHS))
  parser.add_argument('--batch_size', type=int, default=16, help='global batch (2 CPU cores: 16)')
  parser.add_argument('--image_size', type=int, default=224)
  parser.add_argument('--num_classes', type=int, default=31, help='the new head (Office-31)')
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--rounds', type=int, default=2, help='torch, JAX alternations')
  parser.add_argument('--num_devices', type=int, default=0, help='0: every device')
  parser.add_argument('--peak_tflops', type=float, default=0.0,
                      help='device peak for MFU (GPU; default: bf16 dense of H100/H200)')
  parser.add_argument('--dtype', choices=('float32', 'bfloat16'), default='float32',
                      help='config.model.dtype of the JAX step (the torch step is float32)')
  parser.add_argument('--no_torch', action='store_true', help='measure the JAX step alone')
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
  """Runs the benchmark; returns the records it printed (the summary last)."""
  args = parse_args(argv)
  if len(args.arch) > 1:  # One process per architecture; their lines are passed through.
    argv = list(sys.argv[1:] if argv is None else argv)
    records = []
    for arch in args.arch:
      stdout, _ = run_child([sys.executable, '-m', 'transfer_jax.bench.resnet_step',
                             *_without_arch(argv), '--arch', arch])
      print(stdout, end='', flush=True)
      records += [json.loads(line) for line in stdout.splitlines() if line.startswith('{')]
    return records

  arch = args.arch[0]
  print(f'{arch}: global batch {args.batch_size} of {args.image_size}x{args.image_size}x3 '
        f'images, {args.num_classes} classes', file=sys.stderr)
  step = JaxStep(arch, args.batch_size, args.image_size, args.num_classes, args.num_devices,
                 args.dtype)
  peak = peak_tflops(jax.devices()[0], args.peak_tflops)
  why_not = 'skipped (--no_torch)' if args.no_torch else torch_available()
  if why_not:
    print(f'torch step: {why_not}; measuring JAX alone', file=sys.stderr)
  records, jax_rates, torch_rates = [], [], []
  for i in range(args.rounds):
    if not why_not:
      records.append(measure_torch(args, arch, step.config, i))
      torch_rates.append(records[-1]['steps_per_s'])
    records.append(step.measure(args.steps, args.repeats, i, peak))
    jax_rates.append(records[-1]['steps_per_s'])
  rate = statistics.median(jax_rates)
  summary = {'benchmark': 'resnet_step_summary', 'arch': arch, 'batch_size': args.batch_size,
             'image_size': args.image_size, 'jax_steps_per_s': rate,
             'jax_examples_per_s': rate * args.batch_size, 'jax_median_ms_per_step': 1e3 / rate}
  if torch_rates:
    torch_rate = statistics.median(torch_rates)
    summary.update(torch_steps_per_s=torch_rate, torch_examples_per_s=torch_rate * args.batch_size,
                   torch_median_ms_per_step=1e3 / torch_rate, ratio=rate / torch_rate,
                   ratio_each_round=[round(j / t, 3)
                                     for j, t in zip(jax_rates, torch_rates, strict=True)])
  report(summary)
  return records + [summary]


def _without_arch(argv: list[str]) -> list[str]:
  """argv without its --arch values (argparse's nargs='+' consumes names up to the next flag)."""
  kept, skipping = [], False
  for arg in argv:
    if arg == '--arch' or arg.startswith('--arch='):
      skipping = arg == '--arch'
      continue
    if skipping and not arg.startswith('-'):
      continue
    skipping = False
    kept.append(arg)
  return kept


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  main()
