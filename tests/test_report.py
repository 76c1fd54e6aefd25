"""The report never replaces a committed table by accident: it writes into the sweep's workdir,
and into experiments/ only with --publish once every run is finished."""

import json
import os
import textwrap

from transfer_jax import report

SWEEP = textwrap.dedent("""
    CONFIG = 'configs/digits.py'
    TABLE = {'rows': 'method', 'columns': 'task', 'seed': 'seed', 'title': 'two tasks'}

    def runs():
      for task in ('A', 'B'):
        for seed in (0, 1):
          yield {'name': f'{task}_{seed}', 'arg': 'tiny',
                 'labels': {'method': 'dann', 'task': task, 'seed': seed}}
""")


def _write_summaries(workdir, names):
  for i, name in enumerate(names):
    os.makedirs(os.path.join(workdir, name), exist_ok=True)
    with open(os.path.join(workdir, name, 'summary.json'), 'w') as f:
      json.dump({'steps': 6, 'final': {'target/test/accuracy': 0.5 + 0.1 * i},
                 'wall_s': 10.0, 'git_commit': 'abcdef0123'}, f)


def _one_error_line(capsys):
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: ') and '\n' not in err, err
  return err


def test_the_report_writes_into_the_workdir_and_publishes_only_a_finished_sweep(tmp_path,
                                                                                 capsys):
  sweep_file = tmp_path / 'experiments' / 'two_tasks.py'
  sweep_file.parent.mkdir()
  sweep_file.write_text(SWEEP)
  committed = tmp_path / 'experiments' / 'two_tasks.md'
  committed.write_text('the committed table\n')
  workdir = str(tmp_path / 'runs')
  _write_summaries(workdir, ['A_0', 'A_1', 'B_0'])   # B_1 is not finished.

  assert report.main([str(sweep_file), f'--workdir={workdir}']) == 0
  with open(os.path.join(workdir, 'two_tasks.md')) as f:
    partial = f.read()
  assert '| dann | 55.0 ± 5.0 | 70.0 ± 0.0 (1 seed) |' in partial
  assert 'Unfinished runs: 1.' in partial
  assert committed.read_text() == 'the committed table\n'
  assert not (tmp_path / 'experiments' / 'two_tasks.tex').exists()

  assert report.main([str(sweep_file), f'--workdir={workdir}', '--publish']) == 2
  assert '1 run(s) of' in _one_error_line(capsys)
  assert committed.read_text() == 'the committed table\n'
  assert report.main([str(sweep_file), f'--workdir={workdir}', '--publish',
                      '--override', 'total_steps=4']) == 2
  assert 'leave out --output and --override' in _one_error_line(capsys)

  _write_summaries(workdir, ['A_0', 'A_1', 'B_0', 'B_1'])
  assert report.main([str(sweep_file), f'--workdir={workdir}', '--publish']) == 0
  published = committed.read_text()
  assert '| dann | 55.0 ± 5.0 | 75.0 ± 5.0 | 65.0 ± 5.0 |' in published
  assert 'Unfinished' not in published and (tmp_path / 'experiments' / 'two_tasks.tex').exists()


def test_records_copy_what_remakes_the_table_and_never_replace_a_record(tmp_path, capsys):
  sweep_file = tmp_path / 'two_tasks.py'
  sweep_file.write_text(SWEEP)
  workdir, records = str(tmp_path / 'runs'), str(tmp_path / 'records')
  _write_summaries(workdir, ['A_0', 'A_1', 'B_0'])   # B_1 is not finished.
  os.makedirs(os.path.join(workdir, 'A_0', 'checkpoints', '6'))
  with open(os.path.join(workdir, 'A_0', 'metrics.jsonl'), 'w') as f:
    f.write('{"step": 6, "target/test/accuracy": 0.5}\n')

  assert report.main([str(sweep_file), f'--workdir={workdir}', f'--records={records}']) == 0
  assert '3 finished runs' in capsys.readouterr().out
  assert sorted(os.listdir(records)) == ['A_0', 'A_1', 'B_0']
  assert sorted(os.listdir(os.path.join(records, 'A_0'))) == ['metrics.jsonl', 'summary.json']
  # The records alone remake the same table.
  assert report.main([str(sweep_file), f'--workdir={records}']) == 0
  with open(os.path.join(workdir, 'two_tasks.md')) as f, \
       open(os.path.join(records, 'two_tasks.md')) as g:
    assert f.read().split('Runs made at')[0] == g.read().split('Runs made at')[0]
  # Again: nothing to copy; a record with other contents is never replaced, and nothing is
  # written when one is refused.
  assert report.main([str(sweep_file), f'--workdir={workdir}', f'--records={records}']) == 0
  assert '(0 files copied' in capsys.readouterr().out
  _write_summaries(workdir, ['A_0', 'A_1', 'B_0', 'B_1'])
  with open(os.path.join(records, 'A_0', 'summary.json'), 'w') as f:
    f.write('{"a record of another run": 1}')
  assert report.main([str(sweep_file), f'--workdir={workdir}', f'--records={records}']) == 2
  assert 'exists with other contents' in _one_error_line(capsys)
  with open(os.path.join(records, 'A_0', 'summary.json')) as f:
    assert f.read() == '{"a record of another run": 1}'
  assert not os.path.exists(os.path.join(records, 'B_1'))


def test_a_table_of_runs_made_with_overrides_says_so_in_its_title(tmp_path):
  sweep_file = tmp_path / 'two_tasks.py'
  sweep_file.write_text(SWEEP)
  workdir = str(tmp_path / 'runs')
  overrides = ['--override', 'total_steps=50000', '--override', 'data.manual_dir=/data']
  from transfer_jax.sweep_file import load_sweep
  _, runs = load_sweep(str(sweep_file), {'total_steps': 50000}, workdir)
  _write_summaries(workdir, [run['name'] for run in runs])
  assert report.main([str(sweep_file), f'--workdir={workdir}', *overrides]) == 0
  with open(os.path.join(workdir, 'two_tasks.md')) as f:
    title = f.readline()
  # The data location is no property of the runs (not part of their names): not in the title.
  assert title == '# two tasks (runs with total_steps=50000)\n', title
