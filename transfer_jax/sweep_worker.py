"""What a sweep runs in a worker process: runs trained in this process under per-run lock files
(`.sweep_lock`: host and pid), one at a time or several together as one vectorized group. The
`process`, `submitit_local` and `slurm` executors of `transfer_jax.sweep` call `train_runs` in their
own processes."""

import json
import os
import socket
import sys
from typing import Any

LOCK_FILE = '.sweep_lock'


def lock_holder(workdir: str) -> dict[str, Any] | None:
  try:
    with open(os.path.join(workdir, LOCK_FILE)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def alive(holder: dict[str, Any]) -> bool:
  """A lock of another host counts as alive (its process cannot be checked from here)."""
  if holder.get('host') != socket.gethostname():
    return True
  try:
    os.kill(int(holder['pid']), 0)
  except (ProcessLookupError, ValueError, KeyError):
    return False
  except PermissionError:
    return True
  return True


def acquire(workdir: str) -> bool:
  """Takes the run's lock (O_EXCL); False if a live process holds it. A dead holder's lock on
  this host is removed first."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  for _ in range(2):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      holder = lock_holder(workdir)
      if holder is None or alive(holder):
        return False
      os.remove(path)   # Its process died (e.g. killed): the run resumes here.
      continue
    with os.fdopen(fd, 'w') as f:
      json.dump({'host': socket.gethostname(), 'pid': os.getpid()}, f)
    return True
  return False


def release(workdir: str) -> None:
  holder = lock_holder(workdir)
  if holder and holder.get('pid') == os.getpid() and holder.get('host') == socket.gethostname():
    os.remove(os.path.join(workdir, LOCK_FILE))


def train_runs(specs: list[str], overrides: list[list[str]], workdirs: list[str]) -> list[str]:
  """Trains runs in this process under their locks, several together as one vectorized group
  (`transfer_jax.training.train.train_runs`); an outcome per run: 'trained', 'skipped' (locked
  elsewhere) or 'failed' (e.g. its loss became NaN while the others of its group finished)."""
  from transfer_jax import config_lib
  from transfer_jax.training import runtime, train
  from transfer_jax.training import workdir as workdir_lib
  held = [acquire(workdir) for workdir in workdirs]
  chosen = [i for i, h in enumerate(held) if h]
  error = None
  try:
    if chosen:
      configs = [config_lib.load_config(specs[i], overrides[i]) for i in chosen]
      runtime.setup(configs[0])
      try:
        train.train_runs(configs, [workdirs[i] for i in chosen])
      except Exception as e:  # noqa: BLE001 (a group: the runs that finished still count)
        if len(chosen) == 1:
          raise
        error = e
  finally:
    for workdir, h in zip(workdirs, held, strict=True):
      if h:
        release(workdir)
  outcomes = []
  for i, workdir in enumerate(workdirs):
    summary = workdir_lib.read_summary(workdir) if held[i] else None
    if not held[i]:
      outcomes.append('skipped')
    elif error is None or (summary and
                           summary.get('steps') == configs[chosen.index(i)].total_steps):
      outcomes.append('trained')
    else:
      print(f'run {workdir} failed: {type(error).__name__}: {error}', file=sys.stderr)
      outcomes.append('failed')
  return outcomes


def train_run(spec: str, overrides: list[str], workdir: str) -> str:
  """Trains one run in this process under its lock: 'trained', 'skipped' (locked elsewhere)."""
  return train_runs([spec], [overrides], [workdir])[0]
