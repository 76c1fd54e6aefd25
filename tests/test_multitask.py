"""Multi-task (a head per task on one trunk) and multi-source (several labelled source domains
for the main classifier) through config.tasks, in the one training loop."""

import json
import os

import jax
import numpy as np
import pytest

from conftest import ROOT, TFDS_DIR, tiny_digits
from transfer_jax import config_lib
from transfer_jax.checkpoint import load_params
from transfer_jax.config_lib import domain_config, task_config
from transfer_jax.training import train

SHARED_DATA = os.path.join(ROOT, '..', 'shared', 'datasets')


def _with_task(config, name, task):
  config.unlock()
  config.tasks[name] = task
  config.lock()
  return config


def _first_record(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return json.loads(f.readline())


@pytest.mark.slow
def test_a_task_with_its_own_head_trains_and_is_evaluated_with_it(tmp_path):
  opt = task_config(domain_config('optdigits', test_split='holdout', box_size=20), head='opt',
                    weight=0.5)
  config = _with_task(tiny_digits('method=source_only',
                                  eval_splits="('source/test', 'opt/test')"), 'opt', opt)
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert {'opt/test/accuracy', 'source/test/accuracy'} <= set(summary['final'])
  assert {'opt/train/loss', 'opt/train/accuracy'} <= set(_first_record(str(tmp_path)))
  params = load_params(str(tmp_path))
  head, main = params['task_heads_opt'], params['classifier']
  assert jax.tree.structure(head) == jax.tree.structure(main)   # Same head shape, own weights.
  assert not np.array_equal(head['out']['kernel'], main['out']['kernel'])


def test_an_unknown_task_in_eval_splits_names_the_roles(tmp_path):
  with pytest.raises(ValueError, match='roles: source, target and the names of config.tasks'):
    train.train_and_evaluate(tiny_digits(eval_splits="('nothing/test',)"), str(tmp_path))


@pytest.mark.slow
def test_multi_source_adaptation_feeds_every_source_to_the_alignment_term(tmp_path):
  """Three SURF domains into the fourth: one batch per source domain, DANN sees them all."""
  if not os.path.isdir(SHARED_DATA):
    pytest.skip(f'needs the real data in {SHARED_DATA}')
  config = config_lib.load_config(
      os.path.join(ROOT, 'configs', 'office_caltech_surf.py:tiny,source=ACD,target=W,method=dann'),
      ['compilation_cache_dir=', f'data.data_dir={TFDS_DIR}', f'data.manual_dir={SHARED_DATA}'])
  assert sorted(config.tasks) == ['C', 'D'] and not config.tasks.C.head
  train.train_and_evaluate(config, str(tmp_path))
  record = _first_record(str(tmp_path))
  assert {'C/train/loss', 'D/train/loss', 'dann/domain_loss'} <= set(record)
  with pytest.raises(ValueError, match='distinct source letters'):
    config_lib.load_config(os.path.join(ROOT, 'configs', 'office_caltech_surf.py:source=AW,'
                                        'target=W'))


@pytest.mark.slow
def test_net2net_grown_model_loads_through_init_from_and_computes_the_small_function(tmp_path):
  """T6's path: pretrain the small growable net, grow it (noise 0), save .npz, and start the
  large run from it: every leaf loads and the grown net's first eval equals the small net's."""
  if not os.path.isdir(SHARED_DATA):
    pytest.skip(f'needs the real data in {SHARED_DATA}')
  from experiments.t6_net2net import grow
  common = ['compilation_cache_dir=', f'data.data_dir={TFDS_DIR}', f'data.manual_dir={SHARED_DATA}']
  spec = os.path.join(ROOT, 'configs', 'net2net_digits.py:tiny,stage=')
  small_dir, grown_dir = str(tmp_path / 'small'), str(tmp_path / 'grown')
  small = train.train_and_evaluate(config_lib.load_config(spec + 'pretrain', common), small_dir)
  npz = str(tmp_path / 'grown.npz')
  assert grow(small_dir, npz, seed=0, noise=0.0) < 1e-5
  config = config_lib.load_config(spec + 'grown', common + [
      f'init_from.path={npz}', 'optimizer.learning_rate=0.0', 'eval_splits=("target/test",)'])
  grown = train.train_and_evaluate(config, grown_dir)
  with open(os.path.join(grown_dir, 'init_from.txt')) as f:
    table = f.read()
  assert ' new ' not in table and 'loaded' in table
  np.testing.assert_allclose(grown['final']['target/test/loss'],
                             small['final']['target/test/loss'], rtol=1e-4)
