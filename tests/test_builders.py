"""TensorFlow-free TFDS builders: tiny fixtures in the real file formats, then the real data.

The fixtures are written the way the releases are (HDF5 usps.h5, npz, MATLAB v5 via scipy,
MATLAB v7.3 via h5py with MATLAB's transposed layout, PNG/JPEG folders) and every builder is
built and read back from them. The real-data tests read ../shared/datasets (or
$TRANSFER_JAX_DATA_DIR) and are skipped, with the reason, where it is absent.
"""

import functools
import gzip
import http.server
import os
import re
import socket
import threading
import time

import h5py
import numpy as np
import PIL.Image
import pytest
import scipy.io
import scipy.sparse
import tensorflow_datasets as tfds

from transfer_jax.data import builders
from transfer_jax.data.builders import digits, features, images
from transfer_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_DATA = (os.environ.get('TRANSFER_JAX_DATA_DIR')
             or os.path.join(ROOT, '..', 'shared', 'datasets'))

tfds.display_progress_bar(False)


def digit_images(n: int, size: int, channels: int = 1) -> np.ndarray:
  """uint8 images whose bright row is `i % size`: a transposed or flipped read changes them."""
  rng = np.random.default_rng(n * size)
  out = rng.integers(0, 60, (n, size, size, channels), dtype=np.uint8)
  for i in range(n):
    out[i, i % size, : size // 2] = 255
  return out


# --- Fixture writers: each writes one dataset's raw files in its release's format. ---------------

def write_usps(manual, sizes=(('train', 12), ('test', 5)), label_offset=0):
  os.makedirs(os.path.join(manual, 'usps'), exist_ok=True)
  expected = {}
  with h5py.File(os.path.join(manual, 'usps', 'usps.h5'), 'w') as f:
    for split, n in sizes:
      pixels, labels = digit_images(n, 16), np.arange(n) % 10 + label_offset
      f.create_dataset(f'{split}/data', data=(pixels.reshape(n, 256) / 255.0).astype(np.float32))
      f.create_dataset(f'{split}/target', data=labels.astype(np.int32))
      expected[split] = (pixels, labels)
  return expected


def write_mnist(manual):
  os.makedirs(os.path.join(manual, 'mnist'), exist_ok=True)
  expected = {'train': (digit_images(9, 28), np.arange(9) % 10),
              'test': (digit_images(4, 28), np.arange(4)[::-1] % 10)}
  arrays = {}
  for split, (pixels, labels) in expected.items():
    arrays[f'x_{split}'], arrays[f'y_{split}'] = pixels[..., 0], labels.astype(np.uint8)
  np.savez(os.path.join(manual, 'mnist', 'mnist.npz'), **arrays)
  return expected


def write_jda(manual, v73=True):
  """MNIST_vs_USPS.mat: MATLAB holds Xs as 256 x N (one image per column), Ys as N x 1, 1..10."""
  os.makedirs(os.path.join(manual, 'mnist_usps_jda'), exist_ok=True)
  expected = {'mnist': (digit_images(6, 16), np.arange(6) % 10),
              'usps': (digit_images(4, 16), (np.arange(4) + 3) % 10)}
  matlab = {}
  for (x, y), (pixels, labels) in zip((('Xs', 'Ys'), ('Xt', 'Yt')), expected.values(),
                                      strict=True):
    matlab[x] = pixels.reshape(len(pixels), 256).T / 255.0  # (256, N) as MATLAB sees it.
    matlab[y] = (labels + 1.0)[:, None]  # (N, 1) as MATLAB sees it.
  path = os.path.join(manual, 'mnist_usps_jda', 'MNIST_vs_USPS.mat')
  if v73:  # HDF5 stores MATLAB's column-major arrays with the dimensions reversed.
    with h5py.File(path, 'w', userblock_size=512) as f:
      for key, value in matlab.items():
        f.create_dataset(key, data=value.T).attrs['MATLAB_class'] = np.bytes_('double')
  else:
    scipy.io.savemat(path, matlab)
  return expected


def write_office(manual, domain, n=7, dim=800):
  os.makedirs(os.path.join(manual, 'office_caltech10_surf'), exist_ok=True)
  rng = np.random.default_rng(n)
  fts, labels = rng.integers(0, 40, (n, dim), dtype=np.uint8), np.arange(n) % 10
  scipy.io.savemat(os.path.join(manual, 'office_caltech10_surf', f'{domain}_SURF_L10.mat'),
                   {'fts': fts, 'labels': (labels + 1)[:, None].astype(np.uint8)})
  return fts.astype(np.float32), labels


def write_amazon(manual, domain, sizes=(('train', 6), ('test', 5)), values=(-1.0, 1.0)):
  os.makedirs(os.path.join(manual, 'amazon_reviews'), exist_ok=True)
  rng, expected = np.random.default_rng(0), {}
  for split, n in sizes:
    counts = (rng.random((n, 5000)) < 0.01) * rng.integers(1, 4, (n, 5000))
    labels = np.array(values)[np.arange(n) % 2]
    data = scipy.sparse.csc_matrix(counts.astype(np.float64)) if split == 'test' else counts * 1.0
    scipy.io.savemat(os.path.join(manual, 'amazon_reviews', f'{domain}_{split}.mat'),
                     {'data': data, 'labels': labels[None, :]})
    expected[split] = (counts.astype(np.float32), np.arange(n) % 2)
  return expected


def write_mnist_m(manual, sizes=(('train', 5), ('test', 3)), image_size=32):
  expected = {}
  for split, n in sizes:
    folder = os.path.join(manual, 'mnist_m', f'mnist_m_{split}')
    os.makedirs(folder, exist_ok=True)
    pixels, labels, lines = digit_images(n, image_size, 3), (np.arange(n) * 3) % 10, []
    for i in range(n):
      PIL.Image.fromarray(pixels[i]).save(os.path.join(folder, f'{i:08d}.png'))
      lines.append(f'{i:08d}.png {labels[i]}\n')
    with open(os.path.join(manual, 'mnist_m', f'mnist_m_{split}_labels.txt'), 'w') as f:
      f.writelines(lines)
    expected[split] = (pixels, labels)
  return expected


def write_image_folder(root, domains, nested=(), classes=('owl', 'cat', 'dog')):
  """`root/domain/class/*.png|jpg` of assorted sizes; `nested` domains use Office-31's images/."""
  rng = np.random.default_rng(1)
  for d, domain in enumerate(domains):
    base = os.path.join(root, domain, *(['images'] if domain in nested else []))
    for c, name in enumerate(classes):
      os.makedirs(os.path.join(base, name), exist_ok=True)
      for i in range(c + d + 1):
        size = tuple(int(s) for s in rng.integers(20, 60, 2))
        image = PIL.Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8))
        image.save(os.path.join(base, name, f'{i}.{"jpg" if i % 2 else "png"}'))
  return root


