"""MNIST <-> USPS at skada-bench's protocol: its data framing, CNN, recipe and method settings.

Every fact is read from skada-bench's source (scikit-adaptation/skada-bench at 155bf31, read
for facts only) and from skada 0.4.0, the version its deep solvers require
(benchmark_utils/deep_base_solver.py: `skada[deep]==0.4.0`):
  data      datasets/deep_mnist_usps.py: torchvision MNIST and USPS, the *training* splits only
            (60000 / 7291); MNIST ToTensor -> Normalize(0.1307, 0.3081); USPS ToTensor ->
            Pad(6) (16x16 -> 28x28, not resized) -> Normalize(0.0806, 0.2063): each domain
            standardised by its own statistics (normalize 'standardize': per-domain training
            statistics; USPS box_size 16 in image_size 28 is the 6-pixel pad). objective.py (and
            config/example_config_deep.yml): one outer split per domain, test_size 0.2,
            random_state 0: reported on 20 % held out of each training split (test_split
            'holdout', test_fraction 0.2; our draw, not theirs).
  network   benchmark_utils/backbones_architecture.py ShallowConvNet (PyTorch's MNIST
            example): conv 3x3 32 -> ReLU -> conv 3x3 64 -> ReLU -> max-pool 2 -> Dropout
            0.25 -> Linear 9216 -> 128 -> ReLU -> Dropout 0.5 ('small_cnn', the 128-d
            features), final layer Linear 128 -> 10 (a linear classifier).
  recipe    benchmark_utils/utils.py get_params_per_dataset('deep_mnist_usps'): batch 256, 10
            epochs, SGD lr 0.1, momentum 0.6, weight decay 1e-5, StepLR(step_size=10 epochs,
            gamma=0.2) stepped per epoch: within 10 epochs it never fires, so the learning
            rate is constant (schedule 'constant'). skada 0.4.0 deep/base.py
            DomainBalancedDataLoader: each step 256 source + 256 target rows, an epoch as long as
            the larger domain (max_samples 'max'): floor(48000 / 256) = 187 steps on both tasks,
            1870 in all. SourceOnly / TargetOnly (deep/_baseline.py) use DomainOnlyDataLoader:
            an epoch is one pass over that domain alone (USPS: floor(5832 / 256) = 22 steps),
            so `steps_for` gives 220 source-only steps on U->M (and the sweep 220 target-only
            steps on M->U).
  loss      deep/base.py DomainAwareCriterion: cross-entropy on source + reg x the method's term.
  methods   solvers/deep_*.py (the grid skada-bench searches, then our fixed choice; it picks
            `reg` per scorer with a 5-fold inner split, we fix one value before any run):
            dann  lr x 0.1 = 0.01, momentum 0.9; backbones_architecture.DomainClassifier:
                  128 -> 1024 -> ReLU -> Dropout 0.5 -> 1024 -> ReLU -> Dropout 0.5 -> 1,
                  sigmoid + BCE, gradient reversal alpha 1 (constant). reg grid 1e-3..1: 1.
            mdd   lr 0.01, momentum 0.9; DiscrepancyClassifier Linear 128 -> 10 behind a
                  constant reversal of 1; skada MDDLoss gamma grid {1, 3}: 3; reg grid
                  1e-3..1e-1: 0.1.
            mcc   reg grid {1e-2, 1e-1, 1}: 1; MCCLoss(T) T grid {1, 2, 3}: 2.
            coral reg grid 1e-5..1e3: 1; skada deepcoral_loss ||C_s - C_t||_F^2 / (4 d^2), as
                  objectives' coral.
            dan   reg grid 1e-5..1e3: 1.
Not reproduced: the dropout inside DANN's discriminator (our discriminator head has none); DAN's
kernel (skada: 33 Gaussian bandwidths 2^(-8 + i/2) x the median source distance; ours: the
config's multipliers of the mean squared distance); the hyperparameter search itself; the
holdout draw. 10 % of each remaining training split is held out by the sweep (source
validation, target oracle split) for the selection rules.

  python -m transfer_jax.main --config=configs/mnist_usps_skada.py:method=dann \\
      --workdir=runs/m2u_skada_dann --config.data.manual_dir=../shared/datasets
Arguments: method (any name of objectives.METHODS), reverse (USPS -> MNIST), tiny. The table:
experiments/t1_mnist_usps_skada.py (a sweep file + report); expected numbers there once run.
"""

import ml_collections

from transfer_jax.config_lib import (
  base_config,
  data_config,
  domain_config,
  model_config,
  parse_arg,
  tiny_cadence,
)

BATCH = 256
EPOCHS = 10
# Steps per epoch of skada's loaders: floor(0.8 x training split / 256) per domain.
EPOCH_STEPS = {'mnist': int(0.8 * 60000) // BATCH, 'usps': int(0.8 * 7291) // BATCH}

# Per-method settings read from skada-bench's solvers (a config override still wins).
METHOD_SETTINGS = {
    'dann': {'optimizer.learning_rate': 0.01, 'optimizer.momentum': 0.9,
             'method.trade_off': 1.0},
    'mdd': {'optimizer.learning_rate': 0.01, 'optimizer.momentum': 0.9,
            'model.discriminator_hidden': (), 'method.grl_coeff': 1.0,
            'method.mdd_margin': 3.0, 'method.trade_off': 0.1},
    'mcc': {'method.trade_off': 1.0, 'method.mcc_temperature': 2.0},
    'coral': {'method.trade_off': 1.0},
    'dan': {'method.trade_off': 1.0},
}


def steps_for(method: str, source: str, target: str) -> int:
  """skada's 10 epochs in steps: the larger domain's epoch for DA methods (DomainBalanced), the
  source's alone for SourceOnly. TargetOnly's is the reverse task's source-only count."""
  if method == 'source_only':
    return EPOCHS * EPOCH_STEPS[source]
  return EPOCHS * max(EPOCH_STEPS[source], EPOCH_STEPS[target])


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, method='dann', reverse=False, tiny=False)
  config = base_config(arg.method, arg.tiny)
  mnist = domain_config('mnist', test_split='holdout')
  usps = domain_config('usps', test_split='holdout', box_size=16)  # Pad(6): 16 in 28, no resize.
  source, target = (usps, mnist) if arg.reverse else (mnist, usps)
  config.data = data_config(source, target, image_size=28, channels=1, normalize='standardize',
                            test_fraction=0.2)
  config.model = model_config('small_cnn', classifier_hidden=(), discriminator_hidden=(1024, 1024),
                              discriminator_batch_norm=False)

  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.6
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 1e-5
  # StepLR(step_size=10 epochs, gamma=0.2) first multiplies after the 10th and last epoch.
  config.optimizer.schedule = 'constant'
  config.method.grl_schedule = 'constant'   # GradientReversalLayer alpha 1.
  config.method.grl_coeff = 1.0

  config.batch_size = BATCH                 # Per domain.
  config.total_steps = steps_for(arg.method, source.name, target.name)
  epoch = max(EPOCH_STEPS[source.name], EPOCH_STEPS[target.name])
  config.log_every_steps = epoch
  config.eval_every_steps = epoch
  config.checkpoint_every_steps = config.total_steps
  config.eval_batch_size = 1000
  config.update_from_flattened_dict(METHOD_SETTINGS.get(arg.method, {}))
  if arg.tiny:
    tiny_cadence(config, 4, 8, 2)
  return config
