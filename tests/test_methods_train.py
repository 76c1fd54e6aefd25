"""Every method trains end to end from a config (the tiny digits LeNet run), through the one
loop; batch statistics of the alignment terms are global (1 device = 8 devices); SHOT runs
source-free from a source model and keeps its classifier fixed."""

import json
import os

import jax
import numpy as np
import pytest
from jax.sharding import Mesh
from test_train import assert_same_training

from conftest import ROOT, TFDS_DIR, tiny_digits
from transfer_jax import config_lib
from transfer_jax.checkpoint import load_params
from transfer_jax.objectives import METHODS
from transfer_jax.training import train

# dann and source_only are covered by tests/test_train.py; shot needs a source model (below).
TRAINED_HERE = [name for name in METHODS if name not in ('dann', 'source_only', 'shot', 'adda')]


def _records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def source_model(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('source_only'))
  train.train_and_evaluate(tiny_digits('method=source_only'), workdir)
  return workdir


@pytest.mark.slow
@pytest.mark.parametrize('name', TRAINED_HERE)
def test_method_trains_from_its_config(name, tmp_path):
  summary = train.train_and_evaluate(tiny_digits(f'method={name}'), str(tmp_path))
  assert summary['steps'] == 6
  first = _records(str(tmp_path))[0]
  prefix = {'cdan_e': 'cdan', 'residual_fusion': 'fusion'}.get(name, name)
  terms = [key for key in first if key.startswith(f'{prefix}/')]
  assert terms, f'{name} logged no metrics of its own: {sorted(first)}'
  assert all(np.isfinite(first[key]) for key in terms + ['train/transfer_loss'])
  assert 0.0 <= summary['final']['target/test/accuracy'] <= 1.0


@pytest.mark.slow
def test_shot_adapts_source_free_with_a_fixed_classifier(source_model, tmp_path):
  config = tiny_digits('method=shot', **{'init_from.path': source_model})
  assert config.objective.source_weight == 0.0 and config.init_from.required
  train.train_and_evaluate(config, str(tmp_path))
  records = _records(str(tmp_path))
  assert 'source/train/loss' not in records[0]   # No source batch was drawn.
  assert np.isfinite(records[0]['shot/pseudo_loss'])
  before, after = load_params(source_model), load_params(str(tmp_path))
  jax.tree.map(np.testing.assert_array_equal, before['classifier'], after['classifier'])
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before['backbone']),
                                                      jax.tree.leaves(after['backbone']),
                                                      strict=True)]
  assert any(moved)


def test_shot_without_a_source_model_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match='init_from'):
    train.train_and_evaluate(tiny_digits('method=shot'), str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize('name', ['jan', 'mcc'])
def test_global_batch_statistics_agree_on_one_and_eight_devices(name, tmp_path, eight_devices):
  """Kernels over the whole batch and class-confusion matrices are global-batch statistics."""
  eight, one = str(tmp_path / 'eight'), str(tmp_path / 'one')
  train.train_and_evaluate(tiny_digits(f'method={name}'), eight)
  train.train_and_evaluate(tiny_digits(f'method={name}'), one,
                           mesh=Mesh(np.asarray(eight_devices[:1]), ('data',)))
  assert_same_training(one, eight, atol=1e-5)


SHARED_DATA = os.path.join(ROOT, '..', 'shared', 'datasets')


def tllib_tiny(arg: str, **overrides):
  """configs/mnist_usps_tllib.py in tiny mode (TLlib's digits LeNet) on the real MNIST/USPS."""
  if not os.path.isdir(SHARED_DATA):
    pytest.skip(f'needs the real data in {SHARED_DATA}')
  overrides = {'compilation_cache_dir': '', 'data.data_dir': TFDS_DIR,
               'data.manual_dir': SHARED_DATA, **overrides}
  spec = os.path.join(ROOT, 'configs', 'mnist_usps_tllib.py') + ':tiny,' + arg
  return config_lib.load_config(spec, [f'{k}={v}' for k, v in overrides.items()])


@pytest.mark.slow
@pytest.mark.parametrize('name', ['bsp', 'mcd'])
def test_tllib_methods_run_from_the_tllib_config_in_tiny_mode(name, tmp_path):
  summary = train.train_and_evaluate(tllib_tiny(f'method={name}'), str(tmp_path))
  assert summary['steps'] == 6
  first = _records(str(tmp_path))[0]
  assert all(np.isfinite(value) for key, value in first.items() if key.startswith(f'{name}/'))
  assert 0.0 <= summary['final']['target/test/accuracy'] <= 1.0


@pytest.mark.slow
def test_adda_adapts_a_target_encoder_from_a_source_model_with_a_fixed_classifier(tmp_path):
  """The paper's ADDA through configs/mnist_usps_tllib.py: a source-only run with the same
  network, then ADDA from it: the classifier never moves, the target encoder does."""
  pretrain = str(tmp_path / 'pretrain')
  train.train_and_evaluate(tllib_tiny('method=source_only', **{'model.bottleneck_dim': 16}),
                           pretrain)
  config = tllib_tiny('method=adda', **{'init_from.path': pretrain})
  assert config.init_from.required and config.objective.source_weight == 0.0
  summary = train.train_and_evaluate(config, str(tmp_path / 'adda'))
  assert summary['steps'] == 6
  records = _records(str(tmp_path / 'adda'))
  assert 'source/train/loss' not in records[0]
  assert all(np.isfinite(records[0][key]) for key in ('adda/domain_loss', 'adda/mapping_loss'))
  before, after = load_params(pretrain), load_params(str(tmp_path / 'adda'))
  jax.tree.map(np.testing.assert_array_equal, before['classifier'], after['classifier'])
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(before['backbone']), jax.tree.leaves(after['backbone']), strict=True))
  with pytest.raises(ValueError, match='init_from'):
    train.train_and_evaluate(tllib_tiny('method=adda'), str(tmp_path / 'no_source'))
