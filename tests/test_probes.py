"""Feature extraction and linear probes: ridge against lstsq, logistic regression at its optimum,
the feature cache (hit, and a miss when the weights or preprocessing change), and the probe
command end to end on a tiny trained run."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from conftest import ROOT
from transfer_jax import config_lib, data, probe
from transfer_jax.features import extract, probes
from transfer_jax.objectives import linear
from transfer_jax.training import train


def _blobs(n: int, d: int, classes: int, shift: float, seed: int):
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % classes
  centres = np.random.default_rng(0).normal(size=(classes, d)) * 2.0
  return (centres[labels] + rng.normal(size=(n, d)) + shift).astype(np.float32), labels


@pytest.mark.parametrize('n,d', [(40, 6), (6, 10)])  # The primal solve, then the dual one.
def test_ridge_equals_the_lstsq_solution(n, d):
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(n, d)), np.eye(3)[rng.integers(0, 3, n)]
  l2 = 0.1
  kernel, bias = linear.ridge_fit(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), l2)
  # (1/n)||Xc W - Yc||^2 + l2 ||W||^2 is the least-squares problem [Xc; sqrt(n l2) I] W = [Yc; 0].
  xc, yc = x - x.mean(0), y - y.mean(0)
  expected = np.linalg.lstsq(np.vstack([xc, np.sqrt(n * l2) * np.eye(d)]),
                             np.vstack([yc, np.zeros((d, 3))]), rcond=None)[0]
  np.testing.assert_allclose(kernel, expected, atol=1e-5)
  np.testing.assert_allclose(bias, y.mean(0) - x.mean(0) @ expected, atol=1e-5)


@pytest.mark.parametrize('separable', [True, False])
def test_logistic_regression_reaches_the_optimum(separable):
  x, labels = _blobs(60, 3, 3, 0.0, seed=2)
  if separable:
    x = x + 20.0 * np.eye(3, dtype=np.float32)[labels]  # Far apart: only L2 keeps W finite.
  l2 = 1e-2
  params = linear.logistic_fit(jnp.asarray(x), jnp.asarray(labels), l2, 3)
  grad = jax.grad(linear.logistic_loss)(params, x, labels, l2)
  assert max(float(jnp.abs(g).max()) for g in grad) < 1e-4, 'the gradient vanishes there'

  def loss64(flat):  # The same objective in float64, for scipy.
    kernel, bias = flat[:9].reshape(3, 3), flat[9:]
    logits = x.astype(np.float64) @ kernel + bias
    logits -= logits.max(1, keepdims=True)
    nll = np.log(np.exp(logits).sum(1)) - logits[np.arange(len(labels)), labels]
    return nll.mean() + 0.5 * l2 * np.sum(kernel ** 2)

  reference = scipy.optimize.minimize(loss64, np.zeros(12), method='BFGS', options=dict(gtol=1e-9))
  found = loss64(np.concatenate([np.ravel(params[0]), params[1]]).astype(np.float64))
  assert found == pytest.approx(reference.fun, abs=1e-5)
  # W is unique under the L2 penalty (the unpenalised bias only up to a constant).
  np.testing.assert_allclose(params[0], reference.x[:9].reshape(3, 3), atol=2e-3)


def test_selection_uses_the_source_val_split_and_prefers_stronger_l2_on_ties():
  train_x, train_y = _blobs(90, 4, 3, 0.0, seed=3)
  val_x, val_y = _blobs(30, 4, 3, 0.0, seed=4)
  calls = []

  def fake_fit(kind, features, labels, num_classes, l2):
    calls.append((len(labels), l2))
    return probes.LinearProbe(jnp.zeros(4), jnp.ones(4), jnp.zeros((4, 3)), jnp.zeros(3))

  selected = probes.select('ridge', (train_x, train_y), (val_x, val_y), 3, grid=(0.1, 1.0, 10.0),
                           fit_fn=fake_fit)
  assert selected.l2 == 10.0 and selected.val_accuracy == pytest.approx(1 / 3)
  assert calls == [(90, 10.0), (90, 1.0), (90, 0.1), (120, 10.0)], 'refit on train + val'


def _register_domains():
  for name, shift, seed in (('probe_source', 0.0, 5), ('probe_target', 0.7, 6)):
    features, labels = _blobs(240, 8, 3, shift, seed)
    data.register_arrays(name, {'train': {'features': features, 'label': labels}})


OVERRIDES = ['compilation_cache_dir=', 'data.source.name=probe_source',
             'data.target.name=probe_target', 'data.source.test_split=holdout',
             'data.target.test_split=holdout', 'data.source.val_fraction=0.2',
             'model.backbone_hidden=(16,)', 'eval_batch_size=64']
SPEC = os.path.join(ROOT, 'configs', 'amazon_reviews.py:tiny,method=source_only')


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  """A tiny source-only run on registered blobs: the trained extractor (checkpoints at 3, 6)."""
  _register_domains()
  workdir = str(tmp_path_factory.mktemp('tiny_run'))
  train.train_and_evaluate(config_lib.load_config(SPEC, OVERRIDES), workdir)
  return workdir


def test_features_are_cached_and_the_key_follows_weights_and_preprocessing(
    tiny_run, tmp_path, monkeypatch):
  calls = []
  compute = extract.compute_features
  monkeypatch.setattr(extract, 'compute_features',
                      lambda *args, **kwargs: calls.append(1) or compute(*args, **kwargs))

  def extract_with(*overrides):
    config = config_lib.load_config(SPEC, [*OVERRIDES, f'init_from.path={tiny_run}', *overrides])
    return extract.extract_all(config, str(tmp_path))[0]

  first = extract_with()
  splits = {'source/train', 'source/val', 'source/test', 'target/train', 'target/test'}
  assert set(first) == splits and len(calls) == 5
  assert first['source/train'].features.shape[1] == 16
  second = extract_with()
  assert len(calls) == 5, 'a second call reads the cache and never runs the extractor'
  assert all(f.cached for f in second.values())
  np.testing.assert_array_equal(second['target/test'].features, first['target/test'].features)
  earlier = extract_with('init_from.step=3')  # Other weights: every split misses.
  assert len(calls) == 10 and not any(f.cached for f in earlier.values())
  assert not np.allclose(earlier['source/train'].features, first['source/train'].features)
  extract_with('data.normalize=standardize')  # Other preprocessing: a miss too.
  assert len(calls) == 15
  assert len(os.listdir(tmp_path)) == 15


@pytest.mark.slow
def test_probe_command_end_to_end(tiny_run, tmp_path, capsys):
  workdir = str(tmp_path / 'probe')
  argv = [f'--config={SPEC}', f'--workdir={workdir}', *(f'--config.{o}' for o in OVERRIDES),
          f'--config.init_from.path={tiny_run}']
  assert probe.main(argv) == 0
  with open(os.path.join(workdir, 'probe.json')) as f:
    report = json.load(f)
  for kind in ('ridge', 'logistic'):
    result = report['probes'][kind]
    assert result['source/val/accuracy'] > 0.6 and result['source/test/accuracy'] > 0.6, result
    assert 0.0 <= result['target/test/accuracy'] <= 1.0
  assert report['source_val'] == 'source/val'
  assert 'logistic' in capsys.readouterr().out
  assert probe.main([*argv, '--raw']) == 0   # The inputs themselves: 8-d.
  with open(os.path.join(workdir, 'probe.json')) as f:
    assert json.load(f)['features']['source/train']['shape'][1] == 8


def test_probe_without_weights_is_a_one_line_error(tmp_path, capsys):
  _register_domains()
  argv = [f'--config={SPEC}', f'--workdir={tmp_path}', *(f'--config.{o}' for o in OVERRIDES)]
  assert probe.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert '\n' not in err and 'init_from.path' in err and '--raw' in err
  assert probe.main(['--workdir=x']) == 2
  assert 'python -m transfer_jax.probe' in capsys.readouterr().err


def test_the_key_follows_the_preprocessing_code(tmp_path):
  package = tmp_path / 'fake_package'
  package.mkdir()
  (package / '__init__.py').write_text('')
  (package / 'preprocess.py').write_text('SCALE = 1 / 255\n')
  fake = type('Module', (), {'__file__': str(package / '__init__.py')})
  before = extract.code_digest(fake)
  (package / 'preprocess.py').write_text('SCALE = 1 / 127.5\n')
  assert extract.code_digest(fake) != before
