"""Input pipeline against the DANN digits step it feeds, on the same machine.

  python -m transfer_jax.bench.pipeline [--config configs/digits.py] [--batches 200]

Measures (1) batches per second of the training input: one source batch and one target batch,
drawn, preprocessed and stacked by the grain pipeline, in memory and streamed from array_record
files; (2) steps per second of the jitted DANN train step on data already on the device. The
pipeline must not be the bottleneck: its rate should be >= 5x the step's.
"""

import argparse
import os

import jax

from transfer_jax import config_lib
from transfer_jax import data as data_lib
from transfer_jax.bench.common import median_rate, report
from transfer_jax.training import parallel, runtime
from transfer_jax.training.program import build_program

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default=os.path.join(ROOT, 'configs', 'digits.py'))
  parser.add_argument('--batches', type=int, default=200)
  parser.add_argument('--steps', type=int, default=100)
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  config = config_lib.load_config(args.config)
  runtime.setup(config)

  rates = {}
  for in_memory in (True, False):
    config.data.in_memory = in_memory
    domains = {role: data_lib.load_domain(config.data[role], config.data, role)
               for role in ('source', 'target')}
    iterators = [data_lib.train_iterator(domains['source'].splits['train'],
                                         domains['source'].batch_fn, config.batch_size, 0),
                 data_lib.train_iterator(domains['target'].splits['train'],
                                         domains['target'].unlabeled_fn, config.batch_size, 0, 1)]

    def draw(count, iterators=iterators):
      for _ in range(count):
        for iterator in iterators:
          next(iterator)

    draw(5)
    rate, _ = median_rate(draw, args.batches, args.repeats)
    rates['in_memory' if in_memory else 'array_record'] = rate

  mesh = parallel.make_mesh(config.num_devices)
  program = build_program(config, mesh, domains['source'].input_shape,
                          domains['source'].num_classes)
  state = program.init_state(jax.random.key(0))
  batch = parallel.to_global({'source': next(iterators[0]), 'target': next(iterators[1])}, mesh)
  rng = jax.random.key(1)

  def steps(count):
    nonlocal state
    for _ in range(count):
      state, metrics = program.train_step(state, batch, rng)
    jax.block_until_ready(metrics)

  steps(5)
  step_rate, each = median_rate(steps, args.steps, args.repeats)
  report({'benchmark': 'pipeline_vs_step', 'config': os.path.relpath(args.config, ROOT),
          'batch_size_per_domain': config.batch_size, 'devices': mesh.size,
          'pipeline_batches_per_s_in_memory': rates['in_memory'],
          'pipeline_batches_per_s_array_record': rates['array_record'],
          'dann_step_per_s': step_rate, 'step_ms_each_repeat': [1e3 / r for r in each],
          'ratio_in_memory': rates['in_memory'] / step_rate,
          'ratio_array_record': rates['array_record'] / step_rate,
          'cpu_count': os.cpu_count(), 'jax': jax.__version__,
          'pipeline_not_bottleneck': bool(min(rates.values()) >= 5 * step_rate)})


if __name__ == '__main__':
  main()
