"""Train one run: `transfer-jax train --config=configs/digits.py[:ARG] --workdir=DIR
[--config.KEY=VALUE ...]` (the same as `python -m transfer_jax.main ...`).

Flags are absl flags and the config is an `ml_collections.config_flags` config flag, as in flax's
examples: `--config=FILE.py:ARG` or `--config FILE.py:ARG`, overrides `--config.a.b=VALUE` or
`--config.a.b VALUE` (typed like the field; a tuple field also takes repeated flags),
`--flagfile=FILE` (one flag a line). `--config=WORKDIR/config.json` (or `--config=WORKDIR`)
reruns that run from its saved config, in that workdir unless --workdir says otherwise.
`--print_config` prints the resolved config and trains nothing; `--help` with a --config lists
every field. Everything else lives in `transfer_jax.training.train`.
"""

import os
import re
import sys
from collections.abc import Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from transfer_jax import config_lib
from transfer_jax.errors import UserError
from transfer_jax.training import runtime, train

USAGE = ('usage: transfer-jax train --config=configs/digits.py[:ARG] --workdir=DIR '
         '[--config.KEY=VALUE ...] [--print_config] [--flagfile=FILE]')
_CONFIG_VALUE = re.compile(r'--?config=(.*)')
_OVERRIDE = re.compile(r'--?(?:no)?config\.([^=]+)(?:=.*)?')


class Extra:
  """An extra flag of a command built on these flags (e.g. the probe's --raw)."""

  def __init__(self, name: str, default: bool | str, help_text: str):
    self.name, self.default, self.help = name, default, help_text


def parse_command(argv: Sequence[str], usage: str = USAGE, doc: str = __doc__,
                  extras: Sequence[Extra] = ()) -> tuple[ml_collections.ConfigDict | None,
                                                         str, flags.FlagValues]:
  """(config, workdir, flag values) of a command line; (None, '', ...) after printing --help.

  Every mistake raises one UserError that says what to do.
  """
  values = flags.FlagValues()
  try:
    argv = values.read_flags_from_files(list(argv), force_gnu=False)
  except flags.Error as e:
    raise UserError(f'{_one_line(e)}; --flagfile=FILE reads one flag a line') from None
  wants_help = any(a in ('-h', '--help', '--helpfull', '--helpshort') for a in argv)
  spec, rest = None, []
  arguments = iter(argv)
  for arg in arguments:
    match = _CONFIG_VALUE.fullmatch(arg)
    if match:
      spec = match.group(1)
    elif arg in ('--config', '-config'):
      spec = next(arguments, None)
      if spec is None:
        raise UserError(f'--config needs a value; {usage}')
    elif arg not in ('-h', '--help', '--helpfull', '--helpshort'):
      rest.append(arg)
  known = {'workdir', 'print_config', 'flagfile', *(extra.name for extra in extras)}
  for arg in rest:
    name = arg.lstrip('-').split('=', 1)[0]
    if arg.startswith('-') and not _OVERRIDE.fullmatch(arg) and name not in known | {
        f'no{k}' for k in known}:
      raise UserError(f'unexpected argument {arg!r}; {usage}')
  if spec is None:
    if wants_help:
      print(f'{usage}\n\n{doc}')
      return None, '', values
    raise UserError(f'--config is required; {usage}')
  config = config_lib.load_config(spec)
  if wants_help:
    print(f'{usage}\n\n{doc}\nFields of {spec} (override with --config.KEY=VALUE):')
    for key in config_lib.flat_keys(config):
      print(f'  --config.{key}={_lookup(config, key)!r}')
    return None, '', values
  for arg in rest:
    match = _OVERRIDE.fullmatch(arg)
    if match:
      config_lib.check_key(config, match.group(1))
  saved_run = os.path.isdir(spec) or spec.endswith('.json')
  default_workdir = (os.path.dirname(os.path.abspath(spec)) if spec.endswith('.json')
                     else spec) if saved_run else None
  config_flags.DEFINE_config_dict('config', config, 'the resolved config', flag_values=values,
                                  sys_argv=['transfer-jax', *rest], lock_config=True)
  flags.DEFINE_string('workdir', default_workdir, 'where the run writes its files',
                      flag_values=values)
  flags.DEFINE_bool('print_config', False, 'print the resolved config and train nothing',
                    flag_values=values)
  for extra in extras:
    define = flags.DEFINE_bool if isinstance(extra.default, bool) else flags.DEFINE_string
    define(extra.name, extra.default, extra.help, flag_values=values)
  try:
    leftover = values(['transfer-jax', *rest])
  except flags.Error as e:
    raise UserError(f'{_one_line(e)}; {usage}') from None
  except (AttributeError, KeyError, TypeError) as e:  # Raised by config_flags' field parsers.
    raise UserError(f'{_one_line(e)}; {usage}') from None
  if len(leftover) > 1:
    raise UserError(f'unexpected argument {leftover[1]!r}; {usage}')
  if not values.workdir and not values.print_config:
    raise UserError(f'--workdir is required; {usage}')
  return values.config, values.workdir or '', values


def _lookup(config: ml_collections.ConfigDict, key: str):
  for part in key.split('.'):
    config = config[part]
  return config


def _one_line(error: Exception) -> str:
  text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
  text = text.replace('\\n', ' ').removeprefix('ERROR:: ')
  return ' '.join(text.split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  try:
    config, workdir, values = parse_command(argv)
    if config is None:
      return 0
    if values.print_config:
      print(config)
      return 0
    runtime.setup(config)
    try:
      train.train_and_evaluate(config, workdir)
    except train.NonFiniteLossError as e:
      print(f'error: {e}', file=sys.stderr)
      return 1
    except train.Interrupted as e:   # SIGTERM / SIGINT: checkpointed, the usual 128 + signal.
      print(f'stopped: {e}', file=sys.stderr)
      return 128 + e.signum
    except OSError as e:   # A full disk, a folder that cannot be written.
      print(f'error: cannot write {e.filename or workdir}: {e.strerror or e}; free disk space or '
            'fix its permissions, then rerun the same command to resume', file=sys.stderr)
      return 1
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print('stopped: interrupted (Ctrl-C) before training started; nothing was saved',
          file=sys.stderr)
    return 130
  return 0


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  sys.exit(main())