@pytest.fixture(scope='module')
def manual(tmp_path_factory):
  """A manual directory holding a tiny copy of every dataset, and what each should read back."""
  root = str(tmp_path_factory.mktemp('manual'))
  expected = {'usps': write_usps(root), 'mnist': write_mnist(root), 'jda': write_jda(root),
              'amazon_reviews/books': write_amazon(root, 'books'), 'mnist_m': write_mnist_m(root)}
  for domain in ('dslr', 'webcam'):
    expected[f'office_caltech10_surf/{domain}'] = write_office(root, domain, n=5 + len(domain))
  write_image_folder(os.path.join(root, 'office31'), ('amazon', 'dslr', 'webcam'), nested=('dslr',))
  return root, expected


def assert_one_line_error(excinfo, *fragments):
  message = str(excinfo.value)
  assert '\n' not in message, message
  for fragment in fragments:
    assert fragment in message, message


# --- Every builder on tiny fixtures. --------------------------------------------------------------

@pytest.mark.parametrize('name, key', [('usps', 'usps'), ('mnist', 'mnist'),
                                       ('jda_mnist_usps', 'jda'), ('mnist_m', 'mnist_m')])
def test_image_builders_read_back_the_fixture_exactly(manual, tmp_path, name, key):
  manual_dir, expected = manual
  for split, (pixels, labels) in expected[key].items():
    arrays = builders.load_split(name, split, str(tmp_path), manual_dir)
    assert arrays['image'].dtype == np.uint8 and arrays['label'].dtype == np.int64
    assert arrays['image'].shape == pixels.shape, split
    # Exact equality also pins the orientation: a transposed read moves each bright row.
    np.testing.assert_array_equal(arrays['image'], pixels, err_msg=f'{name}/{split}')
    np.testing.assert_array_equal(arrays['label'], labels, err_msg=f'{name}/{split}')


