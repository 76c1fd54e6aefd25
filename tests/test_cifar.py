"""CIFAR-10/100 builders on tiny copies of the binary releases, written by the tests.

No real CIFAR copy exists on this machine, so nothing here reads one: the fixtures are written
byte for byte in the releases' binary format (label bytes, then 3072 channel-major pixel bytes
per record, under the official member names of the .tar.gz) and are the test. Random pixels make
any wrong reading of the channel-major layout change the images read back.
"""

import functools
import hashlib
import http.server
import io
import os
import socket
import tarfile
import threading
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from transfer_jax.data import builders
from transfer_jax.data.builders import base, cifar
from transfer_jax.errors import UserError

tfds.display_progress_bar(False)

SIZES = {'train': 30, 'test': 10}
NAMES = {'da_cifar10': {'label': list(cifar.CIFAR10_NAMES)},
         'da_cifar100': {'label': [f'fine_{i:02d}' for i in range(100)],
                         'coarse_label': [f'coarse_{i:02d}' for i in range(20)]}}
BUILDERS = {'cifar10': cifar.Cifar10, 'cifar100': cifar.Cifar100}


def release_files(builder, with_names=True, seed=0):
  """`builder`'s release as {file name: bytes}, and {split: (HWC images, {key: labels})}."""
  rng, files, expected = np.random.default_rng(seed), {}, {}
  for split, bin_files in builder.SPLIT_FILES.items():
    n = SIZES[split]
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = {label.key: rng.integers(0, label.num_classes, n) for label in builder.LABEL_BYTES}
    labels['label'][0] = builder.LABEL_BYTES[-1].num_classes - 1  # The top class reads back too.
    records = [bytes([labels[label.key][i] for label in builder.LABEL_BYTES])
               + images[i].transpose(2, 0, 1).tobytes() for i in range(n)]
    for chunk, file in zip(np.array_split(np.arange(n), len(bin_files)), bin_files, strict=True):
      files[file] = b''.join(records[i] for i in chunk)  # CIFAR-10 spreads train over 5 files.
    expected[split] = (images, labels)
  if with_names:
    for label in builder.LABEL_BYTES:  # One name a line; the releases end with blank lines.
      files[label.names_file] = ('\n'.join(NAMES[builder.name][label.key]) + '\n\n').encode()
  return files, expected


def write_archive(path, member_folder, files):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tarfile.open(path, 'w:gz') as tar:
    folder = tarfile.TarInfo(member_folder)
    folder.type = tarfile.DIRTYPE
    tar.addfile(folder)
    for file, data in files.items():
      member = tarfile.TarInfo(f'{member_folder}/{file}')
      member.size = len(data)
      tar.addfile(member, io.BytesIO(data))
  return path


def write_folder(folder, files):
  os.makedirs(folder, exist_ok=True)
  for file, data in files.items():
    with open(os.path.join(folder, file), 'wb') as f:
      f.write(data)
  return folder


def archive_path(manual_dir, builder):
  return os.path.join(manual_dir, builder.FOLDER, builder.ARCHIVE)


def assert_one_line_error(excinfo, *fragments):
  message = str(excinfo.value)
  assert '\n' not in message, message
  for fragment in fragments:
    assert fragment in message, message


def assert_reads_back(arrays, expected_split, name):
  images, labels = expected_split
  assert arrays['image'].dtype == np.uint8 and arrays['label'].dtype == np.int64
  assert arrays['image'].shape == images.shape, name
  np.testing.assert_array_equal(arrays['image'], images, err_msg=name)
  np.testing.assert_array_equal(arrays['label'], labels['label'], err_msg=name)


@pytest.fixture(scope='module')
def manual(tmp_path_factory):
  """A manual directory holding both archives, and what each should read back."""
  root, expected = str(tmp_path_factory.mktemp('manual')), {}
  for name, builder in BUILDERS.items():
    files, expected[name] = release_files(builder)
    write_archive(archive_path(root, builder), builder.MEMBER_FOLDER, files)
  return root, expected


# --- Builds from the archive, the extracted folder and a download. --------------------------------

