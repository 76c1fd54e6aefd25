"""Precomputed-feature domains as TFDS builders: Office-Caltech10 SURF and Amazon reviews.

Both store `features` as float32 vectors and `label` as a class index, in the order of the raw
MATLAB v5 files, with one builder config per domain.
"""

import numpy as np
import scipy.io
import scipy.sparse
import tensorflow_datasets as tfds

from transfer_jax.data.builders import base
from transfer_jax.errors import UserError

OFFICE_DOMAINS = ('amazon', 'caltech', 'dslr', 'webcam')
AMAZON_DOMAINS = ('books', 'dvd', 'electronics', 'kitchen')
SURF_DIM = 800
REVIEW_DIM = 5000


def load_mat(name: str, path: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
  """The named variables of a MATLAB v5 file, or a one-line error naming what is missing."""
  try:
    arrays = scipy.io.loadmat(path)
  except (ValueError, NotImplementedError, OSError) as e:
    reason = str(e).splitlines()[0] if str(e) else e.__class__.__name__
    raise UserError(f'{name}: cannot read {path} as a MATLAB v5 file ({reason})') from None
  missing = [k for k in keys if k not in arrays]
  if missing:
    raise UserError(f'{name}: {path} lacks the variables {missing}; is it the right file?')
  return {k: arrays[k] for k in keys}


def dense_float32(matrix) -> np.ndarray:
  """A (possibly scipy-sparse) matrix as a dense float32 array."""
  if scipy.sparse.issparse(matrix):
    matrix = matrix.toarray()
  return np.asarray(matrix, dtype=np.float32)


class OfficeCaltech10Surf(base.ArrayRecordBuilder):
  """Office-Caltech10 (Gong et al. 2012, GFK release): 800-bin SURF bag-of-words per image."""

  name = 'office_caltech10_surf'
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=d, description=f'The {d} domain.')
                     for d in OFFICE_DOMAINS]
  MANUAL_FILES = ('office_caltech10_surf/{config}_SURF_L10.mat',)
  INPUT_KEY = 'features'
  DESCRIPTION = 'Office-Caltech10 SURF histograms (800-d), 10 classes.'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put {amazon,caltech,dslr,webcam}_SURF_L10.mat (variables fts (N,800) and labels (N,1) '
      '1..10) in <manual_dir>/office_caltech10_surf/.')

  def _info(self):
    return self.make_info(base.vector_features(SURF_DIM, 10), ('features', 'label'))

  def _split_generators(self, dl_manager):
    relative, = self.manual_files(self.builder_config.name)
    path = self.manual_path(dl_manager, relative)
    arrays = load_mat(self.name, path, ('fts', 'labels'))
    features = dense_float32(arrays['fts'])
    base.check_shape(self.name, path, 'fts', features, (None, SURF_DIM))
    labels = arrays['labels'].reshape(-1)
    base.check_same_length(self.name, path, features, labels)
    labels = base.check_labels(self.name, path, labels - 1, 10)  # MATLAB's 1..10 -> 0..9.
    return {'train': self._generate_examples(features, labels)}


class AmazonReviews(base.ArrayRecordBuilder):
  """Amazon reviews sentiment (Blitzer et al. 2007), 5000-d counts as used by mSDA and DANN."""

  name = 'amazon_reviews'
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=d, description=f'The {d} domain.')
                     for d in AMAZON_DOMAINS]
  MANUAL_FILES = ('amazon_reviews/{config}_train.mat', 'amazon_reviews/{config}_test.mat')
  SPLITS = ('train', 'test')
  INPUT_KEY = 'features'
  DESCRIPTION = 'Amazon reviews, 5000-d unigram/bigram counts; label 1 = positive.'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put {books,dvd,electronics,kitchen}_{train,test}.mat (variables data (N,5000) and labels '
      '(1,N) of +-1) in <manual_dir>/amazon_reviews/.')

  def _info(self):
    # Counts are mostly zeros, so zlib shrinks them about 50x at a small cost in speed.
    features = base.vector_features(REVIEW_DIM, 2, compress=True)
    features['label'] = tfds.features.ClassLabel(names=['negative', 'positive'])
    return self.make_info(features, ('features', 'label'))

  def _split_generators(self, dl_manager):
    generators = {}
    for split, relative in zip(self.SPLITS, self.manual_files(self.builder_config.name),
                               strict=True):
      path = self.manual_path(dl_manager, relative)
      features, labels = read_reviews(path)
      generators[split] = self._generate_examples(features, labels)
    return generators


def read_reviews(path: str) -> tuple[np.ndarray, np.ndarray]:
  """(float32 (N,5000) counts, int64 labels 0/1) from one Amazon reviews .mat file."""
  arrays = load_mat('amazon_reviews', path, ('data', 'labels'))
  features = dense_float32(arrays['data'])
  base.check_shape('amazon_reviews', path, 'data', features, (None, REVIEW_DIM))
  labels = np.asarray(arrays['labels']).reshape(-1)
  base.check_same_length('amazon_reviews', path, features, labels)
  values = set(np.unique(labels).tolist())
  if not (values <= {-1, 1} or values <= {0, 1}):
    raise UserError(f'amazon_reviews: labels in {path} take the values {sorted(values)}, '
                     'expected -1/+1 (or 0/1)')
  return features, (labels > 0).astype(np.int64)
