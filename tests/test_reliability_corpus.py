"""A corpus of bad inputs: each one must end in one line that names the field or file and says
what to do, with a non-zero exit status, no traceback, and the workdir left as it was.

The cases run in this process through `transfer_jax.main.main(argv)` (no JAX start-up per case);
a few run as real subprocesses to see what a user's terminal shows. Each failure message starts
with the outcome class: `outcome=traceback`, `outcome=silently-wrong` (exit 0 on a bad input),
`outcome=corrupted` (the workdir was changed) or `outcome=unclear` (no one-line error naming the
field or file).
"""

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable

import numpy as np
import pytest

from conftest import ROOT, TFDS_DIR
from transfer_jax import main as main_lib

DIGITS = os.path.join(ROOT, 'configs', 'digits.py')
FINETUNE = os.path.join(ROOT, 'configs', 'usps_finetune.py')


@dataclasses.dataclass
class Case:
  """A bad input: argv after the common ones, what the one line must contain, and a setup that
  writes the files it needs (it gets the case's folder and returns extra argv)."""
  name: str
  args: tuple[str, ...] = ()
  expect: tuple[str, ...] = ()
  setup: Callable[[str], list[str]] | None = None
  spec: str = DIGITS + ':tiny'
  status: int = 2


def _npz(x=None, y=None, **extra):
  """A setup writing an npz domain used as source and target (labels of both must be checked)."""
  def setup(folder):
    path = os.path.join(folder, 'domain.npz')
    rng = np.random.default_rng(0)
    arrays = {'x_train': rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8) if x is None else x,
              'y_train': np.arange(40) % 10 if y is None else y, **extra}
    np.savez(path, **arrays)
    return [f'--config.data.source.name=npz:{path}', f'--config.data.target.name=npz:{path}',
            '--config.data.target.box_size=0']
  return setup


def _raw_file(name, content):
  """A setup writing `content` as the file `name` (relative to the case folder)."""
  def setup(folder):
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
      f.write(content)
    return []
  return setup


def _target_npz_file(content):
  def setup(folder):
    path = os.path.join(folder, 'bad.npz')
    with open(path, 'wb') as f:
      f.write(content)
    return [f'--config.data.target.name=npz:{path}', '--config.data.target.box_size=0']
  return setup


