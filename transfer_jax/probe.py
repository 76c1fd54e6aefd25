"""Linear probes: `transfer-jax probe --config=configs/digits.py[:ARG] --workdir=DIR
[--config.KEY=VALUE ...] [--raw] [--cache_dir=DIR]` (the same as `python -m transfer_jax.probe`).

Linear probes (ridge, logistic regression) on the features of the backbone that
`--config.init_from.path` loads (a trained run's workdir or a torch state dict), or on the model
inputs with --raw. Features are cached under DIR/features/ (or --cache_dir); results go to
DIR/probe.json. The flags are those of `transfer-jax train`; everything else lives in
`transfer_jax.features`.
"""

import os
import sys
from collections.abc import Sequence

from transfer_jax import features
from transfer_jax import main as train_main
from transfer_jax.errors import UserError
from transfer_jax.training import runtime

USAGE = ('usage: transfer-jax probe (or python -m transfer_jax.probe) '
         '--config=configs/digits.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...] [--raw] '
         '[--cache_dir=DIR]')
EXTRAS = (train_main.Extra('raw', False, 'probe the model inputs instead of the features'),
          train_main.Extra('cache_dir', '', 'feature cache (default: WORKDIR/features)'))


def main(argv: Sequence[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  try:
    config, workdir, values = train_main.parse_command(argv, USAGE, __doc__, EXTRAS)
    if config is None:
      return 0
    if values.print_config:
      print(config)
      return 0
    runtime.setup(config)
    features.probe_and_report(config, workdir, raw=values.raw, cache_dir=values.cache_dir)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  sys.exit(main())
