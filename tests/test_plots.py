"""Figures: learning curves of runs and of a sweep (mean ± std over seeds, checked by hand on
synthetic metrics.jsonl files), the proxy A-distance on hand-made domains, and t-SNE / PAD of the
features of a tiny trained run (the extractor fixture of test_probes.py)."""

import json
import os

import numpy as np
import pytest
from test_probes import tiny_run  # noqa: F401  (a module-scoped fixture: a tiny trained run)

from transfer_jax import plots, plots_features, sweep
from transfer_jax.errors import UserError


def _write_run(workdir, records, finished=True):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in records)
  if finished:
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
      json.dump({'final': records[-1]}, f)


def _accuracy(method, task, seed, step):
  """The synthetic target accuracy of a run: a per-method level, a per-seed offset."""
  return {'a': 0.5, 'b': 0.7}[method] + {'t1': 0.0, 't2': 0.1}[task] + 0.01 * seed * step / 100


def _files(prefix):
  return [os.path.isfile(f'{prefix}.{ext}') and os.path.getsize(f'{prefix}.{ext}') > 0
          for ext in ('png', 'pdf')]


def test_run_curves_have_a_panel_per_metric_and_skip_records_without_it(tmp_path):
  records = [{'step': 50, 'wall_s': 1.0, 'source/train/loss': 2.0},
             {'step': 100, 'wall_s': 2.0, 'source/train/loss': 1.0, 'target/test/accuracy': 0.4},
             {'step': 150, 'wall_s': 3.0, 'source/train/loss': 0.5},
             {'step': 200, 'wall_s': 4.0, 'source/train/loss': 0.2, 'target/test/accuracy': 0.6}]
  _write_run(str(tmp_path / 'run'), records)
  prefix = str(tmp_path / 'figs' / 'curves')
  data = plots.plot_run_curves([str(tmp_path / 'run')],
                               ['source/train/loss', 'target/test/accuracy'], prefix)
  steps, values = data['target/test/accuracy'][str(tmp_path / 'run')]
  np.testing.assert_array_equal(steps, [100, 200])
  np.testing.assert_allclose(values, [0.4, 0.6])
  np.testing.assert_array_equal(data['source/train/loss'][str(tmp_path / 'run')][0],
                                [50, 100, 150, 200])
  assert _files(prefix) == [True, True]
  with pytest.raises(UserError, match='choose --metrics among .*source/train/loss'):
    plots.plot_run_curves([str(tmp_path / 'run')], ['target/test/los'], prefix)
  with pytest.raises(UserError, match='no metrics.jsonl'):
    plots.plot_run_curves([str(tmp_path / 'nothing')], [], prefix)


def test_curves_are_in_percent_with_the_legend_off_the_data_and_labels(tmp_path, capsys):
  for name, level in (('run_a', 0.4), ('run_b', 0.6)):
    _write_run(str(tmp_path / name), [{'step': 100, 'target/test/accuracy': level,
                                       'source/train/loss': 1.0}])
  workdirs = [str(tmp_path / 'run_a'), str(tmp_path / 'run_b')]
  data = plots.plot_run_curves(workdirs, ['target/test/accuracy', 'source/train/loss'],
                               str(tmp_path / 'c'), labels=['DANN', 'MCC'])
  fig = plots.curves_figure(data, ['DANN', 'MCC'])
  accuracy, loss = fig.axes[:2]
  assert [line.get_ydata()[0] for line in accuracy.lines] == [40.0, 60.0]   # Percent.
  assert [line.get_ydata()[0] for line in loss.lines] == [1.0, 1.0]         # Not a fraction.
  assert accuracy.get_ylabel() == 'accuracy (%)' and accuracy.get_legend() is None
  (legend,) = fig.legends   # One legend for the figure, outside every panel.
  assert [t.get_text() for t in legend.get_texts()] == ['DANN', 'MCC']
  # Without --labels, each run is named by its config; two runs that would share a name get
  # their workdir's name.
  assert plots.run_titles(workdirs) == ['run_a', 'run_b']
  assert plots.main(['curves', *workdirs, '--labels=only_one', f'--output={tmp_path}/c']) == 2
  err = capsys.readouterr().err.strip()
  assert '\n' not in err and 'one each' in err


