"""What every builder here shares: array_record output, manual-file lookup, checks on raw arrays.

The builders write `array_record` files with `tfds.features.Tensor` features, the one TFDS
combination that builds and reads without TensorFlow (reading goes through
`builder.as_data_source`). Raw files come from the TFDS manual directory, set by the caller with
`tfds.download.DownloadConfig(manual_dir=...)`; every failure is a one-line `UserError` that says
which file is missing and where it was expected.
"""

import os
import socket
import urllib.parse
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds

from transfer_jax.errors import UserError

FILE_FORMAT = 'array_record'
CONNECT_TIMEOUT_S = 3.0  # Offline machines must fail in seconds, not after TFDS's ~200 s retries.


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A GeneratorBasedBuilder that always writes array_record files, in generation order.

  Subclasses list the files they read in `MANUAL_FILES` (relative to the manual directory;
  `{config}` is replaced by the builder config's name) and their split names in `SPLITS`.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES: ClassVar[dict[str, str]] = {'1.0.0': 'First release.'}
  MANUAL_FILES: ClassVar[tuple[str, ...]] = ()
  SPLITS: ClassVar[tuple[str, ...]] = ('train',)
  DOWNLOADABLE: ClassVar[bool] = False  # True: missing manual files are downloaded instead.
  DESCRIPTION: ClassVar[str] = ''
  INPUT_KEY: ClassVar[str] = 'image'  # 'features' for vector data.
  HOMEPAGE: ClassVar[str] = ''

  def __init__(self, *, file_format: str | None = None, **kwargs: Any):
    if file_format not in (None, FILE_FORMAT):
      raise UserError(f'{self.name}: only file_format={FILE_FORMAT!r} is supported (it is the '
                       f'one TFDS reads without TensorFlow), got {file_format!r}')
    super().__init__(file_format=FILE_FORMAT, **kwargs)

  @classmethod
  def manual_files(cls, config: str | None = None) -> tuple[str, ...]:
    """The files (relative to the manual directory) this builder reads for `config`."""
    return tuple(f.format(config=config) for f in cls.MANUAL_FILES)

  def make_info(self, features: dict[str, tfds.features.FeatureConnector],
                supervised_keys: tuple[str, str]) -> tfds.core.DatasetInfo:
    """DatasetInfo with shuffling off, so examples keep the order of the raw files."""
    return tfds.core.DatasetInfo(
        builder=self, description=self.DESCRIPTION, homepage=self.HOMEPAGE or None,
        features=tfds.features.FeaturesDict(features), supervised_keys=supervised_keys,
        disable_shuffling=True)

  def _generate_examples(self, inputs, labels):
    """(index, example) pairs from equal-length in-memory arrays, in order."""
    for index, (x, label) in enumerate(zip(inputs, labels, strict=True)):
      yield index, {self.INPUT_KEY: x, 'label': label}

  def manual_root(self, dl_manager: tfds.download.DownloadManager) -> str:
    """The manual directory, even when TFDS refuses it for being missing or empty."""
    try:
      return os.fspath(dl_manager.manual_dir)
    except (AssertionError, ValueError):  # TFDS's multi-line errors; ours name the file instead.
      return os.fspath(getattr(dl_manager, '_manual_dir', None) or '<unset>')

  def manual_path(self, dl_manager: tfds.download.DownloadManager, relative: str) -> str:
    """Absolute path of a file in the manual directory, or a one-line error naming it."""
    root = self.manual_root(dl_manager)
    path = os.path.join(root, relative)
    if not os.path.exists(path):
      raise UserError(missing_file_message(self.name, relative, root))
    return path


def missing_file_message(name: str, relative: str, manual_dir: str) -> str:
  folder = os.path.join(manual_dir, os.path.dirname(relative))
  return (f'{name}: missing {os.path.basename(relative)!r}; expected it in {folder} (put the '
          f'dataset files under the manual directory {manual_dir}, layout <manual_dir>/{relative})')


def image_features(shape: Sequence[int], num_classes: int | None = None,
                   class_names: Sequence[str] | None = None) -> dict[str, Any]:
  """`image` (uint8 HxWxC, stored as raw bytes: the fastest TF-free encoding) and `label`."""
  label = (tfds.features.ClassLabel(names=list(class_names)) if class_names is not None
           else tfds.features.ClassLabel(num_classes=num_classes))
  return {'image': tfds.features.Tensor(shape=tuple(shape), dtype=np.uint8, encoding='bytes'),
          'label': label}


def vector_features(dim: int, num_classes: int, compress: bool = False) -> dict[str, Any]:
  """`features` (float32 (dim,); zlib for sparse count vectors) and `label`."""
  encoding = 'zlib' if compress else 'bytes'
  return {'features': tfds.features.Tensor(shape=(dim,), dtype=np.float32, encoding=encoding),
          'label': tfds.features.ClassLabel(num_classes=num_classes)}


def unit_to_uint8(name: str, path: str, values: np.ndarray) -> np.ndarray:
  """Floats in [0, 1] to uint8 0..255 (rounded), or a one-line error for other ranges."""
  low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
  if low < -1e-6 or high > 1.0 + 1e-6:  # Some USPS copies hold [-1, 1] or 0..255.
    raise UserError(f'{name}: pixel values in {path} span {low:g}..{high:g}, expected 0..1')
  return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def check_labels(name: str, path: str, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Labels as int64 0..num_classes-1, or a one-line error naming the file."""
  labels = np.asarray(labels)
  if labels.size and not np.all(labels == np.round(labels)):
    raise UserError(f'{name}: {path} has non-integer labels; is it the right file?')
  labels = labels.astype(np.int64)
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise UserError(f'{name}: labels in {path} span {labels.min()}..{labels.max()} after '
                     f'conversion, expected 0..{num_classes - 1}; is it the right file?')
  return labels


def check_shape(name: str, path: str, what: str, array: np.ndarray,
                shape: Sequence[int | None]) -> None:
  """One-line error unless `array.shape` matches `shape` (None matches any size)."""
  ok = array.ndim == len(shape) and all(
      s is None or s == a for s, a in zip(shape, array.shape, strict=True))
  if not ok:
    want = '(' + ', '.join('N' if s is None else str(s) for s in shape) + ')'
    raise UserError(f'{name}: {what} in {path} has shape {array.shape}, expected {want}')


def check_same_length(name: str, path: str, inputs: np.ndarray, labels: np.ndarray) -> None:
  if len(inputs) != len(labels):
    raise UserError(f'{name}: {path} has {len(inputs)} examples but {len(labels)} labels')


def check_online(name: str, url: str, fallback: str,
                 timeout_s: float = CONNECT_TIMEOUT_S) -> None:
  """Fails within `timeout_s` with a one-line error when `url`'s host cannot be reached."""
  parts = urllib.parse.urlsplit(url)
  port = parts.port or (443 if parts.scheme == 'https' else 80)
  try:
    with socket.create_connection((parts.hostname, port), timeout=timeout_s):
      pass
  except OSError as e:
    raise UserError(f'{name}: cannot reach {parts.hostname}:{port} to download '
                     f'({e.__class__.__name__}); {fallback}') from None
