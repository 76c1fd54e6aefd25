"""Sweeps: sweep files, deterministic run names, resumable runs that are never executed twice,
the inline and submitit-local executors."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, TFDS_DIR
from transfer_jax import sweep, sweep_worker
from transfer_jax.sweep_file import LOCATION_KEYS, legacy_run_name, run_name
from transfer_jax.training import runtime
from transfer_jax.training import workdir as workdir_lib

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
  name = run_name('configs/x.py', 'method=dann', {'seed': 0, 'method.trade_off': 0.3})
  assert name == run_name('configs/x.py', 'method=dann', {'method.trade_off': 0.3, 'seed': 0})
  assert name.startswith('method=dann_seed=0_trade_off=0.3-')
  assert name != run_name('configs/x.py', 'method=dann', {'seed': 1, 'method.trade_off': 0.3})


@pytest.mark.slow
def test_sweep_runs_each_run_once_and_a_rerun_skips_them(sweep_file, tmp_path, capsys):
  workdir = str(tmp_path / 'runs')
  first = sweep.run_sweep(sweep_file, workdir)
  assert len(first['trained']) == 2 and not first['failed']
  out = capsys.readouterr().out
  # Progress as runs start and end, then the table's wall time and runs per hour.
  assert '[0/2 finished, 0 failed, 2 remaining, ETA after the first run] training ' in out, out
  assert '[1/2 finished, 0 failed, 1 remaining, ETA 0:' in out
  assert '[2/2 finished, 0 failed, 0 remaining' in out
  assert 'table: this sweep trained 2 run(s) in 0:' in out and 'runs/hour' in out
  for name in first['trained']:  # Each run's log lies in its workdir.
    with open(os.path.join(workdir, name, 'train.log')) as f:
      assert 'steps/s' in f.read()
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
  for run_dir in (live, dead):
    os.makedirs(run_dir)
  # A live holder: a process that keeps the kernel lock; a dead one left only its lock file.
  holder = subprocess.Popen([sys.executable, '-c', (
      'import fcntl, sys, time; f = open(sys.argv[1], "a"); fcntl.flock(f, fcntl.LOCK_EX); '
      'f.write("{\\"pid\\": 1, \\"host\\": \\"h\\"}"); f.flush(); print("locked", flush=True); '
      'time.sleep(600)'), os.path.join(live, workdir_lib.LOCK_FILE)], stdout=subprocess.PIPE,
      text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    with open(os.path.join(dead, workdir_lib.LOCK_FILE), 'w') as f:
      f.write(f'{{"host": "{socket.gethostname()}", "pid": 999999}}')
    outcomes = sweep.run_sweep(sweep_file, workdir)
  finally:
    holder.kill()
    holder.wait()
  assert outcomes['running'] == [runs[0]['name']] and outcomes['trained'] == [runs[1]['name']]
  assert workdir_lib.lock_holder(dead) is None   # Released after training.


@pytest.mark.slow
def test_submitit_local_executor_trains_the_runs(sweep_file, tmp_path):
  pytest.importorskip('submitit')
  workdir = str(tmp_path / 'runs')
  outcomes = sweep.run_sweep(sweep_file, workdir, executor='submitit_local')
  assert len(outcomes['trained']) == 2, outcomes
  assert all(os.path.exists(os.path.join(workdir, name, 'summary.json'))
             for name in outcomes['trained'])
  for name in outcomes['trained']:
    with open(os.path.join(workdir, name, 'train.log')) as f:
      assert 'steps/s' in f.read()


def test_the_slurm_executor_without_slurm_is_a_one_line_error(sweep_file, tmp_path, monkeypatch):
  from transfer_jax.errors import UserError
  monkeypatch.setenv('PATH', str(tmp_path))  # No sbatch anywhere on PATH.
  with pytest.raises(UserError, match='needs Slurm .no sbatch'):
    sweep.run_sweep(sweep_file, str(tmp_path / 'runs'), executor='slurm')
  assert not os.path.exists(tmp_path / 'runs')  # Nothing written.


def test_bad_sweep_files_are_one_line_errors(tmp_path, capsys):
  assert sweep.main([str(tmp_path / 'missing.py')]) == 2
  assert 'no sweep file' in capsys.readouterr().err
  twice = tmp_path / 'twice.py'
  twice.write_text("CONFIG = 'configs/digits.py'\ndef runs():\n  yield {}\n  yield {}\n")
  assert sweep.main([str(twice)]) == 2
  assert 'twice' in capsys.readouterr().err


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


DEPENDENT_SWEEP = textwrap.dedent(f"""
    import json, os
    CONFIG = {os.path.join(ROOT, 'configs', 'digits.py')!r}
    COMMON = {{'compilation_cache_dir': '', 'data.data_dir': {TFDS_DIR!r}, 'total_steps': 3}}

    def check_pretrained(run_dir, sweep_workdir):
      # Runs in the sweep process once 'pretrain' is done, before 'finetune' trains.
      with open(os.path.join(sweep_workdir, 'before.json'), 'w') as f:
        json.dump({{'run_dir': run_dir, 'pretrain_done': os.path.exists(
            os.path.join(sweep_workdir, 'pretrain', 'summary.json'))}}, f)

    def runs():
      yield {{'arg': 'tiny,method=source_only', 'needs': ['pretrain'], 'before': check_pretrained,
             'overrides': {{**COMMON, 'init_from.path': '{{sweep_workdir}}/pretrain'}}}}
      yield {{'name': 'pretrain', 'arg': 'tiny,method=source_only', 'overrides': COMMON}}