def test_jda_reads_a_matlab_v5_copy_like_the_v73_release(tmp_path):
  expected = write_jda(str(tmp_path / 'manual'), v73=False)
  for split, (pixels, labels) in expected.items():
    arrays = builders.load_split('jda_mnist_usps', split, str(tmp_path / 'tfds'),
                                 str(tmp_path / 'manual'))
    np.testing.assert_array_equal(arrays['image'], pixels)
    np.testing.assert_array_equal(arrays['label'], labels)


@pytest.mark.parametrize('name', ['office_caltech10_surf/dslr', 'office_caltech10_surf/webcam'])
def test_office_caltech_builder_reads_features_and_zero_based_labels(manual, tmp_path, name):
  manual_dir, expected = manual
  arrays = builders.load_split(name, 'train', str(tmp_path), manual_dir)
  assert arrays['features'].dtype == np.float32 and arrays['features'].shape[1] == 800
  np.testing.assert_array_equal(arrays['features'], expected[name][0])
  np.testing.assert_array_equal(arrays['label'], expected[name][1])


def test_amazon_builder_reads_dense_and_sparse_mat_files(manual, tmp_path):
  manual_dir, expected = manual
  for split, (counts, labels) in expected['amazon_reviews/books'].items():
    arrays = builders.load_split('amazon_reviews/books', split, str(tmp_path), manual_dir)
    assert arrays['features'].dtype == np.float32 and arrays['features'].shape == counts.shape
    np.testing.assert_array_equal(arrays['features'], counts)
    np.testing.assert_array_equal(arrays['label'], labels)  # -1/+1 -> 0/1.


def test_image_folder_resizes_sorts_classes_and_shares_them_across_domains(manual, tmp_path):
  manual_dir, _ = manual
  counts = {}
  for domain in ('amazon', 'dslr'):  # dslr nests its classes in images/, as Office-31 does.
    arrays = builders.load_split(f'office31/{domain}', 'train', str(tmp_path), manual_dir,
                                 image_size=32)
    assert arrays['image'].shape[1:] == (32, 32, 3) and arrays['image'].dtype == np.uint8
    counts[domain] = np.bincount(arrays['label']).tolist()
  # Classes sorted: cat, dog, owl hold 2, 3, 1 images in amazon; one more each in dslr.
  assert counts == {'amazon': [2, 3, 1], 'dslr': [3, 4, 2]}
  builder = builders.make_builder('office31/dslr', str(tmp_path), manual_dir, image_size=32)
  assert builder.info.features['label'].names == ['cat', 'dog', 'owl']
  assert re.fullmatch(r'office31_[0-9a-f]{8}_dslr_[0-9a-f]{8}_32px', builder.builder_config.name)



