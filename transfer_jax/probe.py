"""Command line: `python -m transfer_jax.probe --config=configs/NAME.py[:ARG] --workdir=DIR
[--config.a.b=VALUE ...] [--raw] [--cache_dir=DIR]`.

Linear probes (ridge, logistic regression) on the features of the backbone that
`--config.init_from.path` loads (a trained run's workdir or a torch state dict), or on the model
inputs with --raw. Features are cached under DIR/features/ (or --cache_dir); results go to
DIR/probe.json. Everything else lives in `transfer_jax.features`.
"""

import os
import sys

USAGE = ('usage: python -m transfer_jax.probe --config=configs/NAME.py[:ARG] --workdir=DIR '
         '[--config.KEY=VALUE ...] [--raw] [--cache_dir=DIR]')


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if any(a in ('-h', '--help') for a in argv):
    print(USAGE + '\n\n' + __doc__)
    return 0
  from transfer_jax import config_lib, features
  from transfer_jax import main as train_main
  from transfer_jax.errors import UserError
  from transfer_jax.training import runtime

  raw = '--raw' in argv
  cache_dirs = [a.split('=', 1)[1] for a in argv if a.startswith('--cache_dir=')]
  rest = [a for a in argv if a != '--raw' and not a.startswith('--cache_dir=')]
  try:
    try:
      config_spec, workdir, overrides = train_main.parse_flags(rest)
    except UserError as e:  # Its message names the training command's usage.
      raise UserError(str(e).replace(train_main.USAGE, USAGE)) from None
    config = config_lib.load_config(config_spec, overrides)
    runtime.setup(config)
    features.probe_and_report(config, workdir, raw=raw,
                              cache_dir=cache_dirs[-1] if cache_dirs else '')
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  sys.exit(main())
