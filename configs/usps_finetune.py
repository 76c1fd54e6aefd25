"""Parameter transfer MNIST -> USPS: fine-tune an MNIST-trained DANN LeNet on k USPS labels/class.

The pretrained model comes from any earlier run's workdir, e.g. the source-only MNIST run
  python -m transfer_jax.main --config=configs/mnist_usps.py:method=source_only \\
      --workdir=runs/mnist_pretrain --config.data.manual_dir=../shared/datasets
and is loaded through `init_from` with a new last classifier layer ('params/classifier/out/.*'
is kept fresh). Recipes (arg `recipe`):
  scratch    no transfer: the same network trained from a random init on the k labels
  finetune   load, train everything
  head_only  load, train only the new last layer on frozen features (a linear probe)
  lp_ft      linear probe for the first half of the steps, then fine-tune everything
  l2         finetune + alpha/2 ||theta||^2 (plain weight decay towards 0)
  l2_sp      finetune + L2-SP (alpha towards theta_S, beta on the new layer; Li et al. 2018)
  fisher_sp  finetune + Fisher-weighted L2-SP (Fisher from 20 MNIST batches)
USPS: k labelled examples per class (`labels`, -1 = all 7291) drawn with split seed 0; reported
on the USPS test split (2007); MNIST test accuracy is reported too (forgetting).

  python -m transfer_jax.main --config=configs/usps_finetune.py:recipe=l2_sp,labels=10 \\
      --workdir=runs/t5_l2sp_10 --config.init_from.path=runs/mnist_pretrain \\
      --config.data.manual_dir=../shared/datasets
The full table (a sweep: the pretraining run, then 7 recipes x 3 budgets x 3 seeds):
  python -m transfer_jax.sweep experiments/t5_usps_finetune.py
  python -m transfer_jax.report experiments/t5_usps_finetune.py   # experiments/t5_usps_finetune.md
"""

import ml_collections

from transfer_jax.config_lib import base_config, data_config, domain_config, model_config, parse_arg
from transfer_jax.errors import UserError

RECIPES = ('scratch', 'finetune', 'head_only', 'lp_ft', 'l2', 'l2_sp', 'fisher_sp')
PRETRAINED_PARTS = 'backbone/.*|classifier/dense.*'  # Everything but the new last layer.


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, recipe='l2_sp', labels=10, tiny=False)
  if arg.recipe not in RECIPES:
    raise UserError(f'unknown recipe={arg.recipe!r}; choose one of {list(RECIPES)}')
  config = base_config('source_only', arg.tiny)
  usps = domain_config('usps', labeled_per_class=arg.labels)
  config.data = data_config(domain_config('mnist'), usps, image_size=28, channels=1)
  config.eval_splits = ('target/test', 'source/test')

  config.model = model_config('dann_lenet', classifier_hidden=(100, 100))  # The DANN LeNet.

  # Fine-tuning trains on the labelled target examples only (MNIST feeds the Fisher estimate).
  config.objective.source_weight = 0.0
  config.objective.target_weight = 1.0
  config.optimizer.schedule = 'constant'
  config.optimizer.learning_rate = 0.01
  config.optimizer.weight_decay = 0.0
  config.total_steps = 500 if not arg.tiny else config.total_steps
  config.eval_every_steps = 250 if not arg.tiny else config.eval_every_steps

  if arg.recipe == 'scratch':
    config.init_from.allowed = False  # A random init: an init_from.path is refused.
  else:
    config.init_from.required = True
    config.init_from.skip = 'params/classifier/out/.*'  # A new last layer for the new task.
    config.init_from.allow_unused = True  # The pretrained run may carry a domain discriminator.
  if arg.recipe == 'head_only':
    config.optimizer.freeze = PRETRAINED_PARTS
  elif arg.recipe == 'lp_ft':
    config.optimizer.unfreeze = ((PRETRAINED_PARTS, config.total_steps // 2),)
  elif arg.recipe in ('l2', 'l2_sp', 'fisher_sp'):
    config.regularizer.name = arg.recipe
    config.regularizer.alpha = 0.01
    config.regularizer.beta = 0.01
  return config