def test_builder_from_a_folder_anywhere_and_class_mismatch(tmp_path):
  root = write_image_folder(str(tmp_path / 'home'), domains=('Real World', 'Art'))
  builder = images.ImageFolder(root=root, domain='Real World', image_size=16,
                               data_dir=str(tmp_path / 'tfds'))
  builder.download_and_prepare()
  arrays = builders.read_split(builder, 'train')
  assert arrays['image'].shape == (1 + 2 + 3, 16, 16, 3)
  os.makedirs(os.path.join(root, 'Art', 'zebra'))
  with pytest.raises(UserError) as excinfo:
    images.ImageFolder(root=root, domain='Real World', image_size=16, data_dir=str(tmp_path))
  assert_one_line_error(excinfo, "only in Art: ['zebra']", 'same classes')
  with pytest.raises(UserError) as excinfo:
    images.ImageFolder(root=root, domain='Clipart', data_dir=str(tmp_path))
  assert_one_line_error(excinfo, "no domain 'Clipart'", "['Art', 'Real World']")


@pytest.mark.slow
def test_package_datasets_need_no_manual_files(tmp_path):
  optdigits = builders.load_split('optdigits', 'train', str(tmp_path))
  assert optdigits['image'].shape == (1797, 8, 8, 1) and optdigits['image'].max() == 255
  assert set(np.unique(optdigits['label'])) == set(range(10))
  mnist5000 = builders.load_split('mnist5000', 'train', str(tmp_path))
  assert mnist5000['image'].shape == (5000, 28, 28, 1)
  assert np.bincount(mnist5000['label']).tolist() == [500] * 10


def test_builders_write_array_record_and_register_with_tfds(manual, tmp_path):
  manual_dir, _ = manual
  builder = digits.Usps(data_dir=str(tmp_path))  # No file_format given.
  builders.prepare(builder, manual_dir)
  assert builder.info.file_format.value == 'array_record'
  assert len(tfds.data_source('usps', split='test', data_dir=str(tmp_path))) == 5
  with pytest.raises(UserError, match="only file_format='array_record'"):
    digits.Usps(data_dir=str(tmp_path), file_format='tfrecord')


# --- One-line errors that say what to do. --------------------------------------------------------

def test_unknown_names_and_splits(tmp_path):
  with pytest.raises(UserError) as excinfo:
    builders.load_split('svhn', 'train', str(tmp_path), str(tmp_path))
  assert_one_line_error(excinfo, "unknown dataset 'svhn'", "'usps'", "'office31/amazon'")
  with pytest.raises(UserError) as excinfo:
    builders.load_split('jda_mnist_usps', 'train', str(tmp_path), str(tmp_path))
  assert_one_line_error(excinfo, "no split 'train'", "['mnist', 'usps']")
  with pytest.raises(UserError, match='image folders only'):
    builders.make_builder('usps', str(tmp_path), image_size=32)


def test_missing_manual_dir_and_files_name_what_to_put_where(tmp_path):
  with pytest.raises(UserError) as excinfo:
    builders.load_split('usps', 'train', str(tmp_path / 'tfds'), None)
  assert_one_line_error(excinfo, 'pass manual_dir')
  with pytest.raises(UserError) as excinfo:
    builders.load_split('usps', 'train', str(tmp_path / 'tfds'), str(tmp_path / 'nowhere'))
  assert_one_line_error(excinfo, 'nowhere does not exist')
  (tmp_path / 'manual').mkdir()
  for name, file, folder in [('usps', 'usps.h5', 'usps'),
                             ('amazon_reviews/dvd', 'dvd_train.mat', 'amazon_reviews'),
                             ('office31/webcam', 'webcam', 'office31')]:
    with pytest.raises(UserError) as excinfo:
      builders.load_split(name, 'train', str(tmp_path / 'tfds'), str(tmp_path / 'manual'))
    assert_one_line_error(excinfo, f"missing {'the folder ' if '31' in name else ''}'{file}'",
                          os.path.join(str(tmp_path / 'manual'), folder))
  # The builders themselves fail the same way, not with TFDS's multi-line manual-dir message.
  office = features.OfficeCaltech10Surf(config='amazon', data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(UserError) as excinfo:
    office.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / 'manual')))
  assert_one_line_error(excinfo, "missing 'amazon_SURF_L10.mat'")


