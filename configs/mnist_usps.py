"""MNIST <-> USPS with the DANN paper's network, on the three standard protocols.

  full  MNIST train (60000) / USPS train (7291); reported on the test splits (10000 / 2007).
  adda  2000 MNIST / 1800 USPS training images drawn with split_seed 0 (Tzeng et al. 2017);
        reported on the test splits.
  jda   the JDA/TJM .mat pair (2000 MNIST / 1800 USPS, 16x16); transductive: reported on all
        target images, which are also the (unlabelled) target training images.
USPS images are resized to 28x28 (as TLlib does). Raw files come from the manual directory:

  python -m transfer_jax.main --config=configs/mnist_usps.py:method=dann,protocol=full \\
      --workdir=runs/m2u_dann --config.data.manual_dir=../shared/datasets
Arguments: method (any name of objectives.METHODS), protocol=full|adda|jda, reverse (USPS -> MNIST),
tiny. T1 (3 seeds; experiments/t1_mnist_usps.md, a sweep file + report).

Measured before commit cb45686, with the textbook conv block (conv_impl='xla'); the default 'fused'
block computes the same function to 1e-5 per step, so long runs may end a little differently.
Expected (seed 0, 1000 steps, target / source test accuracy at the last step, 2 CPU cores;
T1 at 1000 steps, 3 seeds, averages over M->U and U->M: source_only 63.7, dann 65.8, mcc 81.3):
  protocol=full  source_only 75.4 / 97.4 (124 s)   dann 76.4 / 96.5 (84 s)
"""

import ml_collections

from transfer_jax.config_lib import base_config, data_config, domain_config, model_config, parse_arg
from transfer_jax.errors import UserError


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, method='dann', protocol='full', reverse=False, tiny=False)
  config = base_config(arg.method, arg.tiny)
  if arg.protocol == 'full':
    mnist, usps = domain_config('mnist'), domain_config('usps')
  elif arg.protocol == 'adda':
    mnist = domain_config('mnist', train_size=2000)
    usps = domain_config('usps', train_size=1800)
  elif arg.protocol == 'jda':
    mnist = domain_config('jda_mnist_usps', train_split='mnist', test_split='mnist')
    usps = domain_config('jda_mnist_usps', train_split='usps', test_split='usps')
  else:
    raise UserError(f'unknown protocol={arg.protocol!r}; choose full, adda or jda')
  source, target = (usps, mnist) if arg.reverse else (mnist, usps)
  config.data = data_config(source, target, image_size=28, channels=1)

  # The DANN paper's MNIST network: conv32-pool-conv48-pool (768-d features), label predictor
  # 768 -> 100 -> 100 -> 10, domain discriminator 768 -> 100 -> 1. conv_impl 'fused': the conv
  # blocks rewritten for CPU, 3x faster than the textbook 'xla' (same parameters and numbers).
  config.model = model_config('dann_lenet', classifier_hidden=(100, 100),
                              discriminator_hidden=(100,), conv_impl='fused')
  return config
