"""The mnist_m builder on the real release in ../shared/datasets/mnist_m (skipped without it).

The PNGs are decoded once per test session into the session's TFDS folder (conftest.TFDS_DIR,
which tests/test_train.py's tiny mnist_mnistm run reads too): about 40 s on 2 busy cores.
"""

import os

import numpy as np
import PIL.Image
import pytest

from conftest import ROOT, TFDS_DIR
from transfer_jax.data import builders

SHARED_DATA = os.path.join(ROOT, '..', 'shared', 'datasets')
MNIST_M = os.path.join(SHARED_DATA, 'mnist_m')
SIZES = {'train': 59001, 'test': 9001}

# Real data (decoding the release takes the time): slow.
pytestmark = [pytest.mark.skipif(not os.path.isdir(MNIST_M), reason=f'needs {MNIST_M}'),
              pytest.mark.slow]


@pytest.fixture(scope='module')
def splits():
  return {split: builders.load_split('mnist_m', split, TFDS_DIR, SHARED_DATA) for split in SIZES}


@pytest.fixture(scope='module')
def mnist_labels():
  with np.load(os.path.join(SHARED_DATA, 'mnist', 'mnist.npz')) as arrays:
    return {'train': arrays['y_train'], 'test': arrays['y_test']}


@pytest.mark.parametrize('split', SIZES)
def test_split_sizes_and_images(splits, split):
  images = splits[split]['image']
  assert images.shape == (SIZES[split], 32, 32, 3) and images.dtype == np.uint8
  # Colour, not grey copies: the BSDS500 backgrounds differ between channels.
  channel_gap = np.abs(images[:500, ..., 0].astype(int) - images[:500, ..., 2]).mean()
  assert channel_gap > 5, channel_gap


@pytest.mark.parametrize('split', SIZES)
def test_labels_are_mnists_and_per_class_counts(splits, mnist_labels, split):
  labels, n = splits[split]['label'], SIZES[split]
  want = mnist_labels[split][:n].astype(np.int64)
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.bincount(want, minlength=10),
                                err_msg=f'{split}: per-class counts')
  np.testing.assert_array_equal(labels, want, err_msg=f'{split}: labels in file order')


def test_stored_images_are_the_pngs_in_label_file_order(splits):
  with open(os.path.join(MNIST_M, 'mnist_m_test_labels.txt')) as f:
    names = [line.split()[0] for line in f if line.strip()]
  for index in (0, 4500, len(names) - 1):
    with PIL.Image.open(os.path.join(MNIST_M, 'mnist_m_test', names[index])) as image:
      np.testing.assert_array_equal(splits['test']['image'][index],
                                    np.asarray(image.convert('RGB')), err_msg=names[index])
