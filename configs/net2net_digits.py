"""T6: grow a small MNIST-trained conv net with Net2Net and fine-tune it on USPS, against training
the large net from scratch (structural transfer, Chen et al. 2016).

  stage=pretrain  the small net (conv 16 -> pool -> conv 32 -> pool -> global average pool,
                  linear head) trained on MNIST (full train split)
  stage=grown     the large net (conv 32 -> pool -> conv 64 -> pool -> conv 64, same head)
                  trained on USPS labels, from init_from.path = the pretrained small net grown
                  by transfer/net2net.py (widen block 0 to 32, block 1 to 64, an identity block
                  after block 1), saved as .npz
  stage=scratch   the large net trained on USPS labels from a fresh initialisation
USPS is resized to 28x28; reported on its test split (2007 images), evaluated every 50 steps.

  python -m transfer_jax.sweep experiments/t6_net2net.py   # pretrain, grow, grown and scratch
  python -m transfer_jax.report experiments/t6_net2net.py  #   x 2 learning rates x 3 seeds
  python -m experiments.t6_net2net                         # accuracy versus steps (plot)
Arguments: stage=pretrain|grown|scratch, tiny.
Expected (3 seeds, USPS test at step 600; measured with the former script, at 8e4b16a and
63c6845): pretrained small net 91.7 % MNIST, 50.0 % USPS; lr 0.05: grown 86.1 ± 5.8, scratch
92.8 ± 0.7; lr 0.01 (both runs): grown 94.7 ± 0.5 (90 % at step 100), scratch 89.1 ± 1.3.
"""

import ml_collections

from transfer_jax.config_lib import base_config, data_config, domain_config, model_config, parse_arg
from transfer_jax.errors import UserError

SMALL = dict(backbone_hidden=(16, 32), conv_pools=(True, True))
LARGE = dict(backbone_hidden=(32, 64, 64), conv_pools=(True, True, False))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, stage='pretrain', tiny=False)
  if arg.stage not in ('pretrain', 'grown', 'scratch'):
    raise UserError(f'unknown stage={arg.stage!r}; choose pretrain, grown or scratch')
  config = base_config('source_only', arg.tiny)
  config.data = data_config(domain_config('mnist'), domain_config('usps'), image_size=28,
                            channels=1)
  widths = SMALL if arg.stage == 'pretrain' else LARGE
  config.model = model_config('growable_conv', conv_kernel=3, **widths)
  config.optimizer.schedule = 'constant'
  config.optimizer.learning_rate = 0.05
  if arg.stage == 'pretrain':
    config.total_steps = 1500
    config.eval_splits = ('source/test', 'target/test')
  else:  # USPS labels only: the labelled-target stream, no source batch.
    config.objective.source_weight = 0.0
    config.objective.target_weight = 1.0
    config.data.target.labeled_per_class = -1
    config.total_steps = 600
    config.eval_every_steps = 50
    config.eval_splits = ('target/test',)
    config.init_from.required = arg.stage == 'grown'
  if arg.tiny:
    config.total_steps = 6
    config.eval_every_steps = 3
  return config
