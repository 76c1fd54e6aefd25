"""Multi-task learning: one DANN-LeNet trunk with an MNIST head and a USPS head, against two
separate networks (the multi-task experiment of the structural-transfer issue).

  mode=joint  one trunk, the main classifier on MNIST (source) and a 'usps' head on USPS (a
              task of config.tasks); both cross-entropies every step (weights 1 and usps_weight)
  mode=mnist  the same network trained on MNIST alone
  mode=usps   the same network trained on USPS alone (labelled target stream, no source)
Full training splits; reported on the test splits (MNIST 10000, USPS 2007; USPS resized to 28).

  python -m transfer_jax.main --config=configs/digits_multitask.py:mode=joint \\
      --workdir=runs/multitask_joint --config.data.manual_dir=../shared/datasets
  python -m experiments.multitask_digits      # the three modes x 3 seeds, and the table
Arguments: mode=joint|mnist|usps, usps_weight (joint), tiny.
Expected (`python -m experiments.multitask_digits --seeds 0,1,2`, 1000 steps, last step, at
8e4b16a): joint MNIST 98.2 ± 0.2 / USPS 96.0 ± 0.0 (215,300 params); separate MNIST 98.3 ± 0.1,
USPS 95.1 ± 0.5 (254,580 params). Table: experiments/multitask_digits.md.
"""

import ml_collections

from transfer_jax.config_lib import (
  base_config,
  data_config,
  domain_config,
  model_config,
  parse_arg,
  task_config,
)
from transfer_jax.errors import UserError


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, mode='joint', usps_weight=1.0, tiny=False)
  if arg.mode not in ('joint', 'mnist', 'usps'):
    raise UserError(f'unknown mode={arg.mode!r}; choose joint, mnist or usps')
  config = base_config('source_only', arg.tiny)
  config.data = data_config(domain_config('mnist'), domain_config('usps'), image_size=28,
                            channels=1)
  config.model = model_config('dann_lenet', classifier_hidden=(100, 100), conv_impl='fused')
  config.optimizer.schedule = 'constant'
  if arg.mode == 'joint':
    config.tasks.usps = task_config(domain_config('usps'), head='usps', weight=arg.usps_weight)
    config.eval_splits = ('source/test', 'usps/test')
  elif arg.mode == 'mnist':
    config.eval_splits = ('source/test',)
  else:  # USPS alone: its labels through the labelled-target stream, no source batch.
    config.objective.source_weight = 0.0
    config.objective.target_weight = 1.0
    config.data.target.labeled_per_class = -1
    config.eval_splits = ('target/test',)
  return config
