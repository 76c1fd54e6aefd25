"""End-to-end runs of the one training loop on real (tiny) digits data.

Covers the run contract (workdir files), 1 vs 8 devices, resume after a hard kill, NaN stops,
rerunning a finished run, and every config in tiny mode.
"""

import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from conftest import ROOT, TFDS_DIR, tiny_digits
from transfer_jax import config_lib
from transfer_jax.checkpoint import load_params
from transfer_jax.training import train


def _read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def assert_same_training(workdir_a: str, workdir_b: str, atol: float) -> None:
  """Two runs logged the same steps, losses and accuracies, and ended with the same parameters."""
  a_records = _read_jsonl(os.path.join(workdir_a, 'metrics.jsonl'))
  b_records = _read_jsonl(os.path.join(workdir_b, 'metrics.jsonl'))
  assert [r['step'] for r in a_records] == [r['step'] for r in b_records]
  for a, b in zip(a_records, b_records, strict=True):
    for key in a:
      if 'loss' in key or 'accuracy' in key:
        np.testing.assert_allclose(a[key], b[key], atol=atol, err_msg=f'{key} at {a["step"]}')
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=atol),
               load_params(workdir_a), load_params(workdir_b))


@pytest.fixture(scope='module')
def dann_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('dann'))
  return workdir, train.train_and_evaluate(tiny_digits(), workdir)


@pytest.mark.slow
def test_run_writes_the_contract_files(dann_run):
  workdir, summary = dann_run
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['method']['name'] == 'dann'
  records = _read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert [r['step'] for r in records] == [2, 3, 4, 6]
  assert all('wall_s' in r for r in records)
  assert {'source/train/loss', 'dann/domain_loss', 'train/learning_rate'} <= set(records[0])
  assert {'source/test/accuracy', 'target/test/accuracy', 'target/test/loss'} <= set(records[1])
  for key in ('steps', 'wall_s', 'examples_per_s', 'final', 'best', 'param_count',
              'device_count', 'jax_version', 'git_commit'):
    assert key in summary, key
  assert summary['steps'] == 6 and summary['device_count'] == 8
  # The DANN network: 2 convs + 3 dense (label) + 2 dense (domain) layers.
  assert summary['param_count'] == (5 * 5 * 32 + 32 + 5 * 5 * 32 * 48 + 48 + 768 * 100 + 100 +
                                    100 * 100 + 100 + 100 * 10 + 10 + 768 * 100 + 100 + 101)
  assert 0.0 <= summary['final']['target/test/accuracy'] <= 1.0
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3', '6']
  assert glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))


@pytest.mark.slow
def test_tensorboard_events_hold_the_metrics(dann_run):
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  workdir, _ = dann_run
  events = EventAccumulator(workdir)
  events.Reload()
  steps = [e.step for e in events.Scalars('target/test/accuracy')]
  assert steps == [3, 6]


@pytest.mark.slow
def test_eval_is_exact_over_the_whole_split(dann_run):
  """Accuracy from the padded, sharded eval equals a plain numpy evaluation of the same params."""
  workdir, summary = dann_run
  from transfer_jax import data as data_lib
  from transfer_jax.models import build_model
  config = tiny_digits()
  target = data_lib.load_domain(config.data.target, config.data, 'target')
  test = target.splits['test']
  batch = target.batch_fn({key: np.stack([test[i][key] for i in range(len(test))])
                           for key in ('input', 'label')})
  images, labels = batch['input'], batch['label']
  model = build_model(config.model, 10, heads=('discriminator',))
  logits = model.apply({'params': load_params(workdir)}, images)['logits']
  accuracy = float(np.mean(np.argmax(logits, -1) == labels))
  assert len(labels) == 359 and len(labels) % config.eval_batch_size != 0  # Has padding.
  np.testing.assert_allclose(summary['final']['target/test/accuracy'], accuracy, atol=1e-6)


