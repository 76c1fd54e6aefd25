"""Config loading: typed arguments and overrides, and one-line errors for mistakes."""

import os

import pytest

from conftest import ROOT
from transfer_jax import config_lib, main
from transfer_jax.errors import UserError

DIGITS = os.path.join(ROOT, 'configs', 'digits.py')


def test_parse_arg_types_and_bare_flags():
  arg = config_lib.parse_arg('tiny,method=source_only,seed=3', method='dann', tiny=False, seed=0)
  assert arg.tiny is True and arg.method == 'source_only' and arg.seed == 3
  with pytest.raises(UserError, match="unknown config argument 'metod'"):
    config_lib.parse_arg('metod=dann', method='dann')


def test_overrides_are_typed():
  config = config_lib.load_config(DIGITS + ':tiny', [
      'optimizer.learning_rate=0.5', 'batch_size=32', 'model.classifier_hidden=(10,)',
      'optimizer.nesterov=true', 'method.name=source_only'])
  assert config.optimizer.learning_rate == 0.5 and config.batch_size == 32
  assert tuple(config.model.classifier_hidden) == (10,) and config.optimizer.nesterov is True
  assert config.method.name == 'source_only'


def test_mistyped_key_names_the_closest_valid_key():
  with pytest.raises(UserError) as info:
    config_lib.load_config(DIGITS, ['optimizer.learnin_rate=0.1'])
  message = str(info.value)
  assert 'optimizer.learnin_rate' in message and 'optimizer.learning_rate' in message
  assert '\n' not in message


def test_wrong_value_type_and_missing_file():
  with pytest.raises(UserError, match='batch_size=.abc. is not a valid int'):
    config_lib.load_config(DIGITS, ['batch_size=abc'])
  with pytest.raises(UserError, match='not found'):
    config_lib.load_config('configs/nope.py')


def test_main_prints_one_line_and_exits_2_on_a_typo(tmp_path, capsys):
  code = main.main([f'--config={DIGITS}:tiny', f'--workdir={tmp_path}',
                    '--config.optimzer.learning_rate=1'])
  err = capsys.readouterr().err.strip()
  assert code == 2
  assert err.count('\n') == 0 and 'did you mean optimizer.learning_rate' in err
  assert not os.listdir(tmp_path), 'a rejected config must not touch the workdir'


def test_main_rejects_unknown_flags(capsys):
  assert main.main(['--confg=x.py']) == 2
  assert 'unexpected argument' in capsys.readouterr().err


def test_a_run_saved_before_a_config_field_existed_stays_readable(tmp_path):
  """Fields added later (workdir.ADDED_KEYS) match a saved config that lacks them, when they
  hold the value that reproduces the old behaviour; any other value is a different run."""
  import json

  from conftest import tiny_digits
  from transfer_jax.training import workdir as workdir_lib
  config = tiny_digits()
  workdir_lib.check_or_write_config(config, str(tmp_path))
  path = tmp_path / workdir_lib.CONFIG_FILE
  saved = json.loads(path.read_text())
  for key in ('selection', 'tasks'):
    del saved[key]
  del saved['method']['mcc_temperature']
  path.write_text(json.dumps(saved))
  workdir_lib.check_or_write_config(config, str(tmp_path))   # Accepted.
  with pytest.raises(ValueError, match='differs in selection'):
    workdir_lib.check_or_write_config(tiny_digits(selection=True), str(tmp_path))