@pytest.mark.parametrize('name', ['cifar10', 'cifar100'])
def test_builds_from_the_archive_exactly_with_its_class_names(manual, tmp_path, name):
  manual_dir, expected = manual
  assert builders.check_manual_files(name, manual_dir) == [
      archive_path(manual_dir, BUILDERS[name])]
  for split, size in SIZES.items():
    arrays = builders.load_split(name, split, str(tmp_path), manual_dir)
    assert len(arrays['label']) == size
    assert_reads_back(arrays, expected[name][split], f'{name}/{split}')
  builder = builders.make_builder(name, str(tmp_path))  # A fresh builder reads the stored names.
  assert builder.info.file_format.value == 'array_record'
  for key, names in NAMES[builder.name].items():
    assert builder.info.features[key].names == names, key
  if name == 'cifar100':  # load_split gives image and (fine) label; coarse_label is stored too.
    source = builder.as_data_source('train')
    coarse = [row['coarse_label'] for row in source.__getitems__(list(range(len(source))))]
    np.testing.assert_array_equal(coarse, expected[name]['train'][1]['coarse_label'])


def test_builds_from_the_extracted_folders_with_default_names(tmp_path):
  manual_dir = str(tmp_path / 'manual')
  for name, builder in BUILDERS.items():
    files, expected = release_files(builder, with_names=False, seed=1)
    write_folder(os.path.join(manual_dir, builder.FOLDER, builder.MEMBER_FOLDER), files)
    for split in SIZES:
      arrays = builders.load_split(name, split, str(tmp_path / 'tfds'), manual_dir)
      assert_reads_back(arrays, expected[split], f'{name}/{split}')
  cifar10 = builders.make_builder('cifar10', str(tmp_path / 'tfds'))
  assert cifar10.info.features['label'].names == list(cifar.CIFAR10_NAMES)
  cifar100 = builders.make_builder('cifar100', str(tmp_path / 'tfds'))
  assert cifar100.info.features['label'].names == [str(i) for i in range(100)]
  assert cifar100.info.features['coarse_label'].names == [str(i) for i in range(20)]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):
    pass


def test_downloads_and_checks_the_archive_when_absent(tmp_path, monkeypatch):
  files, expected = release_files(cifar.Cifar10, seed=2)
  served = write_archive(str(tmp_path / 'www' / cifar.Cifar10.ARCHIVE),
                         cifar.Cifar10.MEMBER_FOLDER, files)
  with open(served, 'rb') as f:
    sha256 = hashlib.file_digest(f, 'sha256').hexdigest()
  server = http.server.ThreadingHTTPServer(
      ('127.0.0.1', 0), functools.partial(QuietHandler, directory=str(tmp_path / 'www')))
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    url = f'http://127.0.0.1:{server.server_address[1]}/{cifar.Cifar10.ARCHIVE}'
    monkeypatch.setattr(cifar.Cifar10, 'URL', url)
    assert sha256 != cifar.Cifar10.SHA256  # The official checksum refuses the fixture archive.
    with pytest.raises(UserError) as excinfo:
      builders.load_split('cifar10', 'train', str(tmp_path / 'tfds'), None)
    assert_one_line_error(excinfo, f'has SHA-256 {sha256}, expected {cifar.Cifar10.SHA256}',
                          f'came from {url}', 'delete it')
    monkeypatch.setattr(cifar.Cifar10, 'SHA256', sha256)
    for split in SIZES:
      arrays = builders.load_split('cifar10', split, str(tmp_path / 'tfds'), None)
      assert_reads_back(arrays, expected[split], f'cifar10/{split}')
  finally:
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize('name', ['cifar10', 'cifar100'])
def test_download_fails_within_seconds_when_offline(tmp_path, monkeypatch, name):
  builder = BUILDERS[name]
  with socket.socket() as probe:  # A port nothing listens on: connecting is refused at once.
    probe.bind(('127.0.0.1', 0))
    closed_port = probe.getsockname()[1]
  monkeypatch.setattr(builder, 'URL', f'https://127.0.0.1:{closed_port}/{builder.ARCHIVE}')
  (tmp_path / 'manual').mkdir()
  start = time.monotonic()
  with pytest.raises(UserError) as excinfo:
    builders.load_split(name, 'train', str(tmp_path / 'tfds'), str(tmp_path / 'manual'))
  assert time.monotonic() - start < 5
  assert_one_line_error(excinfo, 'cannot reach 127.0.0.1', f'put {builder.ARCHIVE}',
                        f'the folder {builder.MEMBER_FOLDER}',
                        os.path.join(str(tmp_path / 'manual'), builder.FOLDER))
  assert base.CONNECT_TIMEOUT_S <= 3  # An unreachable host also fails within seconds.


