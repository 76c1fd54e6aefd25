"""Data: named domains, their splits, and the input pipeline.

`DATASETS` is the one table from a config name to a loader returning (images, labels) arrays;
`load_domain` splits them into train and test with a fixed split seed, independent of the run seed.
"""

import dataclasses

import ml_collections
import numpy as np

from transfer_jax.data import digits
from transfer_jax.data.pipeline import ShuffledBatches, padded_batches
from transfer_jax.errors import UserError

DATASETS = {
    'mnist5000': digits.mnist5000,
    'optdigits': digits.optdigits,
}


@dataclasses.dataclass(frozen=True)
class Domain:
  """One domain's splits as arrays: `splits[name] = {'image': (N,H,W,C) float32, 'label': (N,)}`."""

  name: str
  num_classes: int
  splits: dict[str, dict[str, np.ndarray]]


def load_domain(name: str, data_config: ml_collections.ConfigDict) -> Domain:
  """Loads domain `name` and holds out `data_config.test_fraction` of it as its test split."""
  if name not in DATASETS:
    raise UserError(f'unknown dataset {name!r} in config.data; choose one of {sorted(DATASETS)}')
  images, labels = DATASETS[name]()
  validate_arrays(name, images, labels)
  order = np.random.default_rng(data_config.split_seed).permutation(len(labels))
  num_test = int(round(len(labels) * data_config.test_fraction))
  test, train = order[:num_test], order[num_test:]
  splits = {'train': {'image': images[train], 'label': labels[train]},
            'test': {'image': images[test], 'label': labels[test]}}
  return Domain(name=name, num_classes=int(labels.max()) + 1, splits=splits)


def validate_arrays(name: str, images: np.ndarray, labels: np.ndarray) -> None:
  """Fails with a one-line message on arrays a domain cannot be built from."""
  if images.ndim != 4:
    raise UserError(f'{name}: images must have shape (N, H, W, C), got {images.shape}')
  if labels.shape != (images.shape[0],):
    raise UserError(f'{name}: labels must have shape ({images.shape[0]},), got {labels.shape}')
  if labels.min() < 0:
    raise UserError(f'{name}: labels must be 0..num_classes-1, found {labels.min()}')


def check_compatible(source: Domain, target: Domain) -> None:
  """Source and target must share image shape and label set."""
  source_shape = source.splits['train']['image'].shape[1:]
  target_shape = target.splits['train']['image'].shape[1:]
  if source_shape != target_shape:
    raise UserError(f'source {source.name} images are {source_shape} but target {target.name} '
                     f'images are {target_shape}; resize one of them to a common shape')
  if source.num_classes != target.num_classes:
    raise UserError(f'source {source.name} has {source.num_classes} classes but target '
                     f'{target.name} has {target.num_classes}; the label sets must match')


__all__ = ['DATASETS', 'Domain', 'ShuffledBatches', 'check_compatible', 'load_domain',
           'padded_batches', 'validate_arrays']
