"""Sweeps: sweep files, deterministic run names, resumable runs that are never executed twice,
the inline and submitit-local executors."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, TFDS_DIR
from transfer_jax import sweep

SWEEP = textwrap.dedent(f"""
    from transfer_jax.sweep import grid
    CONFIG = {os.path.join(ROOT, 'configs', 'digits.py')!r}

    def runs():
      for point in grid(seed=[0, 1]):
        yield {{'arg': 'tiny,method=source_only',
               'overrides': {{'seed': point['seed'], 'compilation_cache_dir': '',
                             'data.data_dir': {TFDS_DIR!r}, 'total_steps': 3}}}}
""")


@pytest.fixture
def sweep_file(tmp_path):
  path = tmp_path / 'tiny_sweep.py'
  path.write_text(SWEEP)
  return str(path)


def test_grid_random_search_and_run_names_are_deterministic():
  assert list(sweep.grid(a=[1, 2], b=['x'])) == [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'x'}]
  draws = list(sweep.random_search(5, seed=3, lr=('log', 1e-4, 1e-1), m=['sgd', 'adam']))
  assert draws == list(sweep.random_search(5, seed=3, lr=('log', 1e-4, 1e-1), m=['sgd', 'adam']))
  assert all(1e-4 <= d['lr'] <= 1e-1 and d['m'] in ('sgd', 'adam') for d in draws)
  name = sweep.run_name('configs/x.py', 'method=dann', {'seed': 0, 'method.trade_off': 0.3})
  assert name == sweep.run_name('configs/x.py', 'method=dann', {'method.trade_off': 0.3, 'seed': 0})
  assert name.startswith('method=dann_seed=0_trade_off=0.3-')
  assert name != sweep.run_name('configs/x.py', 'method=dann', {'seed': 1, 'method.trade_off': 0.3})


def test_sweep_runs_each_run_once_and_a_rerun_skips_them(sweep_file, tmp_path, capsys):
  workdir = str(tmp_path / 'runs')
  first = sweep.run_sweep(sweep_file, workdir)
  assert len(first['trained']) == 2 and not first['failed']
  second = sweep.run_sweep(sweep_file, workdir)
  assert sorted(second['done']) == sorted(first['trained']) and not second['trained']
  # A run interrupted after its last checkpoint (no summary yet) resumes instead of restarting.
  os.remove(os.path.join(workdir, first['trained'][0], 'summary.json'))
  capsys.readouterr()
  third = sweep.run_sweep(sweep_file, workdir)
  assert third['trained'] == [first['trained'][0]]
  assert 'resuming' in capsys.readouterr().out


def test_a_live_lock_is_respected_and_a_dead_ones_is_taken_over(sweep_file, tmp_path):
  workdir = str(tmp_path / 'runs')
  _, runs = sweep.load_sweep(sweep_file)
  live, dead = (os.path.join(workdir, run['name']) for run in runs)
  finished = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                            capture_output=True, text=True)
  for run_dir, pid in ((live, os.getppid()), (dead, int(finished.stdout))):
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, sweep.LOCK_FILE), 'w') as f:
      f.write(f'{{"host": "{socket.gethostname()}", "pid": {pid}}}')
  outcomes = sweep.run_sweep(sweep_file, workdir)
  assert outcomes['running'] == [runs[0]['name']] and outcomes['trained'] == [runs[1]['name']]
  assert not os.path.exists(os.path.join(dead, sweep.LOCK_FILE))   # Released after training.


def test_submitit_local_executor_trains_the_runs(sweep_file, tmp_path):
  pytest.importorskip('submitit')
  workdir = str(tmp_path / 'runs')
  outcomes = sweep.run_sweep(sweep_file, workdir, executor='submitit_local')
  assert len(outcomes['trained']) == 2, outcomes
  assert all(os.path.exists(os.path.join(workdir, name, 'summary.json'))
             for name in outcomes['trained'])


def test_bad_sweep_files_are_one_line_errors(tmp_path, capsys):
  assert sweep.main([str(tmp_path / 'missing.py')]) == 2
  assert 'no sweep file' in capsys.readouterr().err
  twice = tmp_path / 'twice.py'
  twice.write_text("CONFIG = 'configs/digits.py'\ndef runs():\n  yield {}\n  yield {}\n")
  assert sweep.main([str(twice)]) == 2
  assert 'twice' in capsys.readouterr().err


def test_two_processes_preparing_one_dataset_take_turns(tmp_path):
  """Parallel runs of a sweep may prepare the same TFDS dataset at once: both must succeed."""
  code = ('import sys; from transfer_jax.data.builders import load_split; '
          'print(len(load_split("optdigits", "train", sys.argv[1])["label"]))')
  procs = [subprocess.Popen([sys.executable, '-c', code, str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  outputs = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [err[-500:] for _, err in outputs]
  assert [out.strip().splitlines()[-1] for out, _ in outputs] == ['1797', '1797']


REPORT_SWEEP = textwrap.dedent(f"""
    CONFIG = {os.path.join(ROOT, 'configs', 'digits.py')!r}
    TABLE = {{'rows': 'method', 'columns': 'task', 'seed': 'seed', 'title': 'tiny'}}

    def runs():
      for method in ('source_only', 'dann'):
        for seed in (0, 1):
          yield {{'arg': f'tiny,method={{method}}', 'labels': {{'task': 'M→O'}},
                 'overrides': {{'seed': seed, 'compilation_cache_dir': '',
                               'data.data_dir': {TFDS_DIR!r}, 'total_steps': 3}}}}