def test_bad_labels_and_shapes_in_raw_files(tmp_path):
  manual_dir, data_dir = str(tmp_path / 'manual'), str(tmp_path / 'tfds')
  write_usps(manual_dir, label_offset=1)  # Labels 1..10 where 0..9 are expected.
  with pytest.raises(UserError) as excinfo:
    builders.load_split('usps', 'train', data_dir, manual_dir)
  assert_one_line_error(excinfo, 'span 1..10', 'expected 0..9')
  write_usps(manual_dir)
  with h5py.File(os.path.join(manual_dir, 'usps', 'usps.h5'), 'r+') as f:
    f['test/data'][0, 0] = -1.0  # A [-1, 1] copy of USPS.
  with pytest.raises(UserError) as excinfo:
    builders.load_split('usps', 'test', str(tmp_path / 'tfds2'), manual_dir)
  assert_one_line_error(excinfo, 'pixel values', 'span -1..1, expected 0..1')
  write_office(manual_dir, 'caltech', dim=799)
  with pytest.raises(UserError) as excinfo:
    builders.load_split('office_caltech10_surf/caltech', 'train', data_dir, manual_dir)
  assert_one_line_error(excinfo, 'fts', 'shape (7, 799), expected (N, 800)')
  write_amazon(manual_dir, 'kitchen', values=(0.0, 2.0))
  with pytest.raises(UserError) as excinfo:
    builders.load_split('amazon_reviews/kitchen', 'train', data_dir, manual_dir)
  assert_one_line_error(excinfo, 'take the values [0.0, 2.0]')
  write_mnist_m(manual_dir, sizes=(('train', 2), ('test', 2)), image_size=28)
  with pytest.raises(UserError) as excinfo:
    builders.load_split('mnist_m', 'train', data_dir, manual_dir)
  assert_one_line_error(excinfo, 'is 28x28, expected 32x32')
  with open(os.path.join(manual_dir, 'mnist_m', 'mnist_m_train_labels.txt'), 'a') as f:
    f.write('00000009.png seven\n')
  with pytest.raises(UserError) as excinfo:
    builders.load_split('mnist_m', 'train', data_dir, manual_dir)
  assert_one_line_error(excinfo, 'line 3 of', "expected '<file name> <digit>'")


# --- MNIST's download path, against localhost only. ----------------------------------------------