def _truncated_npz(folder):
  path = os.path.join(folder, 'cut.npz')
  np.savez(path, x_train=np.zeros((40, 28, 28, 1), np.uint8), y_train=np.arange(40) % 10)
  with open(path, 'rb') as f:
    content = f.read()
  with open(path, 'wb') as f:
    f.write(content[:len(content) // 2])
  return [f'--config.data.target.name=npz:{path}', '--config.data.target.box_size=0']


def _config_file(text):
  def setup(folder):
    path = os.path.join(folder, 'my_config.py')
    with open(path, 'w') as f:
      f.write(text)
    return [f'--config={path}']
  return setup


def _saved_config(text):
  def setup(folder):
    path = os.path.join(folder, 'saved', 'config.json')
    os.makedirs(os.path.dirname(path))
    with open(path, 'w') as f:
      f.write(text)
    return [f'--config={path}']
  return setup


def _workdir_is_a_file(folder):
  path = os.path.join(folder, 'workdir')
  with open(path, 'w') as f:
    f.write('not a folder')
  return []


def _workdir_with_other_config(folder):
  path = os.path.join(folder, 'workdir')
  os.makedirs(path)
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump({'seed': 3, 'total_steps': 6}, f)
  return []


def _folder_domain(layout):
  """A setup writing an image folder ROOT/site/CLASS/FILE from {relative path: bytes}."""
  def setup(folder):
    root = os.path.join(folder, 'images')
    os.makedirs(os.path.join(root, 'site'), exist_ok=True)
    for relative, content in layout.items():
      path = os.path.join(root, 'site', relative)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, 'wb') as f:
        f.write(content)
    return [f'--config.data.target.name=folder:{root}/site', '--config.data.target.box_size=0']
  return setup


def _missing_manual(name):
  def setup(folder):
    os.makedirs(os.path.join(folder, 'manual'), exist_ok=True)
    return [f'--config.data.source.name={name}', f'--config.data.target.name={name}',
            f'--config.data.manual_dir={folder}/manual', f'--config.data.data_dir={folder}/tfds',
            '--config.data.target.box_size=0']
  return setup


def _corrupt_manual(name, relative, content=b'\x00garbage' * 64):
  def setup(folder):
    _raw_file(os.path.join('manual', relative), content)(folder)
    return _missing_manual(name)(folder)
  return setup


def _pretrained_run(folder):
  path = os.path.join(folder, 'pretrained')
  os.makedirs(path)
  return [f'--config.init_from.path={path}']


CASES = [
    # Command line and config files.
    Case('missing_config_file', expect=('nope.py', 'configs/digits.py'),
         spec=os.path.join(ROOT, 'configs', 'nope.py')),
    Case('config_syntax_error', expect=('my_config.py', 'line 2'),
         setup=_config_file('def get_config(arg=None):\n  return (\n')),
    Case('config_import_error', expect=('my_config.py', 'no_such_module'),
         setup=_config_file('import no_such_module\n')),
    Case('config_returns_none', expect=('my_config.py', 'ConfigDict'),
         setup=_config_file('def get_config(arg=None):\n  return None\n')),
    Case('config_raises', expect=('my_config.py', 'KeyError'),
         setup=_config_file('def get_config(arg=None):\n  return {}["x"]\n')),
    Case('config_without_get_config', expect=('my_config.py', 'get_config'),
         setup=_config_file('X = 1\n')),
    Case('unknown_config_argument', expect=('tinyy', 'valid ones'), spec=DIGITS + ':tinyy'),
    Case('bad_config_argument_value', expect=('tiny', 'bool'), spec=DIGITS + ':tiny=maybe'),
    Case('unknown_override', ('--config.optimizer.learnin_rate=0.1',),
         ('optimizer.learnin_rate', 'did you mean')),
    Case('override_not_an_int', ('--config.total_steps=abc',), ('total_steps', 'int')),
    Case('override_without_value', ('--config.total_steps',), ('total_steps', 'KEY=VALUE')),
    Case('unexpected_argument', ('--workdirr=/tmp/x',), ('--workdirr', 'usage')),
    Case('saved_config_not_json', expect=('config.json', 'JSON'), setup=_saved_config('{"seed":')),
    Case('saved_config_empty', expect=('config.json', 'JSON'), setup=_saved_config('')),
    Case('saved_config_a_list', expect=('config.json', 'JSON object'), setup=_saved_config('[1]')),
    # Ranges and names of config fields.
    Case('total_steps_zero', ('--config.total_steps=0',), ('config.total_steps', '>= 1')),
    Case('total_steps_negative', ('--config.total_steps=-5',), ('config.total_steps',)),
    Case('batch_size_zero', ('--config.batch_size=0',), ('config.batch_size',)),
    Case('batch_size_negative', ('--config.batch_size=-16',), ('config.batch_size',)),
    Case('batch_size_not_divisible', ('--config.batch_size=12',), ('config.batch_size=12',)),
    Case('eval_batch_size_zero', ('--config.eval_batch_size=0',), ('config.eval_batch_size',)),
    Case('log_every_zero', ('--config.log_every_steps=0',), ('config.log_every_steps',)),
    Case('eval_every_zero', ('--config.eval_every_steps=0',), ('config.eval_every_steps',)),
    Case('checkpoint_every_zero', ('--config.checkpoint_every_steps=0',),
         ('config.checkpoint_every_steps',)),
    Case('keep_checkpoints_zero', ('--config.keep_checkpoints=0',), ('config.keep_checkpoints',)),
    Case('num_devices_negative', ('--config.num_devices=-1',), ('config.num_devices',)),
    Case('num_devices_too_many', ('--config.num_devices=1000',), ('config.num_devices=1000',)),
    Case('learning_rate_negative', ('--config.optimizer.learning_rate=-0.1',),
         ('config.optimizer.learning_rate',)),
    Case('learning_rate_nan', ('--config.optimizer.learning_rate=nan',),
         ('config.optimizer.learning_rate',)),
    Case('momentum_too_large', ('--config.optimizer.momentum=1.5',),
         ('config.optimizer.momentum',)),
    Case('weight_decay_negative', ('--config.optimizer.weight_decay=-1.0',),
         ('config.optimizer.weight_decay',)),
    Case('unknown_optimizer', ('--config.optimizer.name=sgdd',), ('config.optimizer.name',)),
    Case('unknown_lr_schedule', ('--config.optimizer.schedule=cosin',),
         ('config.optimizer.schedule',)),
    Case('unknown_method', ('--config.method.name=danm',), ('config.method.name',)),
    Case('unknown_trade_off_schedule', ('--config.method.trade_off_schedule=linearr',),
         ('config.method.trade_off_schedule',)),
    Case('unknown_grl_schedule', ('--config.method.grl_schedule=foo',),
         ('config.method.grl_schedule',)),
    Case('unknown_target_weight_schedule', ('--config.objective.target_weight_schedule=foo',),
         ('config.objective.target_weight_schedule',)),
    Case('trade_off_nan', ('--config.method.trade_off=nan',), ('config.method.trade_off',)),
    Case('unknown_regularizer', ('--config.regularizer.name=l3',), ('config.regularizer.name',)),
    Case('unknown_backbone', ('--config.model.backbone=resnet9000',), ('config.model.backbone',)),
    Case('unknown_batch_norm_mode', ('--config.model.batch_norm=bogus',),
         ('config.model.batch_norm',)),
    Case('adabn_without_batch_norm', ('--config.model.batch_norm=adabn',),
         ('config.model.batch_norm', 'no BatchNorm')),
    Case('unknown_normalize', ('--config.data.normalize=zscore',), ('config.data.normalize',)),
    Case('channels_two', ('--config.data.channels=2',), ('config.data.channels',)),
    Case('image_size_negative', ('--config.data.image_size=-1',), ('config.data.image_size',)),
    Case('test_fraction_above_one', ('--config.data.test_fraction=1.5',),
         ('config.data.test_fraction',)),
    Case('val_fraction_one', ('--config.data.source.val_fraction=1.0',),
         ('config.data.source.val_fraction',)),
    Case('labeled_per_class_below_minus_one', ('--config.data.target.labeled_per_class=-2',),
         ('config.data.target.labeled_per_class',)),
    Case('empty_source_name', ('--config.data.source.name=',), ('config.data.source.name',)),
    Case('unknown_dataset', ('--config.data.target.name=nosuchdata',), ('nosuchdata',)),
    Case('eval_split_typo', ("--config.eval_splits=('target/tset',)",), ('target/tset',)),
    Case('best_metric_typo', ('--config.best_checkpoint_metric=source/val/acc',),
         ('config.best_checkpoint_metric',)),
    Case('freeze_regex_invalid', ('--config.optimizer.freeze=(',), ('config.optimizer.freeze',)),
    Case('load_regex_invalid', ('--config.init_from.load=[',), ('config.init_from.load',)),
    Case('unfreeze_malformed', ("--config.optimizer.unfreeze=('backbone/.*',)",),
         ('config.optimizer.unfreeze',)),
    Case('lr_multipliers_malformed',
         ("--config.optimizer.lr_multipliers=(('backbone/.*', -1.0),)",),
         ('config.optimizer.lr_multipliers',)),
    Case('init_from_missing_path', ('--config.init_from.path=/nonexistent/run',),
         ('/nonexistent/run',)),
    Case('shot_without_init_from', expect=('config.init_from.path',),
         spec=DIGITS + ':tiny,method=shot'),
    Case('scratch_with_init_from', expect=('config.init_from.path', 'scratch'),
         spec=FINETUNE + ':tiny,recipe=scratch', setup=_pretrained_run),
    Case('selection_without_val', ('--config.selection=True',),
         ('config.data.source.val_fraction',)),
    # Workdirs.
    Case('workdir_is_a_file', expect=('workdir', 'not a folder'), setup=_workdir_is_a_file),
    Case('workdir_not_creatable', ('--workdir=/proc/version/run',), ('/proc/version/run',)),
    Case('workdir_with_other_config', expect=('another config', 'new --workdir'),
         setup=_workdir_with_other_config),
    # Data files.
    Case('npz_missing', ('--config.data.target.name=npz:/nonexistent.npz',),
         ('/nonexistent.npz',)),
    Case('npz_x_test_without_y_test', expect=('domain.npz', 'y_test'),
         setup=_npz(x_test=np.zeros((3, 28, 28, 1), np.uint8))),
    Case('npz_without_x_train', expect=('bad.npz', 'x_train'),
         setup=lambda f: (np.savez(f'{f}/bad.npz', images=np.zeros(3)),
                          [f'--config.data.target.name=npz:{f}/bad.npz'])[1]),
    Case('npz_random_bytes', expect=('bad.npz',), setup=_target_npz_file(b'\x00\x01garbage' * 50)),
    Case('npz_truncated', expect=('cut.npz',), setup=_truncated_npz),
    Case('npz_empty_file', expect=('bad.npz',), setup=_target_npz_file(b'')),
    Case('npz_zero_examples', expect=('domain.npz', 'no examples'),
         setup=_npz(x=np.zeros((0, 28, 28, 1), np.uint8), y=np.zeros((0,), np.int64))),
    Case('npz_pickled_objects', expect=('domain.npz', 'pickle'),
         setup=_npz(y=np.array([{'a': 1}] * 40, dtype=object))),
    Case('npz_fractional_labels', expect=('domain.npz', 'integer'),
         setup=_npz(y=np.arange(40) % 10 + 0.5)),
    Case('npz_float_labels_truncated', expect=('domain.npz', 'integer'),
         setup=_npz(y=(np.arange(40) % 10) * 1.0 + 0.3)),
    Case('npz_one_based_labels', expect=('domain.npz', 'subtract 1'),
         setup=_npz(y=np.arange(40) % 10 + 1)),
    Case('npz_negative_labels', expect=('domain.npz', 'labels'),
         setup=_npz(y=np.arange(40) % 10 - 1)),
    Case('npz_labels_2d', expect=('domain.npz', 'labels'),
         setup=_npz(y=(np.arange(40) % 10).reshape(40, 1))),
    Case('npz_length_mismatch', expect=('domain.npz', 'labels'), setup=_npz(y=np.arange(30) % 10)),
    Case('npz_float_images', expect=('domain.npz', 'uint8'),
         setup=_npz(x=np.zeros((40, 28, 28, 1), np.float32))),
    Case('npz_3d_images', expect=('domain.npz', '(N, H, W, C)'),
         setup=_npz(x=np.zeros((40, 28, 28), np.uint8))),
    Case('npz_class_count_differs', expect=('classes', 'label sets'),
         setup=lambda f: _npz(y=np.arange(40) % 5)(f)[1:]),
    Case('folder_missing', ('--config.data.target.name=folder:/nonexistent/site',),
         ('/nonexistent',)),
    Case('folder_without_classes', expect=('site', 'class folders'), setup=_folder_domain({})),
    Case('folder_corrupt_image', expect=('bad.png',),
         setup=_folder_domain({'a/bad.png': b'not an image', 'b/bad.png': b'still not'})),
    Case('folder_without_images', expect=('site', 'files'),
         setup=_folder_domain({'a/notes.txt': b'x', 'b/notes.txt': b'y'})),
    Case('usps_missing', expect=('usps.h5',), setup=_missing_manual('usps')),
    Case('usps_corrupt_h5', expect=('usps.h5',), setup=_corrupt_manual('usps', 'usps/usps.h5')),
    Case('surf_corrupt_mat', expect=('amazon_SURF_L10.mat',),
         setup=_corrupt_manual('office_caltech10_surf/amazon',
                               'office_caltech10_surf/amazon_SURF_L10.mat')),
    Case('jda_corrupt_mat', expect=('MNIST_vs_USPS.mat',),
         setup=_corrupt_manual('jda_mnist_usps', 'mnist_usps_jda/MNIST_vs_USPS.mat')),
]


def snapshot(path: str):
  """What a workdir holds: None if absent, else each file's path, size and modification time."""
  if not os.path.exists(path):
    return None
  if not os.path.isdir(path):
    return ('file', os.path.getsize(path), os.stat(path).st_mtime_ns)
  return sorted((os.path.relpath(os.path.join(d, f), path), os.path.getsize(os.path.join(d, f)),
                 os.stat(os.path.join(d, f)).st_mtime_ns)
                for d, _, files in os.walk(path) for f in files)


def run_in_process(argv: list[str]) -> tuple[int | None, str]:
  """(exit status, stderr) of `main(argv)`; status None and the traceback if it raised."""
  stderr, stdout = io.StringIO(), io.StringIO()
  try:
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
      status = main_lib.main(argv)
  except BaseException:  # noqa: BLE001 (any escape is what this corpus is looking for)
    return None, traceback.format_exc()
  return status, stderr.getvalue()


def outcome(case: Case, status: int | None, stderr: str, before, after) -> str:
  """'ok' or the class of what went wrong."""
  if status is None or 'Traceback' in stderr:
    return 'traceback'
  if status == 0:
    return 'silently-wrong'
  # Our messages; TFDS progress bars and log lines may surround them.
  lines = [line.strip() for line in stderr.splitlines()
           if line.strip().startswith(('error', 'warning', 'stopped'))]
  clear = (status == case.status and len(lines) == 1 and lines[0].startswith('error: ')
           and all(e.lower() in lines[0].lower() for e in case.expect))
  if before != after:
    return 'corrupted' + ('' if clear else '-unclear')
  return 'ok' if clear else 'unclear'


def case_argv(case: Case, folder: str) -> tuple[list[str], str]:
  workdir = os.path.join(folder, 'workdir')
  extra = case.setup(folder) if case.setup else []
  spec = next((a.split('=', 1)[1] for a in extra if a.startswith('--config=')), case.spec)
  extra = [a for a in extra if not a.startswith('--config=')]
  argv = [f'--config={spec}', f'--workdir={workdir}', '--config.compilation_cache_dir=',
          f'--config.data.data_dir={TFDS_DIR}', *extra, *case.args]
  for arg in case.args:  # A case may replace the workdir.
    if arg.startswith('--workdir='):
      workdir = arg.split('=', 1)[1]
      argv = [a for a in argv if not a.startswith('--workdir=') or a == arg]
  return argv, workdir


@pytest.mark.parametrize('case', CASES, ids=lambda c: c.name)
def test_bad_input_gets_one_line_and_leaves_the_workdir(case, tmp_path):
  argv, workdir = case_argv(case, str(tmp_path))
  before = snapshot(workdir)
  status, stderr = run_in_process(argv)
  after = snapshot(workdir)
  result = outcome(case, status, stderr, before, after)
  assert result == 'ok', (f'outcome={result} status={status} expected {case.status} with '
                          f'{case.expect}; stderr:\n{stderr[-2000:]}\n'
                          f'workdir {before} -> {after}')


SUBPROCESS_CASES = ['config_syntax_error', 'workdir_is_a_file', 'npz_random_bytes',
                    'total_steps_zero']


@pytest.mark.slow
@pytest.mark.parametrize('name', SUBPROCESS_CASES)
def test_bad_input_from_a_terminal(name, tmp_path):
  """The same cases through `python -m transfer_jax.main`: what a user sees."""
  case = next(c for c in CASES if c.name == name)
  argv, workdir = case_argv(case, str(tmp_path))
  before = snapshot(workdir)
  process = subprocess.run([sys.executable, '-m', 'transfer_jax.main', *argv], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
  result = outcome(case, process.returncode, process.stderr, before, snapshot(workdir))
  assert result == 'ok', f'outcome={result} status={process.returncode}:\n{process.stderr[-2000:]}'


def test_the_corpus_is_large_enough():
  assert len(CASES) >= 60 and len({c.name for c in CASES}) == len(CASES)