""")


def test_report_gathers_the_runs_into_markdown_and_latex_tables(tmp_path):
  import numpy as np

  from transfer_jax import report
  from transfer_jax.training import workdir as workdir_lib
  path = tmp_path / 'report_sweep.py'
  path.write_text(REPORT_SWEEP)
  workdir, output = str(tmp_path / 'runs'), str(tmp_path / 'table')
  assert report.main([str(path), f'--workdir={workdir}', f'--output={output}']) == 2  # No runs.
  sweep.run_sweep(str(path), workdir)
  assert report.main([str(path), f'--workdir={workdir}', f'--output={output}']) == 0
  with open(output + '.md') as md, open(output + '.tex') as tex:
    markdown, latex = md.read(), tex.read()
  _, runs = sweep.load_sweep(str(path))
  dann = [100 * workdir_lib.read_summary(os.path.join(workdir, r['name']))['final'][
      'target/test/accuracy'] for r in runs if 'dann' in r['arg']]
  assert f'| dann | {np.mean(dann):.1f} ± {np.std(dann):.1f} |' in markdown
  assert '| source_only |' in markdown and 'Runs made at commit' in markdown
  assert '\\toprule' in latex and 'source\\_only' in latex and '\\pm' in latex


def test_report_puts_the_selection_rules_side_by_side(tmp_path):
  from transfer_jax import report
  text = REPORT_SWEEP.replace("'title': 'tiny'}", "'title': 'tiny', 'selection': True}").replace(
      "'total_steps': 3", "'total_steps': 6, 'selection': True, 'data.source.val_fraction': 0.2, "
      "'data.target.val_fraction': 0.2, 'eval_splits': ('target/test', 'target/oracle_val')")
  path = tmp_path / 'select_sweep.py'
  path.write_text(text)
  workdir, output = str(tmp_path / 'runs'), str(tmp_path / 'table')
  sweep.run_sweep(str(path), workdir)
  assert report.main([str(path), f'--workdir={workdir}', f'--output={output}']) == 0
  with open(output + '.md') as f:
    markdown = f.read()
  header = '| method | last | source_val | entropy | snd | iwv | dev | oracle |'
  assert header in markdown and '## selection rule: dev' in markdown