""")


@pytest.mark.slow
def test_a_run_that_needs_another_starts_from_its_finished_workdir(tmp_path):
  """The process executor with 2 slots would start both runs at once: the waves make the
  fine-tuning run wait for the pretraining run, whose workdir it loads through {sweep_workdir}."""
  import json
  path = tmp_path / 'dependent_sweep.py'
  path.write_text(DEPENDENT_SWEEP)
  _, runs = sweep.load_sweep(str(path))
  finetune = runs[0]['name']
  assert [r['wave'] for r in runs] == [1, 0] and runs[1]['name'] == 'pretrain'
  assert finetune == sweep.load_sweep(str(path))[1][0]['name']   # No workdir in the name.
  workdir = str(tmp_path / 'runs')
  outcomes = sweep.run_sweep(str(path), workdir, executor='process', parallel=2)
  assert outcomes['trained'] == ['pretrain', finetune], outcomes
  for name in outcomes['trained']:   # The process executor keeps each run's log too.
    with open(os.path.join(workdir, name, 'train.log')) as f:
      assert 'steps/s' in f.read()
  with open(os.path.join(workdir, 'before.json')) as f:
    assert json.load(f) == {'run_dir': os.path.join(workdir, finetune), 'pretrain_done': True}
  with open(os.path.join(workdir, finetune, 'init_from.txt')) as f:
    assert ' new ' not in f.read()   # Every leaf loaded from the pretrained run.
  with open(os.path.join(workdir, finetune, 'config.json')) as f:
    assert json.load(f)['init_from']['path'] == os.path.join(workdir, 'pretrain')


def test_a_run_whose_need_failed_is_blocked_and_bad_needs_are_one_line_errors(tmp_path, capsys):
  def sweep_file(body):
    path = tmp_path / 'needs_sweep.py'
    path.write_text(f"CONFIG = 'configs/digits.py'\n{body}")
    return str(path)

  failing = sweep_file(textwrap.dedent("""
      def broken(run_dir, sweep_workdir):
        raise OSError('no checkpoint to grow')

      def runs():
        yield {'name': 'small', 'arg': 'tiny', 'before': broken}
        yield {'name': 'grown', 'arg': 'tiny', 'needs': ['small']}
        yield {'name': 'after_grown', 'arg': 'tiny', 'needs': ['grown', 'small']}
  """))
  _, runs = sweep.load_sweep(failing)
  assert [r['wave'] for r in runs] == [0, 1, 2]
  outcomes = sweep.run_sweep(failing, str(tmp_path / 'runs'))
  assert outcomes['failed'] == ['small'] and outcomes['blocked'] == ['grown', 'after_grown']
  assert 'no checkpoint to grow' in capsys.readouterr().err
  for body, message in (
      ("def runs():\n  yield {'name': 'a', 'needs': ['b']}\n", "needs 'b'"),
      ("def runs():\n  yield {'name': 'a', 'needs': ['b']}\n  yield {'name': 'b', 'needs': "
       "['a']}\n", 'cycle: a -> b -> a'),
      ("def runs():\n  yield {'name': 'a/b'}\n", 'plain folder name'),
      ("def runs():\n  yield {'name': 'a', 'before': 'grow'}\n", 'before must be a function')):
    assert sweep.main([sweep_file(body), f'--workdir={tmp_path / "runs"}']) == 2
    assert message in capsys.readouterr().err
  assert sweep.main([sweep_file("def runs():\n  yield {}\n"), '--override', 'total_steps']) == 2
  assert 'KEY=VALUE' in capsys.readouterr().err


VERSUS_SWEEP = textwrap.dedent("""
    CONFIG = 'configs/digits.py'
    TABLE = {'rows': 'recipe', 'columns': 'k', 'seed': 'seed', 'title': 'versus',
             'versus': 'scratch', 'notes': ['Anchor: 88.0 (a paper).', '| a | b |\\n|---|---|']}

    def runs():
      yield {'name': 'pretrain', 'arg': 'tiny'}
      for recipe in ('scratch', 'finetune'):
        for k in (10, 50):
          for seed in (0, 1):
            yield {'name': f'{recipe}_{k}_{seed}', 'arg': 'tiny',
                   'needs': ['pretrain'] if recipe == 'finetune' else [],
                   'labels': {'recipe': recipe, 'k': f'{k} / class', 'seed': seed}}
