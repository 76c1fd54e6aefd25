"""Vectorized runs: several runs trained together, vmapped over a run axis, leave the same
workdirs, metrics and parameters as the same runs trained one by one."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from test_train import _read_jsonl, assert_same_training

from conftest import tiny_digits
from transfer_jax.checkpoint import load_params
from transfer_jax.errors import UserError
from transfer_jax.training import train, vectorized
from transfer_jax.training.inputs import TrainBatches, load_domains, make_iterators

# Three runs that differ in the seed and in all three step hyperparameters.
VARIED = [dict(seed=0), dict(seed=1, **{'method.trade_off': 0.3}),
          dict(seed=2, **{'optimizer.learning_rate': 0.05, 'optimizer.weight_decay': 1e-3})]
# One seed (the batch is shared), two trade-offs.
SAME_SEED = [dict(seed=4), dict(seed=4, **{'method.trade_off': 0.1})]


def _configs(settings, **common):
  return [tiny_digits(**common, **s) for s in settings]


@pytest.fixture(scope='module')
def one_by_one(tmp_path_factory):
  root = tmp_path_factory.mktemp('one_by_one')
  workdirs = []
  for i, config in enumerate(_configs(VARIED + SAME_SEED)):
    workdirs.append(str(root / str(i)))
    train.train_and_evaluate(config, workdirs[-1])
  return workdirs


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['vmap', 'unroll'])
@pytest.mark.parametrize('group', ['varied', 'same_seed'])
def test_vectorized_runs_equal_one_by_one_runs(group, mode, one_by_one, tmp_path, monkeypatch):
  # Both ways of stepping a group over its run axis (on CPU this conv net unrolls by default).
  monkeypatch.setattr(vectorized, 'run_axis_mode', lambda config, backend=None: mode)
  settings, expected = ((VARIED, one_by_one[:3]) if group == 'varied'
                        else (SAME_SEED, one_by_one[3:]))
  workdirs = [str(tmp_path / str(i)) for i in range(len(settings))]
  summaries = train.train_runs(_configs(settings), workdirs)
  assert [s['vectorized_runs'] for s in summaries] == [len(settings)] * len(settings)
  for got, want in zip(workdirs, expected, strict=True):
    assert_same_training(got, want, atol=1e-5)
    assert sorted(os.listdir(os.path.join(got, 'checkpoints'))) == ['3', '6']
    with open(os.path.join(got, 'summary.json')) as f:
      assert json.load(f)['steps'] == 6
  # The runs differ from one another (so the comparison above could fail).
  with open(os.path.join(workdirs[0], 'summary.json')) as a, \
       open(os.path.join(workdirs[1], 'summary.json')) as b:
    assert json.load(a)['final'] != json.load(b)['final']


@pytest.mark.slow
def test_an_interrupted_group_resumes_to_the_same_result(one_by_one, tmp_path):
  workdirs = [str(tmp_path / str(i)) for i in range(3)]
  configs = _configs(VARIED)
  train.train_runs(configs, workdirs)
  for workdir in workdirs:   # As if killed between the checkpoints at steps 3 and 6.
    os.remove(os.path.join(workdir, 'summary.json'))
    shutil.rmtree(os.path.join(workdir, 'checkpoints', '6'))
  train.train_runs(configs, workdirs)
  for got, want in zip(workdirs, one_by_one[:3], strict=True):
    # Training metrics logged at step 4 average steps 3-4 in one run and step 4 alone after the
    # resume: compare the evaluations and the final parameters.
    got_eval, want_eval = (_read_jsonl(os.path.join(w, 'metrics.jsonl'))[-1] for w in (got, want))
    for key in ('source/test/loss', 'target/test/loss', 'target/test/accuracy'):
      np.testing.assert_allclose(got_eval[key], want_eval[key], atol=1e-5)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-5),
                 load_params(got), load_params(want))


def test_runs_that_differ_in_other_keys_are_refused(tmp_path):
  configs = [tiny_digits(), tiny_digits('method=dan')]
  with pytest.raises(UserError, match='may differ only in seed.*method.name'):
    train.train_runs(configs, [str(tmp_path / 'a'), str(tmp_path / 'b')])
  assert vectorized.differing_keys(_configs(VARIED)) == [
      'method.trade_off', 'optimizer.learning_rate', 'optimizer.weight_decay', 'seed']


@pytest.mark.slow
@pytest.mark.parametrize('in_memory', [True, False])
def test_a_group_reads_each_runs_batches_in_one_gather(in_memory):
  """TrainBatches gives, stacked, the batches each run's own grain iterators give (in memory:
  one gather for the group; streamed: the runs' iterators), and resumes from their states."""
  configs = _configs(VARIED, **{'data.in_memory': in_memory})
  domains = load_domains(configs[0])
  streams, process = ('source', 'target'), dict(process_index=0, process_count=1)
  group = TrainBatches(streams, domains, configs, process, stacked=True)
  alone = [make_iterators(streams, domains, c, process) for c in configs]
  for _ in range(3):
    batch = group.next()
    for run, iterators in enumerate(alone):
      for stream, iterator in iterators.items():
        expected = next(iterator)
        assert sorted(batch[stream]) == sorted(expected)
        for key, value in expected.items():
          np.testing.assert_array_equal(batch[stream][key][run], value)
  resumed = TrainBatches(streams, domains, configs[1:2], process, stacked=False)
  resumed.set_state(0, {stream: it.get_state() for stream, it in alone[1].items()})
  assert resumed.get_state(0) == group.get_state(1)
  np.testing.assert_array_equal(resumed.next()['target']['input'],
                                next(alone[1]['target'])['input'])


@pytest.mark.slow
def test_a_method_sees_each_runs_trade_off_in_a_group(tmp_path):
  """DANN's transfer loss is trade_off x its domain loss (constant schedule): per run, the ratio
  of the logged means is that run's trade-off, not the first config's."""
  trade_offs = (0.3, 1.0)
  configs = [tiny_digits(seed=i, **{'method.trade_off': t}) for i, t in enumerate(trade_offs)]
  assert configs[0].method.trade_off_schedule == 'constant'
  workdirs = [str(tmp_path / str(i)) for i in range(len(configs))]
  train.train_runs(configs, workdirs)
  for workdir, trade_off in zip(workdirs, trade_offs, strict=True):
    for record in _read_jsonl(os.path.join(workdir, 'metrics.jsonl')):
      if 'train/transfer_loss' in record:
        np.testing.assert_allclose(record['train/transfer_loss'] / record['dann/domain_loss'],
                                   trade_off, rtol=1e-5)


def test_convolutional_groups_unroll_on_cpu_and_dense_ones_vmap():
  conv, dense = tiny_digits(), tiny_digits()
  dense.unlock()
  dense.model.backbone = 'mlp'
  assert vectorized.run_axis_mode(conv, 'cpu') == 'unroll'
  assert vectorized.run_axis_mode(dense, 'cpu') == 'vmap'
  assert vectorized.run_axis_mode(conv, 'gpu') == 'vmap'
  with pytest.raises(ValueError, match="choose 'vmap' or 'unroll'"):
    vectorized.over_runs(lambda *a: a, False, 'pmap')


def test_a_method_cannot_read_the_trade_off_from_the_config():
  from transfer_jax.training.step import MethodSettings
  settings = MethodSettings(tiny_digits().method)
  assert settings.grl_coeff == tiny_digits().method.grl_coeff
  with pytest.raises(AttributeError, match='ctx.trade_off'):
    _ = settings.trade_off
