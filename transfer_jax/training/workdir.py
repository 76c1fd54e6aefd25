"""The files of a run's workdir: config.json, summary.json, metrics.jsonl (their readers for
the experiment layer too), and the checks made on a rerun."""

import contextlib
import fcntl
import json
import os
import subprocess
import time
from typing import Any

import ml_collections

from transfer_jax.config_schema import with_added_keys
from transfer_jax.errors import UserError

CONFIG_FILE, SUMMARY_FILE, METRICS_FILE = 'config.json', 'summary.json', 'metrics.jsonl'
LOCK_FILE = '.lock'   # Held (flock) by the process training in the workdir; names its PID.
# Keys that do not change a run's results: a resumed run may change them (e.g. more devices).
EVAL_SPLITS = ('test', 'val', 'oracle_val', 'labeled')
RUNTIME_KEYS = ('compilation_cache_dir', 'num_devices', 'eval_batch_size',
                'data.manual_dir', 'data.data_dir',   # Where the same files are found.
                'distributed.coordinator_address', 'distributed.num_processes',
                'distributed.process_id',
                # Guards and cadences that change no number of a run.
                'allow_device_change', 'init_from.allowed', 'checkpoint_every_steps',
                'keep_checkpoints')


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def atomic_write(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file and a rename: a reader (or a rerun after a
  kill) sees the old file or the new one, never a part."""
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_saved_config(workdir: str) -> dict[str, Any] | None:
  """The config.json of `workdir`; None if absent or empty (a kill during an old non-atomic
  first write), a one-line error if it is unreadable."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path) or os.path.getsize(path) == 0:
    return None
  try:
    with open(path) as f:
      saved = json.load(f)
  except ValueError as e:
    raise UserError(f'{path} is not valid JSON ({e}); move it away if the run holds no '
                    'checkpoint, or use a new --workdir') from None
  if not isinstance(saved, dict):
    raise UserError(f'{path} holds no config (a JSON object); use a new --workdir')
  return saved


def check_config(config: ml_collections.ConfigDict, workdir: str,
                 extension_blocker: str | None = None) -> bool:
  """Refuses a config that differs from the one `workdir` holds, except in RUNTIME_KEYS and a
  larger `total_steps` where `extension_blocker` is None (the run's schedules are functions of
  the iteration alone). Returns whether config.json must be (re)written."""
  old, new = read_saved_config(workdir), config_to_dict(config)
  if old is None:
    return True
  # A field added since the run was saved counts as holding the value that reproduces it.
  changed = [k for k in differences(with_added_keys(old), new) if k not in RUNTIME_KEYS]
  if changed == ['total_steps']:
    old_total = old['total_steps']
    if new['total_steps'] < old_total:
      raise UserError(f'workdir {workdir} holds a run of total_steps={old_total}; a run cannot '
                      f'be shortened to {new["total_steps"]}: use a new --workdir')
    if extension_blocker:
      raise UserError(f'workdir {workdir} holds a run of total_steps={old_total}, which cannot '
                      f'be continued to {new["total_steps"]}: {extension_blocker} depends on '
                      'total_steps; use a new --workdir')
    for key in ('log_every_steps', 'eval_every_steps'):
      if old_total % new[key]:
        raise UserError(f'workdir {workdir} holds a run of total_steps={old_total}, not a '
                        f'multiple of {key}={new[key]}: continued, its logs would differ from a '
                        f'run made at {new["total_steps"]} steps; use a new --workdir')
    return True
  if changed:
    raise UserError(f'workdir {workdir} holds a run with another config (differs in '
                    f'{", ".join(changed[:5])}); use a new --workdir to start a new run')
  return False


def check_or_write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes config.json; on a rerun, refuses a config that differs from the saved one."""
  if check_config(config, workdir):
    write_config(config, workdir)


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  atomic_write(os.path.join(workdir, CONFIG_FILE),
               json.dumps(config_to_dict(config), indent=2, sort_keys=True))


def check_workdir_path(workdir: str) -> None:
  """A one-line error if `workdir` cannot be a run's folder (a file, or not creatable)."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f'workdir {workdir} is a file, not a folder; give another --workdir')
  parent = workdir
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
    raise UserError(f'workdir {workdir} cannot be created or written ({parent} is not a '
                    'writable folder); give another --workdir')


class WorkdirLock:
  """An exclusive kernel lock (flock) on WORKDIR/.lock, held by the process that trains there
  and released by the kernel when it dies, however it dies. Re-entrant within a process (a
  sweep worker holds it around `train_runs`, which takes it again)."""

  _held: dict[str, list] = {}   # abspath -> [file, count], this process's locks.

  def __init__(self, workdir: str):
    self.workdir = os.path.abspath(workdir)
    self.path = os.path.join(self.workdir, LOCK_FILE)

  def acquire(self) -> bool:
    """Takes the lock (creating the workdir); False if another process holds it."""
    if self.workdir in self._held:
      self._held[self.workdir][1] += 1
      return True
    os.makedirs(self.workdir, exist_ok=True)
    f = open(self.path, 'a+')  # noqa: SIM115 (held open for as long as the lock is)
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      f.close()
      return False
    f.seek(0)
    f.truncate()
    f.write(json.dumps({'pid': os.getpid(), 'host': os.uname().nodename}) + '\n')
    f.flush()
    self._held[self.workdir] = [f, 1]
    return True

  def acquire_or_fail(self) -> None:
    if not self.acquire():
      holder = lock_holder(self.workdir) or {}
      for _ in range(50):   # The holder writes its PID just after it locks: wait for it (<1 s).
        if holder.get('pid', '?') != '?':
          break
        time.sleep(0.02)
        holder = lock_holder(self.workdir) or {}
      raise UserError(f'workdir {self.workdir} is in use by process {holder.get("pid", "?")} '
                      f'on {holder.get("host", "?")}; wait for it to end (or stop it), or use '
                      'another --workdir')

  def release(self) -> None:
    entry = self._held.get(self.workdir)
    if entry is None:
      return
    entry[1] -= 1
    if entry[1] == 0:
      del self._held[self.workdir]
      entry[0].close()   # The kernel drops the lock; the file stays (see lock_holder).


@contextlib.contextmanager
def locked(workdirs: list[str], lock: bool = True):
  """Holds the locks of `workdirs` (with `lock`; else only makes sure they exist). If the body
  raises, what this made is removed again (the lock file, an empty workdir): a refused run
  leaves its workdir as it found it."""
  existed = [(os.path.isdir(w), os.path.exists(os.path.join(w, LOCK_FILE))) for w in workdirs]
  with contextlib.ExitStack() as stack:
    for workdir in workdirs:
      if not lock:
        os.makedirs(workdir, exist_ok=True)
        continue
      workdir_lock = WorkdirLock(workdir)
      workdir_lock.acquire_or_fail()
      stack.callback(workdir_lock.release)
    try:
      yield
    except BaseException:
      for workdir, (dir_existed, lock_existed) in zip(workdirs, existed, strict=True):
        # (A process opening the lock file in this instant could lock the unlinked file while a
        # third one locks a new one: refused runs are rare and the window is microseconds.)
        if lock and not lock_existed:
          with contextlib.suppress(OSError):
            os.remove(os.path.join(workdir, LOCK_FILE))
        if not dir_existed:
          with contextlib.suppress(OSError):
            os.rmdir(workdir)   # Only if empty.
      raise


def lock_holder(workdir: str) -> dict[str, Any] | None:
  """{'pid', 'host'} of the process holding `workdir`'s lock, None if no process holds it.
  The file is never removed: a holder's lock is on that file, and a new file would let a
  second process lock it too."""
  path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
  if os.path.abspath(workdir) in WorkdirLock._held:
    return {'pid': os.getpid(), 'host': os.uname().nodename}
  try:
    with open(path) as f:
      try:
        fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
      except OSError:
        text = f.read()
        try:
          return json.loads(text)
        except ValueError:
          return {'pid': '?', 'host': '?'}   # Held, its PID not yet written.
      return None
  except OSError:
    return None


def differences(old: Any, new: Any, prefix: str = '') -> list[str]:
  """The dotted keys whose values differ between two config dicts."""
  if isinstance(old, dict) and isinstance(new, dict):
    out = []
    for key in sorted(set(old) | set(new)):
      out += differences(old.get(key, '<missing>'), new.get(key, '<missing>'), f'{prefix}{key}.')
    return out
  return [] if old == new else [prefix.rstrip('.')]


def read_summary(workdir: str) -> dict[str, Any] | None:
  path = os.path.join(workdir, SUMMARY_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except ValueError:
    return None   # A partial file (an old non-atomic write): the run is not finished.


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The records of WORKDIR/metrics.jsonl (one per log or evaluation event, each with `step`),
  [] if there is none: the one reader of that file (the report, the plots; the loop's
  `writers.MetricsLog.read` parses the same `metrics_lines`)."""
  return [json.loads(line) for line in metrics_lines(os.path.join(workdir, METRICS_FILE))]


def metrics_lines(path: str) -> list[str]:
  """The complete JSON lines of a metrics file, [] if it is absent; a line cut by a kill (not
  JSON, or not a record with a `step`) is dropped."""
  if not os.path.exists(path):
    return []
  lines = []
  with open(path) as f:
    for line in f:
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except ValueError:
        continue
      if isinstance(record, dict) and 'step' in record:
        lines.append(line)
  return lines


def write_summary(workdir: str, summary: dict[str, Any]) -> None:
  atomic_write(os.path.join(workdir, SUMMARY_FILE), json.dumps(summary, indent=2, sort_keys=True))


def final_and_best(records: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, Any]]:
  """Last value of each eval metric, and its best value (max accuracy, min loss) with the step.

  Best values over target test data are optimistic (they select on test data) and are reported
  only as such, never used to select a model.
  """
  final, best = {}, {}
  for record in records:
    for key, value in record.items():
      parts = key.split('/')
      if len(parts) != 3 or parts[1] not in EVAL_SPLITS or parts[2] not in ('accuracy', 'loss'):
        continue
      final[key] = value
      better = max if key.endswith('accuracy') else min
      if key not in best or better(value, best[key]['value']) != best[key]['value']:
        best[key] = {'value': value, 'step': record['step']}
  return final, best


def git_commit() -> str | None:
  """The commit of the source tree this package runs from, with '+dirty' if it has changes."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=here, capture_output=True,
                            text=True, timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=here,
                           capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return commit + ('+dirty' if dirty else '')


# A run's files that the tables are made from (and what init_from loaded), without checkpoints.
RECORD_FILES = (CONFIG_FILE, SUMMARY_FILE, METRICS_FILE, 'init_from.txt')


def copy_records(workdir: str, names: list[str], dest: str) -> int:
  """Copies RECORD_FILES of the runs `names` from `workdir` into `dest`/NAME (kilobytes a run, no
  checkpoints: `--workdir=dest` remakes their tables anywhere); returns how many files it wrote.
  Refuses (before writing any) where `dest` holds a file with other contents."""
  if os.path.abspath(dest) == os.path.abspath(workdir):
    raise UserError(f'--records {dest} is the workdir itself; give another folder')
  copies = []
  for name in names:
    for file in RECORD_FILES:
      source, target = os.path.join(workdir, name, file), os.path.join(dest, name, file)
      if not os.path.isfile(source):
        continue
      with open(source, encoding='utf-8') as f:
        data = f.read()
      if os.path.exists(target):
        with open(target, encoding='utf-8') as f:
          if f.read() != data:
            raise UserError(f'{target} exists with other contents (an earlier record of that '
                            'run?); move it away or give --records another folder')
        continue
      copies.append((target, data))
  for target, data in copies:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    atomic_write(target, data)
  return len(copies)
