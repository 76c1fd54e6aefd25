"""Domains stored as image files: MNIST-M and any `root/domain/class/image` folder.

The folder builder covers Office-31, Office-Home and DomainNet (and any dataset laid out the same
way): one builder config per (root, domain, image size), made on the fly, with the class names
sorted alphabetically and required to be the same in every domain of the root.
"""

import dataclasses
import hashlib
import os
import re
from typing import ClassVar

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from transfer_jax.data.builders import base
from transfer_jax.errors import UserError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


def load_rgb(name: str, path: str, size: int, resize: bool) -> np.ndarray:
  """An image file as uint8 (size, size, 3); resized (bilinear) only when `resize` is set."""
  try:
    with PIL.Image.open(path) as image:
      image = image.convert('RGB')
  except (OSError, PIL.UnidentifiedImageError) as e:
    raise UserError(f'{name}: cannot read image {path} ({e.__class__.__name__})') from None
  if image.size != (size, size):
    if not resize:
      raise UserError(f'{name}: image {path} is {image.size[0]}x{image.size[1]}, '
                       f'expected {size}x{size}')
    image = image.resize((size, size), PIL.Image.Resampling.BILINEAR)
  return np.asarray(image, dtype=np.uint8)


class MnistM(base.ArrayRecordBuilder):
  """MNIST-M (Ganin & Lempitsky 2015): MNIST digits blended over BSDS500 patches, RGB 32x32.

  Stored at the release's 32x32 (59001 train / 9001 test PNGs); configs resize or crop it.
  """

  name = 'mnist_m'
  IMAGE_SIZE = 32  # The release's images (mnist_m.tar.gz): every PNG is 32x32 RGB.
  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES: ClassVar[dict[str, str]] = {
      '1.0.0': 'First release (assumed 28x28 images; the release has none).',
      '1.1.0': "The release's 32x32 images."}
  MANUAL_FILES = ('mnist_m/mnist_m_train_labels.txt', 'mnist_m/mnist_m_train',
                  'mnist_m/mnist_m_test_labels.txt', 'mnist_m/mnist_m_test')
  SPLITS = ('train', 'test')
  DESCRIPTION = 'MNIST-M digits, 32x32 RGB, values 0..255.'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Extract the MNIST-M release into <manual_dir>/mnist_m/ (mnist_m_train/*.png with '
      'mnist_m_train_labels.txt, mnist_m_test/*.png with mnist_m_test_labels.txt).')

  def _info(self):
    size = self.IMAGE_SIZE
    return self.make_info(base.image_features((size, size, 3), 10), ('image', 'label'))

  def _split_generators(self, dl_manager):
    generators = {}
    for split in self.SPLITS:
      labels_file = self.manual_path(dl_manager, f'mnist_m/mnist_m_{split}_labels.txt')
      folder = self.manual_path(dl_manager, f'mnist_m/mnist_m_{split}')
      files, labels = read_label_list(labels_file, folder)
      generators[split] = self._generate_examples(files, labels)
    return generators

  def _generate_examples(self, inputs, labels):
    for index, (path, label) in enumerate(zip(inputs, labels, strict=True)):
      image = load_rgb(self.name, path, self.IMAGE_SIZE, resize=False)
      yield index, {'image': image, 'label': label}


def read_label_list(labels_file: str, folder: str) -> tuple[list[str], np.ndarray]:
  """MNIST-M's `<file name> <digit>` lines as (image paths, int64 labels)."""
  files, labels = [], []
  with open(labels_file) as f:
    for number, line in enumerate(f, start=1):
      fields = line.split()
      if not fields:
        continue
      if len(fields) != 2 or not fields[1].lstrip('-').isdigit():
        raise UserError(f'mnist_m: line {number} of {labels_file} is {line.strip()!r}, '
                         "expected '<file name> <digit>'")
      files.append(os.path.join(folder, fields[0]))
      labels.append(int(fields[1]))
  if not files:
    raise UserError(f'mnist_m: {labels_file} lists no images')
  missing = [p for p in files if not os.path.exists(p)]
  if missing:
    raise UserError(f'mnist_m: {len(missing)} images listed in {labels_file} are missing, '
                     f'e.g. {missing[0]}; re-extract the release into {folder}')
  return files, base.check_labels('mnist_m', labels_file, np.array(labels), 10)


@dataclasses.dataclass(eq=False)
class ImageFolderConfig(tfds.core.BuilderConfig):
  """One domain of an image-folder dataset, at one square image size."""

  root: str = ''
  domain: str = ''
  image_size: int = 224
  class_names: tuple[str, ...] = ()


def _subfolders(path: str) -> list[str]:
  return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith('.'))


def class_folder(root: str, domain: str) -> str:
  """The folder holding `domain`'s class folders (Office-31 puts them in `<domain>/images`)."""
  path = os.path.join(root, domain)
  inner = _subfolders(path)
  return os.path.join(path, 'images') if inner == ['images'] else path


def folder_config(root: str, domain: str, image_size: int = 224) -> ImageFolderConfig:
  """The config of `root/domain`, or a one-line error if the layout or the class sets disagree."""
  if not os.path.isdir(root):
    raise UserError(f'image_folder: no folder {root}; put the dataset there as '
                     '<root>/<domain>/<class>/<image file>')
  domains = _subfolders(root)
  if domain not in domains:
    raise UserError(f'image_folder: no domain {domain!r} in {root}; found {domains}')
  if image_size < 1:
    raise UserError(f'image_folder: image_size must be positive, got {image_size}')
  classes = _subfolders(class_folder(root, domain))
  if not classes:
    raise UserError(f'image_folder: {class_folder(root, domain)} has no class folders')
  for other in domains:
    other_classes = _subfolders(class_folder(root, other))
    if other_classes != classes:
      only_here = sorted(set(classes) - set(other_classes))[:5]
      only_there = sorted(set(other_classes) - set(classes))[:5]
      raise UserError(f'image_folder: domains {domain!r} and {other!r} of {root} have different '
                       f'class folders (only in {domain}: {only_here}, only in {other}: '
                       f'{only_there}); every domain needs the same classes')
  slug = lambda text: re.sub(r'[^A-Za-z0-9_]+', '_', text).strip('_').lower() or 'x'
  dataset = slug(os.path.basename(os.path.normpath(root)))
  # The root's absolute path and the domain's content (every image's name, size and
  # modification time) are hashed into the name: two folders with one basename never share
  # prepared files, and an edited folder is prepared again instead of reading a stale copy.
  root_id = hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:8]
  content_id = content_key(class_folder(root, domain), classes)
  return ImageFolderConfig(
      name=f'{dataset}_{root_id}_{slug(domain)}_{content_id}_{image_size}px',
      root=os.path.abspath(root),
      domain=domain,
      image_size=image_size, class_names=tuple(classes),
      description=f'Domain {domain} of {root}, resized to {image_size}x{image_size}.')


def content_key(folder: str, classes: list[str]) -> str:
  """8 hex digits of a hash over each class's image files: name, size, modification time."""
  digest = hashlib.sha1()
  for class_name in classes:
    with os.scandir(os.path.join(folder, class_name)) as entries:
      for entry in sorted(entries, key=lambda e: e.name):
        if entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
          stat = entry.stat()
          digest.update(f'{class_name}/{entry.name}:{stat.st_size}:{stat.st_mtime_ns}\n'.encode())
  return digest.hexdigest()[:8]


class ImageFolder(base.ArrayRecordBuilder, skip_registration=True):
  """Images under `root/domain/class/` resized to a square, e.g. Office-31, Office-Home, DomainNet.

  Not in the TFDS registry: it can only be made with its root, `ImageFolder(root=..., domain=...,
  image_size=..., data_dir=...)`. Resizing ignores the aspect ratio, as most DA code does.
  """

  name = 'image_folder'
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Images are read from the root given to the builder.'
  DESCRIPTION = 'Images from a <root>/<domain>/<class>/ folder, RGB, resized to a square.'

  def __init__(self, *, root: str, domain: str, image_size: int = 224, **kwargs):
    super().__init__(config=folder_config(root, domain, image_size), **kwargs)

  def _info(self):
    config = self.builder_config
    shape = (config.image_size, config.image_size, 3)
    return self.make_info(base.image_features(shape, class_names=config.class_names),
                          ('image', 'label'))

  def _split_generators(self, dl_manager):
    config = self.builder_config
    folder = class_folder(config.root, config.domain)
    files, labels = [], []
    for label, class_name in enumerate(config.class_names):
      class_dir = os.path.join(folder, class_name)
      names = sorted(n for n in os.listdir(class_dir) if n.lower().endswith(IMAGE_EXTENSIONS))
      files += [os.path.join(class_dir, n) for n in names]
      labels += [label] * len(names)
    if not files:
      raise UserError(f'image_folder: no {"/".join(IMAGE_EXTENSIONS)} files under {folder}')
    return {'train': self._generate_examples(files, np.array(labels, np.int64))}

  def _generate_examples(self, inputs, labels):
    size = self.builder_config.image_size
    for index, (path, label) in enumerate(zip(inputs, labels, strict=True)):
      yield index, {'image': load_rgb(self.name, path, size, resize=True), 'label': label}
