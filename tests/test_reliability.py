"""Faults a run must survive: kills at random moments (inside checkpoint saves too), SIGTERM and
SIGINT, a second process on the same workdir, corrupt checkpoints and files, a device-count
change, and continuing a finished run to more steps."""

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from conftest import ROOT, TFDS_DIR, tiny_digits
from transfer_jax import main as main_lib
from transfer_jax.checkpoint import load_params
from transfer_jax.errors import UserError
from transfer_jax.training import train
from transfer_jax.training import workdir as workdir_lib

# Long enough for a dozen interruptions; a checkpoint every other step, so that kills land
# inside saves too.
FAULT_OVERRIDES = {'total_steps': 120, 'log_every_steps': 1, 'eval_every_steps': 40,
                   'checkpoint_every_steps': 2, 'keep_checkpoints': 2}
NUMBERS_OF = lambda record: {k: v for k, v in record.items()  # noqa: E731
                             if k not in ('wall_s', 'train/steps_per_s')}


def _records(workdir) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def assert_same_run(workdir, reference) -> None:
  """Each step logged once, with the reference's numbers; the same final parameters."""
  got, want = _records(workdir), _records(reference)
  assert [r['step'] for r in got] == [r['step'] for r in want], 'steps logged differ'
  for a, b in zip(got, want, strict=True):
    a, b = NUMBERS_OF(a), NUMBERS_OF(b)
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_allclose(a[key], b[key], rtol=1e-6, err_msg=f'{key} at {a["step"]}')
  jax.tree.map(np.testing.assert_array_equal, load_params(str(workdir)),
               load_params(str(reference)))


def _tensorboard_steps(workdir, tag='source/train/loss') -> list[int]:
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  events = EventAccumulator(str(workdir))
  events.Reload()
  return [e.step for e in events.Scalars(tag)]


def _command(workdir, overrides) -> list[str]:
  return [sys.executable, '-m', 'transfer_jax.main', f'--config={ROOT}/configs/digits.py:tiny',
          f'--workdir={workdir}', f'--config.data.data_dir={TFDS_DIR}',
          '--config.compilation_cache_dir=' + os.path.join(ROOT, '.pytest_cache', 'xla'),
          *[f'--config.{k}={v}' for k, v in overrides.items()]]


def _start(workdir, overrides) -> subprocess.Popen:
  return subprocess.Popen(_command(workdir, overrides), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, process, timeout=180.0, poll=0.002) -> bool:
  deadline = time.time() + timeout
  while time.time() < deadline and process.poll() is None:
    if predicate():
      return True
    time.sleep(poll)
  return False


def _saving(workdir) -> bool:
  """An orbax save in progress: its temporary folder exists."""
  folder = os.path.join(workdir, 'checkpoints')
  return os.path.isdir(folder) and any('tmp' in name for name in os.listdir(folder))


