"""configs/mnist_usps_skada.py keeps skada-bench's framing and epoch arithmetic."""

import os

import numpy as np

from conftest import ROOT
from transfer_jax import config_lib
from transfer_jax.data import preprocess

CONFIG = os.path.join(ROOT, 'configs', 'mnist_usps_skada.py')


def test_usps_is_padded_by_6_not_resized():
  """torchvision Pad(6): the 16x16 digit sits unchanged in the middle of a zero 28x28 frame."""
  config = config_lib.load_config(CONFIG + ':method=dann')
  usps = config.data.target
  transform = preprocess.image_transform(config.data.image_size, config.data.channels,
                                         usps.box_size)
  digits = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 1), dtype=np.uint8)
  framed = transform(digits)
  assert framed.shape == (3, 28, 28, 1)
  np.testing.assert_array_equal(framed[:, 6:22, 6:22], digits / np.float32(255))
  framed[:, 6:22, 6:22] = 0
  assert not framed.any()
  mnist = config.data.source  # MNIST keeps its 28x28 as stored.
  images = np.random.default_rng(1).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
  np.testing.assert_array_equal(
      preprocess.image_transform(28, 1, mnist.box_size)(images), images / np.float32(255))


def test_steps_are_skadas_epochs():
  """10 epochs of 256: the larger domain (MNIST, 187 steps) for DA methods both ways; source-
  only on USPS its own 22 steps an epoch; skada's DANN at lr 0.01 with momentum 0.9."""
  steps = {arg: config_lib.load_config(f'{CONFIG}:{arg}').total_steps
           for arg in ('method=dann', 'method=dann,reverse', 'method=source_only',
                       'method=source_only,reverse')}
  assert steps == {'method=dann': 1870, 'method=dann,reverse': 1870,
                   'method=source_only': 1870, 'method=source_only,reverse': 220}
  dann = config_lib.load_config(f'{CONFIG}:method=dann')
  base = config_lib.load_config(f'{CONFIG}:method=coral')
  assert (dann.optimizer.learning_rate, dann.optimizer.momentum) == (0.01, 0.9)
  assert (base.optimizer.learning_rate, base.optimizer.momentum) == (0.1, 0.6)
  assert base.batch_size == 256 and base.data.test_fraction == 0.2
