"""Time to the first training step, with a cold and then a warm persistent compilation cache.

  python -m transfer_jax.bench.first_step [--config configs/digits.py] [--runs 2]
      [--cache_dir DIR]

Runs `--config` (one training step: `total_steps=1`) `--runs` times, each in a fresh process
started as `python -m transfer_jax.main` starts, in a fresh workdir, all sharing one compilation
cache directory (a new temporary one unless --cache_dir is given, so the first run is cold and
the others warm). Each run prints a JSON line with the time from process start to the first
step's result (from_process_start_s), the same from the call of `train_and_evaluate`
(summary.json's time_to_first_step_s), and what came before that call: Python and library
imports (imports_s), and config loading plus runtime setup (setup_s).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from transfer_jax.bench.common import process_start_time, report, run_child

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def child(config_spec: str, workdir: str, cache_dir: str) -> None:
  """One run, as transfer_jax.main does it; prints its timings as one JSON line."""
  started = process_start_time()
  # Imported here: this child times these imports (imports_s).
  from transfer_jax import config_lib
  from transfer_jax.training import runtime, train
  imported = time.time()
  config = config_lib.load_config(config_spec, [f'compilation_cache_dir={cache_dir}',
                                                'total_steps=1'])
  runtime.setup(config)
  called = time.time()
  summary = train.train_and_evaluate(config, workdir)
  first_step_s = summary['time_to_first_step_s']
  print(json.dumps({'imports_s': imported - started, 'setup_s': called - imported,
                    'from_train_and_evaluate_s': first_step_s,
                    'from_process_start_s': called - started + first_step_s}))


def main(argv: list[str] | None = None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default=os.path.join(ROOT, 'configs', 'digits.py'))
  parser.add_argument('--runs', type=int, default=2, help='the first cold, the others warm')
  parser.add_argument('--cache_dir', default='', help='default: a new temporary directory')
  parser.add_argument('--child', nargs=2, metavar=('WORKDIR', 'CACHE_DIR'), help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    child(args.config, *args.child)
    return []

  scratch = tempfile.mkdtemp(prefix='transfer_jax_first_step_')
  cache_dir = args.cache_dir or os.path.join(scratch, 'xla')
  cold = not os.path.isdir(cache_dir) or not os.listdir(cache_dir)
  records = []
  try:
    for i in range(args.runs):
      stdout, peak_mib = run_child([
          sys.executable, '-m', 'transfer_jax.bench.first_step', '--config', args.config,
          '--child', os.path.join(scratch, f'run{i}'), cache_dir])
      record = {'benchmark': 'first_step', 'run': i,
                'cache': 'cold' if cold and i == 0 else 'warm',
                'config': os.path.relpath(args.config, ROOT),
                **json.loads(stdout.strip().splitlines()[-1]), 'peak_rss_mib': peak_mib,
                'load_1m': os.getloadavg()[0]}
      report(record)
      records.append(record)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  return records


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  main()