def _max_step(workdir) -> int:
  """The last step in metrics.jsonl (0 if none); a line being written is skipped."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return 0
  steps = [0]
  with open(path) as f:
    for line in f:
      with contextlib.suppress(ValueError):
        steps.append(json.loads(line)['step'])
  return max(steps)


@pytest.fixture(scope='module')
def fault_reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('reference')
  train.train_and_evaluate(tiny_digits(**FAULT_OVERRIDES), str(workdir))
  return workdir


@pytest.mark.slow
def test_kills_at_seeded_random_moments_then_resume_equals_an_uninterrupted_run(
    fault_reference, tmp_path):
  """SIGTERM, SIGINT, then 5 SIGKILLs: 2 as soon as a checkpoint save has begun, 3 at seeded
  random moments; the run then finishes equal to the uninterrupted one, each step logged once."""
  rng = random.Random(15)
  workdir = tmp_path / 'interrupted'
  plan = ['SIGTERM', 'SIGINT'] + ['SIGKILL'] * 5
  inside_save, kills = 0, 0
  for index, name in enumerate(plan):
    done = _max_step(workdir)
    process = _start(workdir, FAULT_OVERRIDES)
    in_save = index in (3, 5)   # The 2nd and 4th SIGKILL: as a checkpoint save begins.
    started = _wait_for(lambda done=done: _max_step(workdir) > done, process)  # Past before.
    if started:
      if in_save:   # The moment a save has begun: its temporary folder exists.
        started = _wait_for(lambda: _saving(workdir), process)
      else:
        time.sleep(rng.uniform(0.0, 1.0))
    if not started or process.poll() is not None:
      process.kill()
      _, err = process.communicate()
      pytest.fail(f'the run ended before it could be interrupted by {name}: {err[-2000:]}')
    sent = time.time()
    process.send_signal(getattr(signal, name))
    _, err = process.communicate(timeout=120)
    if name == 'SIGKILL':
      assert process.returncode == -signal.SIGKILL
      kills += 1
      inside_save += in_save
    else:  # Finishes its step, checkpoints it, says so in one line, exits 128 + signal.
      assert process.returncode == 128 + getattr(signal, name), err[-2000:]
      assert time.time() - sent < 30
      stopped = [line for line in err.splitlines() if line.startswith('stopped:')]
      assert len(stopped) == 1 and f'stopped by {name} at step' in stopped[0], err[-2000:]
      assert 'Traceback' not in err
      step = int(stopped[0].split('at step ')[1].split()[0])
      assert str(step) in os.listdir(workdir / 'checkpoints')
      assert max(r['step'] for r in _records(workdir)) == step
  assert kills == 5 and inside_save == 2
  train.train_and_evaluate(tiny_digits(**FAULT_OVERRIDES), str(workdir))
  assert_same_run(workdir, fault_reference)
  assert _tensorboard_steps(workdir) == _tensorboard_steps(fault_reference)
  assert not os.path.exists(workdir / 'checkpoints.corrupt')


@pytest.mark.slow
def test_a_second_process_on_the_workdir_is_refused_naming_the_first(fault_reference, tmp_path):
  workdir = tmp_path / 'shared'
  process = _start(workdir, FAULT_OVERRIDES)
  try:
    # The holder locks, then writes its PID: until then lock_holder says pid '?'.
    assert _wait_for(
        lambda: (workdir_lib.lock_holder(str(workdir)) or {}).get('pid', '?') != '?', process)
    holder = workdir_lib.lock_holder(str(workdir))
    assert holder['pid'] == process.pid
    with pytest.raises(UserError, match=f'in use by process {process.pid}'):
      train.train_and_evaluate(tiny_digits(**FAULT_OVERRIDES), str(workdir))
    # And through the command line: one line, status 2.
    second = subprocess.run(_command(workdir, FAULT_OVERRIDES), cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 2
    errors = [line for line in second.stderr.splitlines() if line.startswith('error')]
    assert errors == [errors[0]] and f'process {process.pid}' in errors[0]
  finally:
    _, err = process.communicate(timeout=300)
  assert process.returncode == 0, err[-2000:]
  assert workdir_lib.lock_holder(str(workdir)) is None
  assert_same_run(workdir, fault_reference)


def test_a_refusal_in_the_instant_before_the_holder_wrote_its_pid_still_names_it(tmp_path):
  """The holder locks the file, then writes its PID: a second process refused in between waits
  for the PID instead of naming process '?'. (flock locks an open file description, so a second
  open() in this process stands in for the holder.)"""
  import fcntl
  import threading
  workdir = tmp_path / 'held'
  workdir.mkdir()
  holder = open(workdir / workdir_lib.LOCK_FILE, 'a+')  # noqa: SIM115
  try:
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert workdir_lib.lock_holder(str(workdir)) == {'pid': '?', 'host': '?'}

    def write_pid():
      time.sleep(0.2)
      holder.write(json.dumps({'pid': 4242, 'host': 'elsewhere'}) + '\n')
      holder.flush()

    writer = threading.Thread(target=write_pid)
    writer.start()
    with pytest.raises(UserError, match='in use by process 4242 on elsewhere'):
      workdir_lib.WorkdirLock(str(workdir)).acquire_or_fail()
    writer.join()
  finally:
    holder.close()
  assert workdir_lib.lock_holder(str(workdir)) is None


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('tiny')
  train.train_and_evaluate(tiny_digits(), str(workdir))
  return workdir


def _largest_file(folder) -> str:
  files = [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]
  return max(files, key=os.path.getsize)


@pytest.mark.parametrize('damage', ['truncated', 'bit_flipped'])
def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tiny_run, tmp_path, damage,
                                                                    capsys):
  workdir = tmp_path / 'run'
  shutil.copytree(tiny_run, workdir)
  os.remove(workdir / 'summary.json')   # As if killed after its last checkpoint.
  path = _largest_file(workdir / 'checkpoints' / '6' / 'state')
  with open(path, 'rb') as f:
    content = bytearray(f.read())
  if damage == 'truncated':
    content = content[:len(content) // 2]
  else:
    content[len(content) // 2] ^= 0x10
  with open(path, 'wb') as f:
    f.write(content)
  train.train_and_evaluate(tiny_digits(), str(workdir))
  out = capsys.readouterr().out
  assert 'checkpoint at step 6' in out and 'corrupt' in out
  assert 'from the checkpoint at step 3' in out
  assert os.listdir(workdir / 'checkpoints.corrupt') == ['6']
  assert_same_run(workdir, tiny_run)


def test_broken_files_of_a_killed_run_do_not_block_its_rerun(tiny_run, tmp_path):
  """An empty config.json (a kill during an old non-atomic write) with nothing else, and a
  partial last line of metrics.jsonl."""
  fresh = tmp_path / 'fresh'
  fresh.mkdir()
  (fresh / 'config.json').write_text('')
  train.train_and_evaluate(tiny_digits(), str(fresh))
  assert_same_run(fresh, tiny_run)
  partial = tmp_path / 'partial'
  shutil.copytree(tiny_run, partial)
  os.remove(partial / 'summary.json')
  shutil.rmtree(partial / 'checkpoints' / '6')
  with open(partial / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 7, "source/tr')
  train.train_and_evaluate(tiny_digits(), str(partial))
  assert_same_run(partial, tiny_run)
  assert _tensorboard_steps(partial) == _tensorboard_steps(tiny_run)


def test_resuming_on_another_device_count_needs_asking(tiny_run, tmp_path, eight_devices):
  workdir = tmp_path / 'run'
  shutil.copytree(tiny_run, workdir)
  os.remove(workdir / 'summary.json')
  shutil.rmtree(workdir / 'checkpoints' / '6')
  one = Mesh(np.asarray(eight_devices[:1]), ('data',))
  with pytest.raises(UserError, match='trained on 8 devices.*allow_device_change=True'):
    train.train_and_evaluate(tiny_digits(), str(workdir), mesh=one)
  summary = train.train_and_evaluate(tiny_digits(allow_device_change=True), str(workdir),
                                     mesh=one)
  assert summary['steps'] == 6 and summary['device_count'] == 1


ITERATION_SCHEDULES = {'optimizer.schedule': 'inverse', 'method.grl_schedule': 'warm_start',
                       'log_every_steps': 2, 'eval_every_steps': 3, 'checkpoint_every_steps': 3}


@pytest.mark.slow
def test_a_finished_run_continues_to_more_steps_equal_to_a_longer_run(tmp_path):
  continued, longer = tmp_path / 'continued', tmp_path / 'longer'
  train.train_and_evaluate(tiny_digits(total_steps=6, **ITERATION_SCHEDULES), str(continued))
  summary = train.train_and_evaluate(tiny_digits(total_steps=12, **ITERATION_SCHEDULES),
                                     str(continued))
  assert summary['steps'] == 12
  with open(continued / 'config.json') as f:
    assert json.load(f)['total_steps'] == 12
  train.train_and_evaluate(tiny_digits(total_steps=12, **ITERATION_SCHEDULES), str(longer))
  assert_same_run(continued, longer)


@pytest.mark.parametrize('schedule, field', [
    ({'optimizer.schedule': 'dann_annealing'}, 'optimizer.schedule'),
    ({'optimizer.schedule': 'cosine'}, 'optimizer.schedule'),
    ({'method.grl_schedule': 'dann'}, 'method.grl_schedule'),
    ({'method.trade_off_schedule': 'linear'}, 'method.trade_off_schedule'),
])
def test_continuing_a_run_whose_schedules_depend_on_the_total_is_refused(tiny_run, tmp_path,
                                                                         schedule, field, capsys):
  config = {**ITERATION_SCHEDULES, **schedule}
  workdir = tmp_path / 'run'
  os.makedirs(workdir)
  workdir_lib.write_config(tiny_digits(**config), str(workdir))
  with pytest.raises(UserError, match=f'cannot be continued to 12: {field}'):
    train.train_and_evaluate(tiny_digits(total_steps=12, **config), str(workdir))
  argv = [f'--config={ROOT}/configs/digits.py:tiny', f'--workdir={workdir}',
          '--config.compilation_cache_dir=', f'--config.data.data_dir={TFDS_DIR}',
          '--config.total_steps=12', *[f'--config.{k}={v}' for k, v in config.items()]]
  assert main_lib.main(argv) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and field in err[0] and 'new --workdir' in err[0]


@pytest.mark.slow
def test_two_sweep_workers_never_hold_one_lock(tmp_path):
  """Two processes race for the locks of 100 workdirs, half of them left by a dead holder."""
  root = tmp_path / 'runs'
  for i in range(0, 100, 2):
    os.makedirs(root / str(i))
    (root / str(i) / '.lock').write_text('{"pid": 999999, "host": "gone"}')
  script = ('import sys; from transfer_jax import sweep_worker\n'
            f'held = [i for i in range(100) if sweep_worker.acquire("{root}/" + str(i))]\n'
            'print(" ".join(map(str, held)), flush=True); sys.stdin.read()')
  workers = [subprocess.Popen([sys.executable, '-c', script], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
  held = [set(map(int, w.stdout.readline().split())) for w in workers]
  for w in workers:   # Both still hold their locks while the other's are compared.
    w.communicate('')
  assert not held[0] & held[1] and held[0] | held[1] == set(range(100))


def test_a_folder_domain_edited_after_it_was_prepared_is_prepared_again(tmp_path):
  from PIL import Image

  from transfer_jax.data.builders.images import folder_config
  for name in ('a', 'b'):
    os.makedirs(tmp_path / 'root' / 'site' / name)
    Image.new('RGB', (4, 4)).save(tmp_path / 'root' / 'site' / name / '0.png')
  before = folder_config(str(tmp_path / 'root'), 'site').name
  assert folder_config(str(tmp_path / 'root'), 'site').name == before   # Same content.
  Image.new('RGB', (4, 4), 'red').save(tmp_path / 'root' / 'site' / 'a' / '1.png')
  assert folder_config(str(tmp_path / 'root'), 'site').name != before