""")
# Hand-written summaries: (accuracy, wall_s, trainable parameters) per run.
VERSUS_SUMMARIES = {
    'scratch_10_0': (0.80, 10.0, 1000), 'scratch_10_1': (0.82, 12.0, 1000),
    'scratch_50_0': (0.90, 10.0, 1000), 'scratch_50_1': (0.92, 12.0, 1000),
    # The finetune runs were trained two at a time (vectorized): 44 s shared by 2 runs.
    'finetune_10_0': (0.84, 44.0, 10), 'finetune_10_1': (0.86, 44.0, 10),
    'finetune_50_0': (0.94, 44.0, 10), 'finetune_50_1': (0.92, 44.0, 10),
    'pretrain': (0.50, 100.0, 1000)}


def test_report_compares_transfer_with_the_scratch_row_and_writes_the_notes(tmp_path, capsys):
  """Per-seed averages: scratch 85, 87 -> 86.0 ± 1.0; finetune 89, 89 -> 89.0 ± 0.0 (+3.0);
  wall 11 s against 22 s (x2.00). The pretraining run is listed, not tabled."""
  import json

  from transfer_jax import report
  path = tmp_path / 'versus_sweep.py'
  path.write_text(VERSUS_SWEEP)
  workdir, output = tmp_path / 'runs', str(tmp_path / 'table')
  for name, (accuracy, wall_s, trainable) in VERSUS_SUMMARIES.items():
    (workdir / name).mkdir(parents=True)
    (workdir / name / 'summary.json').write_text(json.dumps({
        'steps': 3, 'final': {'target/test/accuracy': accuracy}, 'wall_s': wall_s,
        'trainable_param_count': trainable, 'param_count': 1000, 'git_commit': 'abcdef012345',
        **({'vectorized_runs': 2} if name.startswith('finetune') else {})}))
  assert report.main([str(path), f'--workdir={workdir}', f'--output={output}']) == 0
  with open(output + '.md') as md, open(output + '.tex') as tex:
    markdown, latex = md.read(), tex.read()
  assert '| recipe | 10 / class | 50 / class | avg |' in markdown
  assert '| finetune | 85.0 ± 1.0 | 93.0 ± 1.0 | 89.0 ± 0.0 |' in markdown
  assert ('| recipe | accuracy (avg over k) | Δ vs scratch | wall s / run | wall × scratch | '
          'trainable params |') in markdown
  assert '| scratch | 86.0 ± 1.0 | +0.0 | 11.0 | 1.00 | 1,000 |' in markdown
  assert '| finetune | 89.0 ± 0.0 | +3.0 | 22.0 | 2.00 | 10 |' in markdown
  assert '`pretrain`: target/test/accuracy 50.0, 100 s' in markdown
  assert '\n\nAnchor: 88.0 (a paper).\n\n| a | b |\n|---|---|\n\n' in markdown
  assert 'finetune & $89.0 \\pm 0.0$ & +3.0 & 22.0 & 2.00 & 10 \\\\' in latex
  assert '% Anchor: 88.0 (a paper).\n% | a | b |\n% |---|---|' in latex
  assert markdown.index('Transfer versus') < markdown.index('Anchor') < markdown.index('commit')
  path.write_text(VERSUS_SWEEP.replace("'versus': 'scratch'", "'versus': 'scrach'"))
  assert report.main([str(path), f'--workdir={workdir}', f'--output={output}']) == 2
  assert "'scrach' is no row" in capsys.readouterr().err


def test_the_t5_and_t6_sweep_files_start_their_transfer_runs_from_their_pretraining_runs():
  _, t5 = sweep.load_sweep(os.path.join(ROOT, 'experiments', 't5_usps_finetune.py'))
  assert len(t5) == 1 + 7 * 3 * 3 and t5[0]['name'] == 'pretrain_mnist'
  transfer = [run for run in t5 if run['needs']]
  assert len(transfer) == 6 * 3 * 3 and all(r['wave'] == 1 for r in transfer)
  assert {r['overrides']['init_from.path'] for r in transfer} == {'{sweep_workdir}/pretrain_mnist'}
  _, t6 = sweep.load_sweep(os.path.join(ROOT, 'experiments', 't6_net2net.py'))
  grown = [run for run in t6 if run['labels'].get('init') == 'grown']
  assert len(t6) == 3 + 2 * 2 * 3 and len(grown) == 6
  assert all(callable(r['before']) and r['needs'] == [f'pretrain_seed{r["labels"]["seed"]}']
             for r in grown)


@pytest.mark.slow
def test_vectorize_trains_runs_that_differ_in_seed_as_one_group(sweep_file, tmp_path, capsys):
  workdir = str(tmp_path / 'runs')
  outcomes = sweep.run_sweep(sweep_file, workdir, vectorize=2)
  assert len(outcomes['trained']) == 2 and not outcomes['failed']
  out = capsys.readouterr().out
  assert out.count('] training ') == 1 and '(+1 vectorized)' in out  # One group, one program.
  for name in outcomes['trained']:
    with open(os.path.join(workdir, name, 'summary.json')) as f:
      assert json.load(f)['vectorized_runs'] == 2
  assert sorted(sweep.run_sweep(sweep_file, workdir, vectorize=2)['done']) == sorted(
      outcomes['trained'])


def test_groups_hold_only_runs_that_may_be_vectorized():
  runs = {f'r{i}': {'config': 'c.py', 'arg': arg, 'overrides': overrides}
          for i, (arg, overrides) in enumerate([
              ('method=dann', {'seed': 0}), ('method=dann', {'seed': 1, 'method.trade_off': 0.3}),
              ('method=dan', {'seed': 0}), ('method=dann', {'seed': 2, 'total_steps': 9}),
              ('method=dann', {'seed': 3})])}
  jobs = [(name, 'spec', [], name) for name in runs]
  names = [[job[0] for job in group] for group in sweep.groups_of(jobs, runs, 2)]
  assert names == [['r0', 'r1'], ['r4'], ['r2'], ['r3']]
  assert [[job[0] for job in g] for g in sweep.groups_of(jobs, runs, 1)] == [[n] for n in runs]


def test_run_names_come_from_the_labels_and_leave_the_data_locations_out(tmp_path):
  path = tmp_path / 'report_sweep.py'
  path.write_text(REPORT_SWEEP)
  _, runs = sweep.load_sweep(str(path))
  assert [r['name'].rsplit('-', 1)[0] for r in runs] == ['task=M2O'] * 4  # Labels: only the task.
  assert len({r['name'] for r in runs}) == 4
  labels = {'task': 'A→W', 'method': 'dann', 'seed': 0}
  name = run_name('c.py', 'method=dann', {'seed': 0}, labels)
  assert name.startswith('task=A2W_method=dann_seed=0-')
  for location in LOCATION_KEYS:   # Another checkout's data folders: the same run.
    assert run_name('c.py', 'method=dann', {'seed': 0, location: '/elsewhere'},
                          labels) == name
  assert run_name('c.py', 'method=dann', {'seed': 1}, labels) != name
  # A run made under the earlier naming keeps its workdir.
  legacy = legacy_run_name(runs[0]['config'], runs[0]['arg'], runs[0]['overrides'])
  os.makedirs(tmp_path / 'runs' / legacy)
  _, found = sweep.load_sweep(str(path), workdir=str(tmp_path / 'runs'))
  assert found[0]['name'] == legacy and found[1]['name'] == runs[1]['name']


def test_only_selects_runs_by_label_with_the_runs_they_need(tmp_path, capsys):
  path = tmp_path / 'report_sweep.py'
  path.write_text(REPORT_SWEEP)
  _, runs = sweep.load_sweep(str(path))
  dann = sweep.select_runs(runs, ['method=dann'])
  assert len(dann) == 2 and all('method=dann' in r['arg'] for r in dann)
  assert len(sweep.select_runs(runs, ['method=dann', 'seed=1'])) == 1
  assert len(sweep.select_runs(runs, ['seed=0', 'seed=1', 'method=dann'])) == 2
  assert sweep.main([str(path), '--only', 'method=dann', '--only', 'seed=0', '--dry_run',
                     f'--workdir={tmp_path}/runs']) == 0
  assert 'sweep ' + str(path) + ': 1 runs' in capsys.readouterr().out
  for only, message in ((['metod=dann'], "no run has the label 'metod'"),
                        (['method=mcc'], 'matches no run'), (['method'], 'not KEY=VALUE')):
    assert sweep.main([str(path), '--dry_run', *(f'--only={o}' for o in only)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and '\n' not in err, err
  pretrain = {'name': 'pre', 'arg': '', 'overrides': {}, 'labels': {}, 'needs': []}
  tune = {'name': 'tune', 'arg': 'recipe=l2', 'overrides': {}, 'labels': {}, 'needs': ['pre']}
  assert [r['name'] for r in sweep.select_runs([pretrain, tune], ['recipe=l2'])] == ['pre', 'tune']


def test_a_failed_submitit_job_is_reported_by_its_error_not_its_log_path():
  message = ("Job (task=0) failed during processing with trace:\n----------------------\n"
             "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
             "ModuleNotFoundError: No module named 'transfer_jax'\n\n----------------------\n"
             "You can check full logs with 'job.stderr(0)' and 'job.stdout(0)'or at paths:\n"
             "  - /w/.submitit/1_0_log.err\n  - /w/.submitit/1_0_log.out")
  assert sweep._last_error_line(message) == (
      "ModuleNotFoundError: No module named 'transfer_jax' (job log: /w/.submitit/1_0_log.err)")
  assert sweep._last_error_line('ValueError: bad\n') == 'ValueError: bad'
  assert sweep._last_error_line('') == ''


def test_a_signal_stops_the_sweep_not_just_its_run(sweep_file, tmp_path, monkeypatch, capsys):
  """SIGTERM in a run (train raises Interrupted after checkpointing) ends the sweep with
  128 + signum: the next run does not start (it used to be counted failed and the sweep went
  on to the next run)."""
  calls = []

  def interrupted(configs, workdirs):
    calls.append(workdirs)
    raise runtime.Interrupted(15, 'stopped by SIGTERM at step 1 of 3')

  monkeypatch.setattr(sweep_worker.train, 'train_runs', interrupted)
  status = sweep.main([sweep_file, f'--workdir={tmp_path / "runs"}'])
  assert status == 128 + 15 and len(calls) == 1
  assert 'sweep stopped: stopped by SIGTERM' in capsys.readouterr().err