@pytest.mark.slow
def test_rerun_of_a_finished_run_says_so(dann_run, capsys):
  workdir, summary = dann_run
  assert train.train_and_evaluate(tiny_digits(), workdir) == summary
  assert 'already finished' in capsys.readouterr().out


@pytest.mark.slow
def test_one_device_and_eight_devices_agree(dann_run, tmp_path, eight_devices):
  workdir8, _ = dann_run
  one = Mesh(np.asarray(eight_devices[:1]), ('data',))
  train.train_and_evaluate(tiny_digits(), str(tmp_path), mesh=one)
  assert_same_training(str(tmp_path), workdir8, atol=1e-5)


def test_batch_not_divisible_by_device_count_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match='config.batch_size=12 is not divisible by the 8 devices'):
    train.train_and_evaluate(tiny_digits(batch_size=12), str(tmp_path))


@pytest.mark.slow
def test_changed_config_on_an_existing_workdir_is_refused(dann_run):
  workdir, _ = dann_run
  with pytest.raises(ValueError, match='differs in optimizer.learning_rate'):
    train.train_and_evaluate(tiny_digits(**{'optimizer.learning_rate': 0.5}), workdir)


@pytest.mark.slow
def test_resume_after_a_hard_kill_matches_an_uninterrupted_run(tmp_path):
  overrides = {'total_steps': 40, 'log_every_steps': 1, 'eval_every_steps': 10,
               'checkpoint_every_steps': 4}
  reference = tmp_path / 'reference'
  train.train_and_evaluate(tiny_digits(**overrides), str(reference))

  interrupted = tmp_path / 'interrupted'
  kill_after = random.Random(23).randint(5, 30)  # Seeded: a failure reruns at the same step.
  command = [sys.executable, '-m', 'transfer_jax.main',
             f'--config={ROOT}/configs/digits.py:tiny', f'--workdir={interrupted}',
             '--config.compilation_cache_dir=' + os.path.join(ROOT, '.pytest_cache', 'xla'),
             f'--config.data.data_dir={TFDS_DIR}']
  command += [f'--config.{k}={v}' for k, v in overrides.items()]
  process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  metrics_path = interrupted / 'metrics.jsonl'
  deadline = time.time() + 120
  while time.time() < deadline and process.poll() is None:
    if metrics_path.exists() and len(metrics_path.read_text().splitlines()) >= kill_after:
      process.send_signal(signal.SIGKILL)
      break
    time.sleep(0.005)
  process.wait()
  assert process.returncode == -signal.SIGKILL, 'the run finished before it could be killed'

  train.train_and_evaluate(tiny_digits(**overrides), str(interrupted))
  expected = _read_jsonl(reference / 'metrics.jsonl')
  resumed = _read_jsonl(metrics_path)
  assert [r['step'] for r in resumed] == [r['step'] for r in expected]
  for a, b in zip(resumed, expected, strict=True):
    for key in a:
      if key not in ('wall_s', 'train/steps_per_s'):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, err_msg=f'{key} at {a["step"]}')
  jax.tree.map(np.testing.assert_array_equal, load_params(str(interrupted)),
               load_params(str(reference)))


@pytest.mark.slow
def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  config = tiny_digits(**{'optimizer.learning_rate': 1e30, 'optimizer.schedule': 'constant',
                          'checkpoint_every_steps': 1, 'log_every_steps': 1})
  with pytest.raises(train.NonFiniteLossError, match='NaN or Inf at step 1 .*step 1'):
    train.train_and_evaluate(config, str(tmp_path))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1']
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(load_params(str(tmp_path))))
  assert not (tmp_path / 'summary.json').exists()


SHARED_DATA = os.path.join(ROOT, '..', 'shared', 'datasets')
# Configs that read downloaded files run only where the real data is (CI has ../shared).
NEEDS_FILES = ('mnist_usps', 'office_caltech_surf', 'amazon_reviews', 'usps_finetune',
               'digits_multitask', 'net2net_digits', 'mnist_mnistm')
