"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) as TFDS builders, read from the binary releases.

TFDS's own `cifar10`/`cifar100` need TensorFlow to build (Image features); these store `image` as
raw uint8 (32, 32, 3) instead. They read the official *binary* archives, never the python ones:
those are pickles, and the project never unpickles downloaded data. Each record of a `.bin` file
is its label bytes (CIFAR-100: coarse, then fine) and 3072 pixel bytes, channel-major 3x32x32.
The archive (or the folder it extracts to) comes from `<manual_dir>/cifar10/` or
`<manual_dir>/cifar100/`; without either, it is downloaded from the official URL.
"""

import hashlib
import os
import tarfile
import zlib
from typing import ClassVar, NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from transfer_jax.data.builders import base
from transfer_jax.errors import UserError

IMAGE_SHAPE = (32, 32, 3)
PIXEL_BYTES = 3 * 32 * 32
HOMEPAGE = 'https://www.cs.toronto.edu/~kriz/cifar.html'
CIFAR10_NAMES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
                 'truck')  # batches.meta.txt of the release, used when the file is absent.


class LabelByte(NamedTuple):
  """One label byte of a record: the feature it fills, its class count, its class-name file."""

  key: str
  num_classes: int
  names_file: str


class CifarBinary(base.ArrayRecordBuilder, skip_registration=True):
  """A CIFAR binary release: `.bin` files of fixed-size records, in an archive or its folder.

  Subclasses name the release; `SHA256` is checked on downloaded archives only (a manual copy is
  checked by its strict parse), with the value TFDS registers for the same URL.
  """

  SPLITS = ('train', 'test')
  DOWNLOADABLE = True
  HOMEPAGE = HOMEPAGE
  FOLDER: ClassVar[str] = ''  # The dataset's folder under the manual directory.
  ARCHIVE: ClassVar[str] = ''  # The official archive's file name.
  MEMBER_FOLDER: ClassVar[str] = ''  # The folder the archive extracts to.
  URL: ClassVar[str] = ''
  SHA256: ClassVar[str] = ''
  SPLIT_FILES: ClassVar[dict[str, tuple[str, ...]]] = {}  # Split -> its .bin files, in order.
  LABEL_BYTES: ClassVar[tuple[LabelByte, ...]] = ()  # In the order they lead each record.
  DEFAULT_NAMES: ClassVar[dict[str, tuple[str, ...]]] = {}  # Class names when a file is absent.

  def _info(self):
    # Raw bytes, as `base.image_features`; class names are set once read from the release.
    features = {'image': tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8, encoding='bytes')}
    for label in self.LABEL_BYTES:
      features[label.key] = tfds.features.ClassLabel(num_classes=label.num_classes)
    return self.make_info(features, ('image', 'label'))

  def _split_generators(self, dl_manager):
    folder = os.path.join(self.manual_root(dl_manager), self.FOLDER)
    archive = os.path.join(folder, self.ARCHIVE)
    extracted = os.path.join(folder, self.MEMBER_FOLDER)
    if os.path.isfile(archive):
      files = read_archive(self.name, archive, self.MEMBER_FOLDER, self.wanted_files())
    elif os.path.isdir(extracted):
      files = read_folder(self.name, extracted, self.wanted_files())
    else:
      put = f'put {self.ARCHIVE} (or the folder {self.MEMBER_FOLDER} it extracts to) in {folder}'
      base.check_online(self.name, self.URL, f'offline? {put} and run again')
      archive = os.fspath(dl_manager.download(self.URL))
      check_sha256(self.name, archive, self.SHA256,
                   f'it came from {self.URL}: delete it and run again, or {put}')
      files = read_archive(self.name, archive, self.MEMBER_FOLDER, self.wanted_files())
    for label in self.LABEL_BYTES:
      names = self.class_names(files, label)
      if names is not None:
        self.info.features[label.key].names = names
    generators = {}
    for split, bin_files in self.SPLIT_FILES.items():
      batches = [parse_records(self.name, *files[f], self.LABEL_BYTES) for f in bin_files]
      generators[split] = self._generate_examples(batches)
    return generators

  def wanted_files(self) -> dict[str, bool]:
    """The release's file names, each with whether it is required (`.bin`) or optional (names)."""
    wanted = {f: True for bin_files in self.SPLIT_FILES.values() for f in bin_files}
    return wanted | {label.names_file: False for label in self.LABEL_BYTES}

  def class_names(self, files: dict[str, tuple[str, bytes]], label: LabelByte) -> list[str] | None:
    """`label`'s names from its file in the release, else the defaults (None: plain indices)."""
    if label.names_file not in files:
      default = self.DEFAULT_NAMES.get(label.key)
      return list(default) if default is not None else None
    path, data = files[label.names_file]
    try:
      names = [line.strip() for line in data.decode('utf-8').splitlines() if line.strip()]
    except UnicodeDecodeError:
      raise UserError(f'{self.name}: {path} is not UTF-8 text; is it the right file?') from None
    if len(names) != label.num_classes or len(set(names)) != len(names):
      raise UserError(f'{self.name}: {path} lists {len(names)} class names '
                       f'({len(set(names))} distinct), expected {label.num_classes} distinct')
    return names

  def _generate_examples(self, batches):
    """(index, example) pairs from the parsed `.bin` files of one split, in file order."""
    index = 0
    for images, labels in batches:
      for i, image in enumerate(images):
        yield index, {'image': image, **{key: values[i] for key, values in labels.items()}}
        index += 1


