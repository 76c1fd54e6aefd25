"""Domains and protocols: preprocessing, held-out splits, k labelled per class, custom data."""

import itertools

import numpy as np
import pytest

from conftest import TFDS_DIR
from transfer_jax import data as data_lib
from transfer_jax.config_lib import data_config, domain_config
from transfer_jax.data import preprocess


def _data(source, target, **overrides):
  return data_config(source, target, data_dir=TFDS_DIR, **overrides)


def _inputs(domain, split):
  return np.concatenate([b['input'][b['mask']] for b in
                         data_lib.eval_batches(domain.splits[split], domain.batch_fn, 256)])


@pytest.mark.slow
def test_embedded_digits_are_mnist_framed_28x28_in_unit_range():
  data = _data(domain_config('mnist5000', test_split='holdout'),
               domain_config('optdigits', test_split='holdout', box_size=20))
  for (role, size), in_memory in itertools.product((('source', 5000), ('target', 1797)),
                                                    (True, False)):
    data.in_memory = in_memory
    domain = data_lib.load_domain(data[role], data, role)
    assert len(domain.splits['train']) + len(domain.splits['test']) == size
    assert len(domain.splits['test']) == round(0.2 * size)
    images = _inputs(domain, 'test')
    assert images.shape[1:] == (28, 28, 1) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    ink = images.sum(axis=(0, 3))  # MNIST framing: most ink in the central 20x20 box.
    assert ink[4:24, 4:24].sum() / ink.sum() > 0.95


def test_protocol_splits_are_disjoint_fixed_and_sized():
  domain = domain_config('optdigits', test_split='holdout', val_fraction=0.1, labeled_per_class=3)
  data = _data(domain_config('mnist5000'), domain)
  target = data_lib.load_domain(data.target, data, 'target')
  sets = {name: set(split.indices.tolist()) for name, split in target.splits.items()}
  assert set(sets) == {'train', 'test', 'oracle_val', 'labeled'}
  assert len(sets['labeled']) == 30
  labels = np.array([target.splits['labeled'][i]['label'] for i in range(30)])
  assert np.bincount(labels).tolist() == [3] * 10
  names = list(sets)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      assert not sets[a] & sets[b], f'{a} and {b} overlap'
  assert sum(len(s) for s in sets.values()) == 1797
  again = data_lib.load_domain(data.target, data, 'target')
  assert set(again.splits['test'].indices.tolist()) == sets['test']
  source = data_lib.load_domain(
      domain_config('mnist5000', test_split='holdout', val_fraction=0.1), data, 'source')
  assert 'val' in source.splits and 'oracle_val' not in source.splits


def test_train_size_draws_a_fixed_subset():
  data = _data(domain_config('mnist5000', test_split='holdout', train_size=500),
               domain_config('optdigits'))
  domain = data_lib.load_domain(data.source, data, 'source')
  assert len(domain.splits['train']) == 500
  with pytest.raises(ValueError, match='train_size=9000 but mnist5000/train has 4000 training'):
    data_lib.load_domain(domain_config('mnist5000', test_split='holdout', train_size=9000), data,
                         'source')


def test_custom_arrays_and_npz_domains(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8)
  labels = np.arange(40) % 4
  data_lib.register_arrays('toy', {'train': {'image': images, 'label': labels},
                                   'test': {'image': images[:8], 'label': labels[:8]}})
  np.savez(tmp_path / 'toy.npz', x_train=images, y_train=labels)
  data = _data(domain_config('toy'), domain_config(f'npz:{tmp_path}/toy.npz',
                                                   test_split='holdout'),
               image_size=16, channels=1, normalize='standardize')
  source = data_lib.load_domain(data.source, data, 'source')
  target = data_lib.load_domain(data.target, data, 'target')
  data_lib.check_compatible(source, target)
  assert source.num_classes == 4 and source.input_shape == (16, 16, 1)
  train = _inputs(source, 'train')
  np.testing.assert_allclose(train.mean(), 0.0, atol=1e-4)  # Standardised on train statistics.
  np.testing.assert_allclose(train.std(), 1.0, atol=1e-3)
  first = {k: v[None] for k, v in source.splits['train'][0].items()}
  assert 'label' not in source.unlabeled_fn(first)


def test_center_subtracts_the_pooled_training_mean_of_both_domains():
  """'center' (the DANN paper's mean subtraction): one per-channel mean of the source and target
  training images together, weighted by their sizes, subtracted from both domains' inputs."""
  grey = lambda n, value: np.full((n, 4, 4, 1), value, np.uint8)  # noqa: E731
  data_lib.register_arrays('dark', {'train': {'image': grey(30, 51), 'label': np.arange(30) % 3},
                                    'test': {'image': grey(6, 51), 'label': np.arange(6) % 3}})
  data_lib.register_arrays('light', {'train': {'image': grey(10, 153), 'label': np.arange(10) % 3},
                                     'test': {'image': grey(6, 153), 'label': np.arange(6) % 3}})
  data = _data(domain_config('dark'), domain_config('light'), image_size=0, normalize='center')
  # Means 0.2 (30 images) and 0.6 (10 images): pooled (30 * 0.2 + 10 * 0.6) / 40 = 0.3.
  for role, expected in (('source', 0.2 - 0.3), ('target', 0.6 - 0.3)):
    domain = data_lib.load_domain(data[role], data, role)
    for split in ('train', 'test'):
      np.testing.assert_allclose(_inputs(domain, split), expected, atol=1e-6)


