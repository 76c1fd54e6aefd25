"""The command line: the `transfer-jax` entry point, `list`, absl/config_flags parsing, one-line
errors, `--print_config`, and rerunning a run from its saved config.json."""

import os
import subprocess
import sys
import tomllib

import pytest

from conftest import ROOT, tiny_digits
from transfer_jax import cli, config_lib, main
from transfer_jax.training import workdir as workdir_lib

DIGITS = os.path.join(ROOT, 'configs', 'digits.py')


def _one_error_line(capsys) -> str:
  captured = capsys.readouterr()
  err = captured.err.strip()
  assert err.startswith('error: ') and '\n' not in err, err
  assert 'Traceback' not in captured.out + captured.err
  return err


def test_pyproject_declares_the_console_script():
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    project = tomllib.load(f)['project']
  assert project['scripts'] == {'transfer-jax': 'transfer_jax.cli:entry_point'}
  assert project['license'] == {'text': 'Apache-2.0'}
  with open(os.path.join(ROOT, 'LICENSE')) as f:
    assert 'Apache License' in f.read(200)


def test_the_console_script_runs_in_a_fresh_process_outside_the_repository(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'transfer_jax.cli', 'list', 'methods'],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, 'PYTHONPATH': ROOT})
  assert result.returncode == 0, result.stderr
  assert any(line.startswith('dann ') and 'Ganin' in line for line in result.stdout.splitlines())


@pytest.mark.parametrize('what,expected', [
    ('configs', ('configs/digits.py', 'MNIST-5000 -> UCI optdigits')),
    ('methods', ('mcc', 'Jin et al')),
    ('datasets', ('usps', 'splits train, test')),
    ('rules', ('snd', 'Saito et al. 2021'))])
def test_list_prints_one_described_line_per_entry(capsys, what, expected):
  assert cli.main(['list', what]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) > 3
  for line in lines:
    name, _, description = line.partition('  ')
    assert name and description.strip(), f'{what}: {line!r} has no description'
  assert any(expected[0] == line.split()[0] and expected[1] in line for line in lines), lines


def test_list_and_unknown_commands_are_one_line_errors(capsys):
  assert cli.main(['list', 'models']) == 2
  assert 'configs, methods, datasets, rules' in _one_error_line(capsys)
  assert cli.main(['trian']) == 2
  assert 'unknown command' in _one_error_line(capsys)
  assert cli.main(['--help']) == 0 and 'transfer-jax list' in capsys.readouterr().out
  for argv in (['sweep'], ['report', 'x.py', '--bogus'], ['plots', 'curves', '--output=x']):
    with pytest.raises(SystemExit) as exit_:
      cli.main(argv)
    assert exit_.value.code == 2
    assert '--help` lists the flags' in _one_error_line(capsys)


def test_config_flags_forms_print_the_resolved_config(tmp_path, capsys):
  flagfile = tmp_path / 'flags'
  flagfile.write_text(f'--config={DIGITS}:tiny\n--config.seed=5\n')
  assert cli.main(['train', '--flagfile', str(flagfile), '--config.batch_size', '32',
                   '--config.model.classifier_hidden=(7,)', '--config.optimizer.nesterov',
                   "--config.optimizer.lr_multipliers=(('backbone/.*', 0.1),)",
                   '--print_config']) == 0
  printed = capsys.readouterr().out
  for line in ('seed: 5', 'batch_size: 32', 'total_steps: 6', 'nesterov: true'):
    assert line in printed, printed
  config, _, _ = main.parse_command(['--config', f'{DIGITS}:tiny', '--workdir', 'w',
                                     '--config.model.classifier_hidden=(7,)',
                                     "--config.optimizer.lr_multipliers=(('backbone/.*', 0.1),)"])
  assert config.model.classifier_hidden == (7,)
  assert config.optimizer.lr_multipliers == (('backbone/.*', 0.1),)
  assert not os.path.exists('w')


@pytest.mark.parametrize('argv,expected', [
    ([f'--config={DIGITS}', '--workdir=W', '--config.optimzer.learning_rate=1'],
     'did you mean optimizer.learning_rate'),
    ([f'--config={DIGITS}', '--workdir=W', '--config.batch_size=abc'], '--config.batch_size=abc'),
    ([f'--config={DIGITS}', '--workdir=W', '--config.batch_size'], 'batch_size'),
    ([f'--config={DIGITS}:metod=dann', '--workdir=W'], "unknown config argument 'metod'"),
    ([f'--config={DIGITS}'], '--workdir is required'),
    (['--config=configs/nope.py', '--workdir=W'], 'not found'),
    (['--workdir=W'], '--config is required'),
    ([f'--config={DIGITS}', '--workdir=W', 'extra'], "unexpected argument 'extra'"),
    ([f'--config={DIGITS}', '--wokdir=W'], "unexpected argument '--wokdir=W'"),
    (['--flagfile=/nonexistent/flags'], 'Unable to open flagfile'),
    (['--config'], '--config needs a value'),
    (['--config=W/nothing.json'], 'not found'),
])
def test_every_mistake_is_one_line(tmp_path, capsys, monkeypatch, argv, expected):
  monkeypatch.chdir(tmp_path)
  assert main.main(argv) == 2
  assert expected in _one_error_line(capsys)
  assert not os.path.exists(tmp_path / 'W'), 'a rejected command must not touch the workdir'


def test_help_lists_the_config_fields(capsys):
  assert main.main([f'--config={DIGITS}:tiny', '--help']) == 0
  out = capsys.readouterr().out
  assert '--config.optimizer.learning_rate=0.01' in out and '--config.total_steps=6' in out


def test_a_saved_config_json_gives_back_the_same_config(tmp_path, capsys):
  config = tiny_digits('method=source_only')
  workdir_lib.check_or_write_config(config, str(tmp_path))
  for spec in (str(tmp_path / 'config.json'), str(tmp_path)):
    again = config_lib.load_config(spec)
    assert workdir_lib.config_to_dict(again) == workdir_lib.config_to_dict(config)
    assert again.model.discriminator_hidden == config.model.discriminator_hidden  # Tuples.
  # The workdir defaults to the folder of config.json; overrides still apply.
  loaded, workdir, _ = main.parse_command([f'--config={tmp_path}/config.json',
                                           '--config.total_steps=9'])
  assert workdir == str(tmp_path) and loaded.total_steps == 9
  assert main.main([f'--config={tmp_path}/config.json:tiny']) == 2
  assert 'takes no :ARG' in _one_error_line(capsys)
  (tmp_path / 'bad').mkdir()
  (tmp_path / 'bad' / 'config.json').write_text('{"seed": ')
  assert main.main([f'--config={tmp_path}/bad']) == 2
  assert 'not valid JSON' in _one_error_line(capsys)


@pytest.mark.slow
def test_a_finished_run_reruns_from_its_config_json(tmp_path, capsys):
  workdir = str(tmp_path / 'run')
  config = tiny_digits('method=source_only', total_steps=2, eval_every_steps=2,
                       checkpoint_every_steps=2, log_every_steps=1)
  os.makedirs(workdir)
  workdir_lib.check_or_write_config(config, workdir)
  assert main.main([f'--config={workdir}/config.json']) == 0
  summary = workdir_lib.read_summary(workdir)
  assert summary['steps'] == 2
  mtime = os.path.getmtime(os.path.join(workdir, 'summary.json'))
  capsys.readouterr()
  assert main.main([f'--config={workdir}']) == 0   # Finished: nothing is retrained.
  assert os.path.getmtime(os.path.join(workdir, 'summary.json')) == mtime