# --- Damaged releases: one-line errors that name the file. ---------------------------------------

def build_error(tmp_path, name, files, as_archive=True):
  """The UserError of building `name` from a release made of `files`."""
  builder, manual_dir = BUILDERS[name], str(tmp_path / 'manual')
  if as_archive:
    write_archive(archive_path(manual_dir, builder), builder.MEMBER_FOLDER, files)
  else:
    write_folder(os.path.join(manual_dir, builder.FOLDER, builder.MEMBER_FOLDER), files)
  with pytest.raises(UserError) as excinfo:
    builders.load_split(name, 'train', str(tmp_path / 'tfds'), manual_dir)
  return excinfo


def test_a_file_of_the_wrong_size_names_the_file(tmp_path):
  files, _ = release_files(cifar.Cifar10)
  files['data_batch_3.bin'] += b'\0'
  excinfo = build_error(tmp_path, 'cifar10', files, as_archive=False)
  folder = os.path.join(str(tmp_path / 'manual'), 'cifar10', 'cifar-10-batches-bin')
  assert_one_line_error(excinfo, os.path.join(folder, 'data_batch_3.bin'), 'holds 18439 bytes',
                        'not a whole number of 3073-byte records')
  files['data_batch_3.bin'] = b''
  excinfo = build_error(tmp_path, 'cifar10', files, as_archive=False)
  assert_one_line_error(excinfo, 'data_batch_3.bin holds 0 bytes')


def test_damaged_archives_give_one_line_errors(tmp_path):
  files, _ = release_files(cifar.Cifar100)
  # CIFAR-10's record size (one label byte) in the CIFAR-100 archive: 10 x 3073 bytes.
  files['test.bin'] = files['test.bin'][:-10]
  archive = archive_path(str(tmp_path / 'manual'), cifar.Cifar100)
  assert_one_line_error(build_error(tmp_path, 'cifar100', files),
                        f'cifar-100-binary/test.bin in {archive} holds', '3074-byte records')
  files, _ = release_files(cifar.Cifar100)
  train = bytearray(files['train.bin'])
  train[3074 * 4 + 1] = 100  # The fine label of the fifth record.
  files['train.bin'] = bytes(train)
  assert_one_line_error(build_error(tmp_path, 'cifar100', files),
                        'label values in cifar-100-binary/train.bin', 'reach 100, expected 0..99')
  files, _ = release_files(cifar.Cifar100)
  files['coarse_label_names.txt'] = b'\n'.join(b'superclass' for _ in range(20))
  assert_one_line_error(build_error(tmp_path, 'cifar100', files),
                        'coarse_label_names.txt', 'lists 20 class names (1 distinct)',
                        'expected 20 distinct')
  files, _ = release_files(cifar.Cifar10)
  del files['test_batch.bin']
  assert_one_line_error(build_error(tmp_path, 'cifar10', files),
                        'lacks cifar-10-batches-bin/test_batch.bin', 'binary release')
  archive = archive_path(str(tmp_path / 'manual'), cifar.Cifar10)
  with open(archive, 'rb') as f:
    payload = f.read()
  with open(archive, 'wb') as f:  # An interrupted copy.
    f.write(payload[: len(payload) // 2])
  with pytest.raises(UserError) as excinfo:
    builders.load_split('cifar10', 'train', str(tmp_path / 'tfds'), str(tmp_path / 'manual'))
  assert_one_line_error(excinfo, f'cannot read the archive {archive}', 'is it complete?')
