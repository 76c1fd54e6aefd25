"""Command line: `python -m transfer_jax.main --config=configs/NAME.py[:ARG] --workdir=DIR
[--config.a.b=VALUE ...]`. Everything else lives in `transfer_jax.training.train`."""

import os
import sys

USAGE = ('usage: python -m transfer_jax.main --config=configs/NAME.py[:ARG] --workdir=DIR '
         '[--config.KEY=VALUE ...]')


def parse_flags(argv: list[str]) -> tuple[str, str, list[str]]:
  """Returns (config spec, workdir, overrides); raises UserError on anything else."""
  from transfer_jax.errors import UserError

  config_spec = workdir = None
  overrides = []
  for arg in argv:
    if arg.startswith('--config='):
      config_spec = arg.split('=', 1)[1]
    elif arg.startswith('--workdir='):
      workdir = arg.split('=', 1)[1]
    elif arg.startswith('--config.'):
      overrides.append(arg[len('--config.'):])
    else:
      raise UserError(f'unexpected argument {arg!r}; {USAGE}')
  if not config_spec or not workdir:
    raise UserError(f'--config and --workdir are required; {USAGE}')
  return config_spec, workdir, overrides


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if any(a in ('-h', '--help') for a in argv):
    print(USAGE + '\n\n' + __doc__)
    return 0
  from transfer_jax import config_lib
  from transfer_jax.errors import UserError
  from transfer_jax.training import runtime, train

  try:
    config_spec, workdir, overrides = parse_flags(argv)
    config = config_lib.load_config(config_spec, overrides)
    runtime.setup(config)
    train.train_and_evaluate(config, workdir)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except train.NonFiniteLossError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  sys.exit(main())