def test_preprocessing_functions():
  grey = np.full((1, 2, 2, 1), 0.5, np.float32)
  assert preprocess.set_channels(grey, 3).shape == (1, 2, 2, 3)
  rgb = np.ones((1, 2, 2, 3), np.float32)
  np.testing.assert_allclose(preprocess.set_channels(rgb, 1), 1.0, rtol=1e-6)
  framed = preprocess.frame(np.ones((2, 8, 8, 1), np.float32), 20, 28)
  assert framed.shape == (2, 28, 28, 1) and framed[:, 4:24, 4:24].min() == 1.0
  assert framed.sum() == 2 * 400
  np.testing.assert_array_equal(preprocess.to_unit_float(np.array([0, 255], np.uint8)), [0, 1])
  standardize = preprocess.standardizer(np.array([[1.0, 10.0], [3.0, 30.0]], np.float32))
  np.testing.assert_allclose(standardize(np.array([[2.0, 20.0]])), [[0.0, 0.0]], atol=1e-6)


def test_bad_inputs_get_one_line_errors(tmp_path):
  with pytest.raises(ValueError, match='images must be uint8 of shape'):
    data_lib.register_arrays('bad', {'train': {'image': np.zeros((3, 4, 4)), 'label': [0, 1, 2]}})
  with pytest.raises(ValueError, match='labels must have shape'):
    data_lib.register_arrays('bad', {'train': {'features': np.zeros((3, 4)),
                                               'label': np.zeros(4, int)}})
  data = _data(domain_config('svhn'), domain_config('optdigits'))
  with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
    data_lib.load_domain(data.source, data, 'source')
  with pytest.raises(ValueError, match='npz file .* not found'):
    data_lib.load_domain(domain_config('npz:/nope.npz'), data, 'source')
  with pytest.raises(ValueError, match="has no split 'test'"):
    data_lib.load_domain(domain_config('optdigits'), data, 'target')
  data_lib.register_arrays('three', {'train': {'features': np.zeros((6, 5), np.float32),
                                               'label': np.arange(6) % 3}})
  data_lib.register_arrays('two', {'train': {'features': np.zeros((6, 5), np.float32),
                                             'label': np.arange(6) % 2}})
  data = _data(domain_config('three', test_split='train'), domain_config('two', test_split='train'))
  with pytest.raises(ValueError, match='has 3 classes but target two has 2'):
    data_lib.check_compatible(data_lib.load_domain(data.source, data, 'source'),
                              data_lib.load_domain(data.target, data, 'target'))


def test_binarize_sets_every_inked_pixel_to_one_before_resizing_and_centering():
  """data.*.binarize (tf-dann's MNIST): a pixel > 0 becomes 255, then the usual transform; in a
  load with 'center' the pooled mean is that of the binarised images."""
  np.testing.assert_array_equal(preprocess.binarize(np.array([0, 1, 128, 255], np.uint8)),
                                [0, 255, 255, 255])
  images = np.array([[0, 1], [100, 255]], np.uint8).reshape(1, 2, 2, 1)
  plain = preprocess.image_transform(0, 1)(images)
  binary = preprocess.image_transform(0, 1, binary=True)(images)
  np.testing.assert_allclose(plain.ravel(), [0, 1 / 255, 100 / 255, 1], rtol=1e-6)
  np.testing.assert_array_equal(binary.ravel(), [0, 1, 1, 1])
  # Resizing comes after: a binarised 2x2 checkerboard zoomed to 4x4 keeps values in [0, 1]
  # whose corners are the binary pixels.
  board = np.array([[0, 7], [7, 0]], np.uint8).reshape(1, 2, 2, 1)
  zoomed = preprocess.image_transform(4, 1, binary=True)(board)
  assert zoomed[0, 0, 3, 0] == 1.0 and zoomed[0, 0, 0, 0] == 0.0

  ink = np.zeros((20, 4, 4, 1), np.uint8)
  ink[:, 1:3, 1:3] = 51                          # 4 of 16 pixels at 0.2 (1.0 binarised).
  data_lib.register_arrays('faint', {'train': {'image': ink, 'label': np.arange(20) % 2},
                                     'test': {'image': ink[:4], 'label': np.arange(4) % 2}})
  data_lib.register_arrays('blank', {'train': {'image': ink * 0, 'label': np.arange(20) % 2},
                                     'test': {'image': ink[:4] * 0, 'label': np.arange(4) % 2}})
  data = _data(domain_config('faint', binarize=True), domain_config('blank'), image_size=0,
               normalize='center')
  source = data_lib.load_domain(data.source, data, 'source')
  # Pooled mean: (0.25 + 0) / 2 = 0.125; an inked pixel 1 - 0.125, a blank one -0.125.
  values = np.unique(_inputs(source, 'train'))
  np.testing.assert_allclose(values, [-0.125, 0.875], atol=1e-6)