# Tested on data their tests write (tests/test_transfer.py), not from ../shared.
OWN_TESTS = ('cifar10_to_cifar100', 'imagefolder_resnet50')
CONFIG_SPECS = [f'{path}:tiny' for path in sorted(glob.glob(os.path.join(ROOT, 'configs', '*.py')))
                if not any(name in path for name in OWN_TESTS)]
CONFIG_SPECS += [os.path.join(ROOT, 'configs', f) for f in (
    'digits.py:tiny,method=source_only,reverse', 'mnist_usps.py:tiny,protocol=adda',
    'mnist_usps.py:tiny,protocol=jda,reverse', 'office_caltech_surf.py:tiny,source=D,target=A')]


@pytest.mark.slow
@pytest.mark.parametrize('spec', CONFIG_SPECS, ids=lambda s: os.path.basename(s))
def test_every_config_runs_in_tiny_mode(spec, tmp_path, dann_run):
  if any(name in spec for name in NEEDS_FILES) and not os.path.isdir(SHARED_DATA):
    pytest.skip(f'needs the real data in {SHARED_DATA}')
  overrides = ['compilation_cache_dir=', f'data.data_dir={TFDS_DIR}',
               f'data.manual_dir={SHARED_DATA}']
  if config_lib.load_config(spec).init_from.required:  # Transfer configs: the tiny DANN run.
    overrides.append(f'init_from.path={dann_run[0]}')
  config = config_lib.load_config(spec, overrides)
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['steps'] == config.total_steps
  losses = [value for key, value in summary['final'].items() if key.endswith('/loss')]
  assert losses and np.all(np.isfinite(losses))


@pytest.mark.slow
def test_readme_custom_data_example(tmp_path):
  """The README's 'your own data' snippet, on generated scans, in tiny mode."""
  from transfer_jax import data
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (60, 20, 20, 1), dtype=np.uint8)
  y = np.arange(60) % 10
  data.register_arrays('scans', {'train': {'image': x[:40], 'label': y[:40]},
                                 'test': {'image': x[40:], 'label': y[40:]}})
  config = config_lib.load_config(os.path.join(ROOT, 'configs', 'digits.py:method=dann,tiny'), [
      'data.target.name=scans', 'data.target.test_split=test', 'data.target.box_size=0',
      f'data.data_dir={TFDS_DIR}', 'compilation_cache_dir='])
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['steps'] == config.total_steps
  np.savez(tmp_path / 'scans.npz', x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
  config = config_lib.load_config(os.path.join(ROOT, 'configs', 'digits.py:method=dann,tiny'), [
      f'data.target.name=npz:{tmp_path}/scans.npz', 'data.target.test_split=test',
      'data.target.box_size=0', f'data.data_dir={TFDS_DIR}', 'compilation_cache_dir='])
  assert train.train_and_evaluate(config, str(tmp_path / 'npz'))['steps'] == config.total_steps


@pytest.mark.slow
def test_two_processes_match_one_process(dann_run, tmp_path):
  """2 local CPU processes x 4 devices train the same steps as 1 process x 8 devices."""
  import socket
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  workdir = tmp_path / 'two_processes'
  command = [sys.executable, '-m', 'transfer_jax.main', f'--config={ROOT}/configs/digits.py:tiny',
             f'--workdir={workdir}', f'--config.data.data_dir={TFDS_DIR}',
             '--config.compilation_cache_dir=' + os.path.join(ROOT, '.pytest_cache', 'xla')]
  processes = []
  for process_id in range(2):
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
               JAX_COORDINATOR_ADDRESS=f'localhost:{port}', JAX_NUM_PROCESSES='2',
               JAX_PROCESS_ID=str(process_id))
    processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
  outputs = [p.communicate(timeout=300)[0] for p in processes]
  for p, output in zip(processes, outputs, strict=True):
    assert p.returncode == 0, output[-3000:]
  with open(workdir / 'summary.json') as f:
    summary = json.load(f)
  assert summary['process_count'] == 2 and summary['device_count'] == 8
  assert_same_training(str(workdir), dann_run[0], atol=1e-5)