def test_sweep_curves_are_mean_and_std_over_seeds(tmp_path, capsys):
  sweep_file = tmp_path / 'toy_sweep.py'
  sweep_file.write_text(
      "CONFIG = 'configs/digits.py'\n"
      "TABLE = {'rows': 'method', 'columns': 'task', 'seed': 'seed'}\n"
      "def runs():\n"
      "  for task in ('t1', 't2'):\n"
      "    for method in ('a', 'b'):\n"
      "      for seed in (0, 1, 2):\n"
      "        yield {'arg': f'method={method}', 'labels': {'task': task},\n"
      "               'overrides': {'seed': seed, 'data.target.name': task}}\n")
  workdir = tmp_path / 'runs'
  _, runs = sweep.load_sweep(str(sweep_file))
  for run in runs:
    method, task, seed = run['arg'][7:], run['labels']['task'], run['overrides']['seed']
    records = [{'step': s, 'target/test/accuracy': _accuracy(method, task, seed, s),
                'source/train/loss': 1.0} for s in (100, 200, 300)]
    unfinished = (method, task, seed) == ('b', 't2', 2)  # Left out: no summary.json yet.
    _write_run(str(workdir / run['name']), records, finished=not unfinished)
  prefix = str(tmp_path / 'sweep_curves')
  curves = plots.plot_sweep_curves(str(sweep_file), str(workdir), prefix)
  assert list(curves) == ['t1', 't2'] and list(curves['t1']) == ['a', 'b']
  line = curves['t1']['a']
  np.testing.assert_array_equal(line['steps'], [100, 200, 300])
  hand = np.array([[_accuracy('a', 't1', seed, s) for s in (100, 200, 300)] for seed in range(3)])
  np.testing.assert_allclose(line['mean'], hand.mean(0))
  np.testing.assert_allclose(line['std'], hand.std(0))  # 0.01 * step/100 * std(0, 1, 2)
  np.testing.assert_allclose(line['std'][-1], 0.03 * np.std([0, 1, 2]))
  assert curves['t2']['b']['seeds'] == 2 and curves['t1']['b']['seeds'] == 3
  assert '1 unfinished runs left out' in capsys.readouterr().out
  assert _files(prefix) == [True, True]
  fig = plots.sweep_figure(curves, 'target/test/accuracy')
  np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), 100 * hand.mean(0))
  assert fig.axes[0].get_ylabel() == 'target/test/accuracy (%)'
  assert [t.get_text() for t in fig.legends[0].get_texts()] == ['a (n=3)', 'b (n=3)', 'b (n=2)']
  assert all(ax.get_legend() is None for ax in fig.axes)

  # The command line: a chosen subset of columns and rows, another metric.
  assert plots.main(['sweep', str(sweep_file), f'--workdir={workdir}', '--columns=t2',
                     '--rows=b', '--metric=source/train/loss', f'--output={prefix}_t2']) == 0
  assert _files(f'{prefix}_t2') == [True, True]
  subset, _, _ = plots.sweep_curves(str(sweep_file), str(workdir), columns=['t2'], rows=['b'])
  assert list(subset) == ['t2'] and list(subset['t2']) == ['b']
  assert plots.main(['sweep', str(sweep_file), f'--workdir={workdir}', '--metric=x/y',
                     f'--output={prefix}']) == 2
  err = capsys.readouterr().err.strip()
  assert '\n' not in err and '--metric' in err


def test_proxy_a_distance_by_hand():
  # Every case has 400 examples per domain in 5 dimensions: one compiled logistic regression.
  rng = np.random.default_rng(0)
  same = rng.normal(size=(400, 5)), rng.normal(size=(400, 5))
  assert abs(plots_features.proxy_a_distance(*same, seed=0)) < 0.3
  apart = rng.normal(size=(400, 5)), rng.normal(size=(400, 5)) + 10.0
  assert plots_features.proxy_a_distance(*apart, seed=1) == pytest.approx(2.0)
  # Means 2 apart along one axis: the Bayes error is Φ(-1) ≈ 0.16, so PAD ≈ 2 (1 - 0.32) ≈ 1.37.
  shifted = rng.normal(size=(400, 5)), rng.normal(size=(400, 5)) + np.array([2.0, 0, 0, 0, 0])
  assert 1.1 < plots_features.proxy_a_distance(*shifted, seed=0) < 1.6
  with pytest.raises(UserError, match='at least 8 examples'):
    plots_features.proxy_a_distance(np.zeros((5, 2)), np.zeros((9, 2)))


@pytest.mark.slow
def test_tsne_and_pad_of_a_tiny_run(tiny_run, tmp_path, capsys):  # noqa: F811
  cache = str(tmp_path / 'cache')
  prefix = str(tmp_path / 'tsne')
  results = plots_features.plot_tsne(tiny_run, tiny_run, prefix, max_examples=40, cache_dir=cache)
  for result in results.values():
    assert result['embedding'].shape == (80, 2) and np.isfinite(result['embedding']).all()
    assert set(result['domains']) == {'source', 'target'} and set(result['labels']) <= {0, 1, 2}
    assert -2.0 <= result['pad'] <= 2.0
  assert results['before']['pad'] == results['after']['pad']  # The same run, the same seed.
  assert _files(prefix) == [True, True]
  assert 'PAD before' in capsys.readouterr().out

  assert plots.main(['pad', tiny_run, tiny_run, f'--output={tmp_path}/pad', '--labels=blobs',
                     f'--cache_dir={cache}']) == 0
  with open(f'{tmp_path}/pad.json') as f:
    (entry,) = json.load(f)
  assert entry['label'] == 'blobs' and entry['before'] == entry['after']
  assert _files(f'{tmp_path}/pad') == [True, True]
  assert plots.main(['pad', tiny_run, f'--output={tmp_path}/pad']) == 2
  assert 'BEFORE AFTER pairs' in capsys.readouterr().err
  assert plots.main(['tsne', tiny_run, tiny_run, '--target_split=nope',
                     f'--cache_dir={cache}', f'--output={prefix}']) == 2
  assert 'choose among' in capsys.readouterr().err

