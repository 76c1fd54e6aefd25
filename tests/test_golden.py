"""Golden runs: the numbers a few tiny runs end with, recorded before the training loop's
redesign (issue 17) and checked after every change to the middle. A change that alters a number
here alters every table: it must be deliberate, and then the file is rewritten with

  python tests/test_golden.py --write

Each case covers one of the loop's paths: the plain step on 8 devices (DANN), a multi-phase
method (MCD's three-step update), a method hook before and during training (SHOT's clustering,
from a source-only run through init_from), a regularizer hook before step 0 (fisher_sp's Fisher
estimate), an evaluation hook (AdaBN), and a vectorized group (two runs that differ in seed and
trade-off, vmapped). Every logged number of every record is compared: train-metric means, eval
accuracies and losses, selection scores.
"""

import json
import math
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import tiny_digits  # noqa: E402
from transfer_jax.training import train  # noqa: E402

GOLDEN_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'golden', 'runs.json')
# Not numbers of the run: wall-clock figures.
UNTIMED = ('wall_s', 'train/steps_per_s')
# Seven tiny runs in one module fixture: about 4 min on 2 busy cores, so out of the fast subset.
pytestmark = pytest.mark.slow
# Float32 on another CPU model may differ in the last bits; a flipped prediction moves an
# accuracy by one example in 128 or more, far above this.
RTOL, ATOL = 2e-4, 2e-5


def _cases(workdir: str):
  """(name, [configs]) in order; a later case may start from an earlier case's workdir."""
  source = os.path.join(workdir, 'source_only')
  yield 'source_only', [tiny_digits('method=source_only')]
  yield 'dann', [tiny_digits('method=dann')]
  yield 'mcd', [tiny_digits('method=mcd')]
  yield 'shot', [tiny_digits('method=shot', **{'init_from.path': source})]
  yield 'fisher_sp', [tiny_digits('method=source_only', **{
      'init_from.path': source, 'regularizer.name': 'fisher_sp', 'regularizer.fisher_batches': 2,
      'objective.target_weight': 1.0, 'data.target.labeled_per_class': 2})]
  yield 'adabn', [tiny_digits('method=dann', **{
      'model.backbone': 'lenet', 'model.lenet_conv': (8, 16), 'model.lenet_dense': (32,),
      'model.bottleneck_dim': 16, 'model.batch_norm': 'adabn', 'model.adabn_batches': 2})]
  yield 'vectorized', [tiny_digits('method=dann', seed=0, **{'method.trade_off': 0.3}),
                       tiny_digits('method=dann', seed=1, **{'method.trade_off': 1.0})]


def _records(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in UNTIMED} for line in f]


def run_cases(workdir: str) -> dict[str, list[list[dict]]]:
  """{case: [each run's records]}, trained in `workdir`."""
  results = {}
  for name, configs in _cases(workdir):
    if len(configs) == 1:
      dirs = [os.path.join(workdir, name)]
    else:
      dirs = [os.path.join(workdir, f'{name}_{i}') for i in range(len(configs))]
    train.train_runs(configs, dirs)
    results[name] = [_records(d) for d in dirs]
  return results


@pytest.fixture(scope='module')
def golden_runs(tmp_path_factory):
  return run_cases(str(tmp_path_factory.mktemp('golden')))


@pytest.mark.parametrize('case', ['source_only', 'dann', 'mcd', 'shot', 'fisher_sp', 'adabn',
                                  'vectorized'])
def test_numbers_equal_the_recorded_runs(golden_runs, case):
  with open(GOLDEN_FILE) as f:
    expected = json.load(f)[case]
  got = golden_runs[case]
  assert len(got) == len(expected)
  for run, (got_records, want_records) in enumerate(zip(got, expected, strict=True)):
    assert [r['step'] for r in got_records] == [r['step'] for r in want_records]
    for got_record, want_record in zip(got_records, want_records, strict=True):
      assert set(got_record) == set(want_record), (case, run, got_record['step'])
      for key, want in want_record.items():
        value = got_record[key]
        assert math.isclose(value, want, rel_tol=RTOL, abs_tol=ATOL), (
            f'{case} run {run} step {got_record["step"]} {key}: {value} != recorded {want}')


if __name__ == '__main__':
  if sys.argv[1:] != ['--write']:
    sys.exit('usage: python tests/test_golden.py --write   (rewrites ' + GOLDEN_FILE + ')')
  import tempfile
  with tempfile.TemporaryDirectory() as scratch:
    runs = run_cases(scratch)
  os.makedirs(os.path.dirname(GOLDEN_FILE), exist_ok=True)
  with open(GOLDEN_FILE, 'w') as f:
    json.dump(runs, f, indent=1, sort_keys=True)
    f.write('\n')
  print(f'wrote {GOLDEN_FILE}: ' + ', '.join(f'{k} ({len(v)} run(s))' for k, v in runs.items()))