def write_idx(path, array):
  header = (0x0800 | array.ndim).to_bytes(4, 'big')
  header += b''.join(int(d).to_bytes(4, 'big') for d in array.shape)
  with gzip.open(path, 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_downloads_idx_files_when_mnist_npz_is_absent(tmp_path, monkeypatch):
  served = {'train': (digit_images(7, 28), np.arange(7) % 10),
            'test': (digit_images(3, 28), np.arange(3) % 10)}
  for split, (pixels, labels) in served.items():
    image_file, label_file = digits.MNIST_IDX_FILES[split]
    write_idx(str(tmp_path / image_file), pixels[..., 0])
    write_idx(str(tmp_path / label_file), labels)

  class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
      pass

  server = http.server.ThreadingHTTPServer(
      ('127.0.0.1', 0), functools.partial(QuietHandler, directory=str(tmp_path)))
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    monkeypatch.setattr(digits, 'MNIST_URL', f'http://127.0.0.1:{server.server_address[1]}/')
    for split, (pixels, labels) in served.items():
      arrays = builders.load_split('mnist', split, str(tmp_path / 'tfds'), None)
      np.testing.assert_array_equal(arrays['image'], pixels)
      np.testing.assert_array_equal(arrays['label'], labels)
  finally:
    server.shutdown()
    server.server_close()


def test_mnist_download_fails_within_seconds_when_offline(tmp_path, monkeypatch):
  with socket.socket() as probe:  # A port nothing listens on: connecting is refused at once.
    probe.bind(('127.0.0.1', 0))
    closed_port = probe.getsockname()[1]
  monkeypatch.setattr(digits, 'MNIST_URL', f'https://127.0.0.1:{closed_port}/mnist/')
  (tmp_path / 'manual').mkdir()
  start = time.monotonic()
  with pytest.raises(UserError) as excinfo:
    builders.load_split('mnist', 'train', str(tmp_path / 'tfds'), str(tmp_path / 'manual'))
  assert time.monotonic() - start < 5
  assert_one_line_error(excinfo, 'cannot reach 127.0.0.1', 'put mnist.npz in ' +
                        os.path.join(str(tmp_path / 'manual'), 'mnist'))
  assert digits.base.CONNECT_TIMEOUT_S <= 3  # An unreachable host also fails within seconds.


# --- The real data in ../shared/datasets. --------------------------------------------------------

REAL_SPLITS = [
    ('usps', 'train', 7291), ('usps', 'test', 2007),
    ('mnist', 'train', 60000), ('mnist', 'test', 10000),
    ('jda_mnist_usps', 'mnist', 2000), ('jda_mnist_usps', 'usps', 1800),
    *[(f'office_caltech10_surf/{d}', 'train', n)
      for d, n in zip(features.OFFICE_DOMAINS, (958, 1123, 157, 295), strict=True)],
    *[(f'amazon_reviews/{d}', 'train', 2000) for d in features.AMAZON_DOMAINS],
    ('amazon_reviews/books', 'test', 4465), ('amazon_reviews/dvd', 'test', 3586),
    ('amazon_reviews/electronics', 'test', 5681), ('amazon_reviews/kitchen', 'test', 5945),
]


@pytest.fixture(scope='session')
def real_tfds(tmp_path_factory):
  """Loads real splits once per session, preparing each dataset under one temporary data dir."""
  data_dir = str(tmp_path_factory.mktemp('real_tfds'))

  @functools.cache
  def load(name: str, split: str) -> dict[str, np.ndarray]:
    try:
      builders.check_manual_files(name, REAL_DATA)
    except UserError as e:
      pytest.skip(f'real data absent: {e}')
    if name == 'mnist' and not builders.check_manual_files(name, REAL_DATA):
      pytest.skip(f'real data absent: no mnist/mnist.npz in {REAL_DATA}')
    return builders.load_split(name, split, data_dir, REAL_DATA)

  return load


@pytest.mark.parametrize('name, split, size', REAL_SPLITS)
def test_real_split_sizes_and_labels(real_tfds, name, split, size):
  arrays = real_tfds(name, split)
  num_classes = 2 if name.startswith('amazon') else 10
  assert len(arrays['label']) == size
  assert set(np.unique(arrays['label']).tolist()) == set(range(num_classes))
  if 'image' in arrays:
    assert arrays['image'].dtype == np.uint8 and arrays['image'].shape[0] == size
  else:
    dim = 5000 if name.startswith('amazon') else 800
    assert arrays['features'].shape == (size, dim) and arrays['features'].dtype == np.float32
  if name.startswith('amazon') and split == 'train':
    assert np.bincount(arrays['label']).tolist() == [1000, 1000]


def test_real_jda_images_are_upright_and_match_their_labels(real_tfds):
  """1-NN on USPS (usps.h5) labels the JDA USPS digits: only an upright, k-1 reading scores."""
  from sklearn.neighbors import KNeighborsClassifier

  usps, jda = real_tfds('usps', 'train'), real_tfds('jda_mnist_usps', 'usps')
  flat = lambda images: images.reshape(len(images), -1).astype(np.float32)
  knn = KNeighborsClassifier(n_neighbors=1).fit(flat(usps['image']), usps['label'])
  upright = (knn.predict(flat(jda['image'])) == jda['label']).mean()
  transposed = (knn.predict(flat(jda['image'].transpose(0, 2, 1, 3))) == jda['label']).mean()
  assert upright > 0.95 and transposed < 0.5, (upright, transposed)
