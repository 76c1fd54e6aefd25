"""TensorFlow-free TFDS builders for the domain-adaptation benchmarks, and one way to read them.

`DATASETS` is the one table from a short name to a builder (and its config); `load_split`
prepares a dataset once under `data_dir` (array_record files, from the raw files in
`manual_dir`) and returns a whole split as numpy arrays:

  arrays = load_split('usps', 'train', data_dir='~/tfds', manual_dir='../shared/datasets')
  arrays['image']  # (7291, 16, 16, 1) uint8
  arrays['label']  # (7291,) int64

Image datasets give `image` (N, H, W, C) uint8; feature datasets give `features` (N, D) float32.
The raw layout under `manual_dir` is the one `check_manual_files` names for each dataset.
"""

import dataclasses
import fcntl
import os

import numpy as np
import tensorflow_datasets as tfds

from transfer_jax.data.builders import base, cifar, digits, features, images
from transfer_jax.data.builders.base import ArrayRecordBuilder
from transfer_jax.data.builders.images import ImageFolder
from transfer_jax.errors import UserError

READ_CHUNK = 8192  # Examples decoded per `__getitems__` call: bulk reads, bounded memory.


@dataclasses.dataclass(frozen=True)
class Entry:
  """A named dataset: a builder and its config; image folders also name their folder."""

  builder: type[ArrayRecordBuilder]
  config: str | None = None  # A BuilderConfig name, or for image folders the domain folder.
  folder: str | None = None  # Image folders only: the dataset's folder under the manual dir.

  @property
  def splits(self) -> tuple[str, ...]:
    return self.builder.SPLITS


OFFICE31_DOMAINS = ('amazon', 'dslr', 'webcam')
OFFICE_HOME_DOMAINS = ('Art', 'Clipart', 'Product', 'Real World')  # The release's folder names.
DOMAINNET_DOMAINS = ('clipart', 'infograph', 'painting', 'quickdraw', 'real', 'sketch')


def _key(domain: str) -> str:
  return domain.lower().replace(' ', '_')


DATASETS: dict[str, Entry] = {
    'usps': Entry(digits.Usps),
    'mnist': Entry(digits.Mnist),
    'optdigits': Entry(digits.Optdigits),
    'mnist5000': Entry(digits.Mnist5000),
    'mnist_m': Entry(images.MnistM),
    'jda_mnist_usps': Entry(digits.JdaMnistUsps),
    'cifar10': Entry(cifar.Cifar10),
    'cifar100': Entry(cifar.Cifar100),
    **{f'office_caltech10_surf/{d}': Entry(features.OfficeCaltech10Surf, d)
       for d in features.OFFICE_DOMAINS},
    **{f'amazon_reviews/{d}': Entry(features.AmazonReviews, d) for d in features.AMAZON_DOMAINS},
    **{f'office31/{_key(d)}': Entry(ImageFolder, d, 'office31') for d in OFFICE31_DOMAINS},
    **{f'office_home/{_key(d)}': Entry(ImageFolder, d, 'office_home') for d in OFFICE_HOME_DOMAINS},
    **{f'domainnet/{_key(d)}': Entry(ImageFolder, d, 'domainnet') for d in DOMAINNET_DOMAINS},
}


def get_entry(name: str) -> Entry:
  if name not in DATASETS:
    raise UserError(f'unknown dataset {name!r}; choose one of {sorted(DATASETS)}')
  return DATASETS[name]


def _check_manual_dir(name: str, manual_dir: str | None) -> str:
  if not manual_dir:
    raise UserError(f'{name} needs raw files: pass manual_dir, the folder holding them '
                     '(e.g. ../shared/datasets)')
  manual_dir = os.path.expanduser(manual_dir)
  if not os.path.isdir(manual_dir):
    raise UserError(f'{name}: the manual directory {manual_dir} does not exist; create it and put '
                     'the dataset files there')
  return manual_dir


def check_manual_files(name: str, manual_dir: str | None) -> list[str]:
  """The raw files `name` is built from, or a one-line error naming the first one missing.

  Datasets that ship with a pip package need none; MNIST may be downloaded instead.
  """
  entry = get_entry(name)
  if entry.folder is not None:
    root = os.path.join(_check_manual_dir(name, manual_dir), entry.folder)
    if not os.path.isdir(os.path.join(root, entry.config)):
      raise UserError(f'{name}: missing the folder {entry.config!r}; expected it in {root} '
                       f'(layout <manual_dir>/{entry.folder}/<domain>/<class>/<image file>)')
    return [os.path.join(root, entry.config)]
  relative_files = entry.builder.manual_files(entry.config)
  if not relative_files:
    return []
  downloadable = entry.builder.DOWNLOADABLE
  if downloadable and not (manual_dir and os.path.isdir(os.path.expanduser(manual_dir))):
    return []  # The builder downloads the files instead, or fails fast when offline.
  manual_dir = _check_manual_dir(name, manual_dir)
  paths = [os.path.join(manual_dir, relative) for relative in relative_files]
  for relative, path in zip(relative_files, paths, strict=True):
    if not os.path.exists(path):
      if downloadable:
        return []
      raise UserError(base.missing_file_message(name, relative, manual_dir))
  return paths


