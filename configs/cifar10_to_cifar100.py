"""CIFAR-10 -> CIFAR-100: pretrain a CIFAR-stem ResNet-18 on CIFAR-10, fine-tune on CIFAR-100.

Two stages (arg `stage`):
  pretrain  supervised CIFAR-10 (50000 train), reported on CIFAR-10 test
  finetune  load the pretrained run (`--config.init_from.path=WORKDIR`) with a new 100-way
            last layer, train on CIFAR-100 with 10% of its training images held out for
            validation; the best-on-validation checkpoint is kept in WORKDIR/best
Data: the official binary releases, downloaded when online or read from
<manual_dir>/cifar10/ and <manual_dir>/cifar100/ (see transfer_jax/data/builders/cifar.py).

  python -m transfer_jax.main --config=configs/cifar10_to_cifar100.py:stage=pretrain \\
      --workdir=runs/cifar10_resnet18
  python -m transfer_jax.main --config=configs/cifar10_to_cifar100.py:stage=finetune \\
      --workdir=runs/cifar100_ft --config.init_from.path=runs/cifar10_resnet18
Arguments: stage=pretrain|finetune, tiny (a few steps on data a test writes).

Expected: not measured here. CIFAR cannot be downloaded on the machines this project is
developed on, so no number is claimed; the tiny mode is tested on generated archives in the
official format. (No data augmentation is applied yet: expect lower accuracy than augmented
CIFAR baselines.)
"""

import ml_collections

from transfer_jax.config_lib import base_config, data_config, domain_config, model_config, parse_arg
from transfer_jax.errors import UserError


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, stage='pretrain', tiny=False)
  if arg.stage not in ('pretrain', 'finetune'):
    raise UserError(f'unknown stage={arg.stage!r}; choose pretrain or finetune')
  config = base_config('source_only', arg.tiny)
  cifar10 = domain_config('cifar10')
  if arg.stage == 'pretrain':
    # Supervised on the source; the target is CIFAR-10 again, so target/test is CIFAR-10 test.
    config.data = data_config(cifar10, domain_config('cifar10'), image_size=32, channels=3,
                              normalize='standardize', in_memory=False)
    config.eval_splits = ('target/test',)
  else:
    cifar100 = domain_config('cifar100', labeled_per_class=-1, val_fraction=0.1)
    config.data = data_config(cifar10, cifar100, image_size=32, channels=3,
                              normalize='standardize', in_memory=False)
    config.objective.source_weight = 0.0   # Only CIFAR-100 labels train the new classifier.
    config.objective.target_weight = 1.0
    config.init_from.required = True
    config.init_from.skip = 'params/classifier/out/.*'  # 10 -> 100 classes: a new last layer.
    config.eval_splits = ('target/oracle_val', 'target/test')
    config.best_checkpoint_metric = 'target/oracle_val/accuracy'  # Held-out CIFAR-100 train.

  # torchvision ResNet-18 with a 3x3/1 stem; a linear classifier on its 512-d features.
  config.model = model_config('resnet18_cifar', discriminator_hidden=())

  config.optimizer.learning_rate = 0.1 if arg.stage == 'pretrain' else 0.01
  config.optimizer.schedule = 'step'          # x0.1 at 50% and 75% of the steps.
  config.optimizer.nesterov = True
  config.batch_size = 128
  config.total_steps = 20_000 if arg.stage == 'pretrain' else 10_000
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  if arg.tiny:
    config.batch_size = 16
    config.eval_batch_size = 64
    config.total_steps = 4
    config.eval_every_steps = 2
    config.checkpoint_every_steps = 2
  return config