def read_archive(name: str, path: str, member_folder: str,
                 wanted: dict[str, bool]) -> dict[str, tuple[str, bytes]]:
  """The wanted files of `member_folder` in a tar(.gz), each as (its name for errors, bytes).

  One streaming pass, nothing written to disk; a missing required file is a one-line error.
  """
  files = {}
  try:
    with tarfile.open(path, 'r|*') as tar:
      for member in tar:
        folder, _, file = member.name.removeprefix('./').rpartition('/')
        if member.isfile() and folder == member_folder and file in wanted:
          files[file] = (f'{member_folder}/{file} in {path}', tar.extractfile(member).read())
  except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
    raise UserError(f'{name}: cannot read the archive {path} ({e.__class__.__name__}); is it '
                     'complete? delete it and put the official archive there') from None
  missing = [f for f, required in wanted.items() if required and f not in files]
  if missing:
    listed = ', '.join(f'{member_folder}/{f}' for f in missing)
    raise UserError(f'{name}: {path} lacks {listed}; is it the binary release (not the python '
                     'one)?')
  return files


def read_folder(name: str, folder: str, wanted: dict[str, bool]) -> dict[str, tuple[str, bytes]]:
  """The wanted files of an extracted release folder, as `read_archive` gives them."""
  files = {}
  for file, required in wanted.items():
    path = os.path.join(folder, file)
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        files[file] = (path, f.read())
    elif required:
      raise UserError(f'{name}: missing {file!r}; expected it in {folder} (the folder the binary '
                       'release extracts to)')
  return files


def parse_records(name: str, path: str, data: bytes, label_bytes: tuple[LabelByte, ...]
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """A `.bin` file as (uint8 (N, 32, 32, 3) images, {label key: int64 (N,) labels})."""
  record_size = len(label_bytes) + PIXEL_BYTES
  if not data or len(data) % record_size:
    raise UserError(f'{name}: {path} holds {len(data)} bytes, not a whole number of '
                     f'{record_size}-byte records ({len(label_bytes)} label + {PIXEL_BYTES} '
                     'pixel bytes); is it the right file?')
  records = np.frombuffer(data, np.uint8).reshape(-1, record_size)
  labels = {}
  for column, label in enumerate(label_bytes):
    values = records[:, column].astype(np.int64)
    if values.max() >= label.num_classes:
      raise UserError(f'{name}: {label.key} values in {path} reach {values.max()}, expected '
                       f'0..{label.num_classes - 1}; is it the right file?')
    labels[label.key] = values
  # Channel-major planes (R, G, B, 32 rows each) to HWC: a view, copied as each example is written.
  images = records[:, len(label_bytes):].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return images, labels


def check_sha256(name: str, path: str, expected: str, advice: str) -> None:
  """One-line error, ending with `advice`, unless the file at `path` has SHA-256 `expected`."""
  with open(path, 'rb') as f:
    actual = hashlib.file_digest(f, 'sha256').hexdigest()
  if actual != expected:
    raise UserError(f'{name}: {path} has SHA-256 {actual}, expected {expected}; {advice}')


class Cifar10(CifarBinary):
  """CIFAR-10: 50000 train / 10000 test RGB 32x32 images of 10 classes."""

  name = 'da_cifar10'  # `cifar10` is TFDS's own builder, which needs TensorFlow to build.
  FOLDER = 'cifar10'
  ARCHIVE = 'cifar-10-binary.tar.gz'
  MEMBER_FOLDER = 'cifar-10-batches-bin'
  MANUAL_FILES = (f'{FOLDER}/{ARCHIVE}',)
  URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz'
  SHA256 = 'c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd'  # TFDS's checksum.
  SPLIT_FILES = {'train': tuple(f'data_batch_{i}.bin' for i in range(1, 6)),
                 'test': ('test_batch.bin',)}
  LABEL_BYTES = (LabelByte('label', 10, 'batches.meta.txt'),)
  DEFAULT_NAMES = {'label': CIFAR10_NAMES}
  DESCRIPTION = 'CIFAR-10, 32x32 RGB, values 0..255, 10 classes.'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Put {ARCHIVE} (or the folder {MEMBER_FOLDER} it extracts to) in <manual_dir>/{FOLDER}/; '
      f'without it the builder downloads {URL}')


class Cifar100(CifarBinary):
  """CIFAR-100: 50000 train / 10000 test RGB 32x32 images of 100 classes in 20 superclasses."""

  name = 'da_cifar100'  # `cifar100` is TFDS's own builder, which needs TensorFlow to build.
  FOLDER = 'cifar100'
  ARCHIVE = 'cifar-100-binary.tar.gz'
  MEMBER_FOLDER = 'cifar-100-binary'
  MANUAL_FILES = (f'{FOLDER}/{ARCHIVE}',)
  URL = 'https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz'
  SHA256 = '58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec'  # TFDS's checksum.
  SPLIT_FILES = {'train': ('train.bin',), 'test': ('test.bin',)}
  LABEL_BYTES = (LabelByte('coarse_label', 20, 'coarse_label_names.txt'),
                 LabelByte('label', 100, 'fine_label_names.txt'))
  DESCRIPTION = ('CIFAR-100, 32x32 RGB, values 0..255; `label` is the fine class (100), '
                 '`coarse_label` its superclass (20).')
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Put {ARCHIVE} (or the folder {MEMBER_FOLDER} it extracts to) in <manual_dir>/{FOLDER}/; '
      f'without it the builder downloads {URL}')