def make_builder(name: str, data_dir: str, manual_dir: str | None = None,
                 image_size: int | None = None) -> ArrayRecordBuilder:
  """The builder behind `name`, writing under `data_dir` (image folders read from `manual_dir`)."""
  entry = get_entry(name)
  data_dir = os.path.expanduser(data_dir)
  if entry.folder is not None:
    check_manual_files(name, manual_dir)  # The builder reads its class names from the folder.
    root = os.path.join(os.path.expanduser(manual_dir), entry.folder)
    return ImageFolder(root=root, domain=entry.config, image_size=image_size or 224,
                       data_dir=data_dir)
  if image_size is not None:
    raise UserError(f'{name} has a fixed image size; image_size applies to image folders only')
  return entry.builder(config=entry.config, data_dir=data_dir)


def is_prepared(builder: ArrayRecordBuilder) -> bool:
  """Like `builder.is_prepared()`, without its warning when the folder does not exist yet."""
  return os.path.exists(os.path.join(builder.data_dir, 'dataset_info.json'))


def prepare(builder: ArrayRecordBuilder, manual_dir: str | None = None) -> None:
  """Writes the builder's array_record files, unless they already exist. Processes that prepare
  the same dataset at once (a parallel sweep) take turns on a lock file; the later ones read
  what the first one wrote."""
  if is_prepared(builder):
    return
  folder = os.path.dirname(builder.data_dir)
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, '.prepare.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if is_prepared(builder):
      builder.info.read_from_directory(builder.data_dir)
      return
    config = tfds.download.DownloadConfig(
        manual_dir=os.path.expanduser(manual_dir) if manual_dir else None)
    try:
      builder.download_and_prepare(download_config=config)
    except UserError:
      raise
    except Exception as e:  # noqa: BLE001 (h5py, scipy, zipfile, PIL: each its own errors)
      files = [os.path.join(manual_dir or '', f) for f in builder.manual_files(
          getattr(builder.builder_config, 'name', None))] if manual_dir else []
      reason = str(e).splitlines()[0][:200] if str(e) else ''
      raise UserError(f'{builder.name}: cannot read {", ".join(files) or "its raw files"} '
                      f'({type(e).__name__}: {reason}); replace them with intact copies of the '
                      'dataset') from None


def read_split(builder: ArrayRecordBuilder, split: str) -> dict[str, np.ndarray]:
  """A prepared split as arrays: `image` or `features`, and int64 `label`, in stored order."""
  if split not in builder.info.splits:
    raise UserError(f'{builder.name} has no split {split!r}; choose one of '
                     f'{sorted(builder.info.splits)}')
  source = builder.as_data_source(split)
  key = builder.INPUT_KEY
  feature, label_feature = builder.info.features[key], builder.info.features['label']
  size = len(source)
  arrays = {key: np.empty((size, *feature.shape), feature.np_dtype),
            'label': np.empty((size,), np.int64)}
  for start in range(0, size, READ_CHUNK):
    rows = source.__getitems__(list(range(start, min(size, start + READ_CHUNK))))
    stop = start + len(rows)
    try:
      arrays[key][start:stop] = np.stack([row[key] for row in rows])
    except ValueError as e:
      raise UserError(f'{builder.name}/{split}: stored {key} do not have shape {feature.shape} '
                       f'({e}); delete {builder.data_dir} and prepare it again') from None
    arrays['label'][start:stop] = [row['label'] for row in rows]
  labels, num_classes = arrays['label'], label_feature.num_classes
  if size and (labels.min() < 0 or labels.max() >= num_classes):
    raise UserError(f'{builder.name}/{split}: labels span {labels.min()}..{labels.max()}, '
                     f'expected 0..{num_classes - 1}; delete {builder.data_dir} and prepare again')
  return arrays


def load_split(name: str, split: str, data_dir: str, manual_dir: str | None = None,
               image_size: int | None = None) -> dict[str, np.ndarray]:
  """Split `split` of dataset `name` as numpy arrays, preparing it under `data_dir` if needed."""
  entry = get_entry(name)
  if split not in entry.splits:
    raise UserError(f'{name} has no split {split!r}; choose one of {list(entry.splits)}')
  builder = make_builder(name, data_dir, manual_dir, image_size)
  if not is_prepared(builder):
    check_manual_files(name, manual_dir)
    prepare(builder, manual_dir)
  return read_split(builder, split)


def num_classes(builder: ArrayRecordBuilder) -> int:
  return builder.info.features['label'].num_classes


__all__ = ['DATASETS', 'ArrayRecordBuilder', 'Entry', 'ImageFolder', 'check_manual_files',
           'get_entry', 'is_prepared', 'load_split', 'make_builder', 'num_classes', 'prepare',
           'read_split']
