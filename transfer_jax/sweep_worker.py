"""What a sweep runs in a worker process: runs trained in this process under their workdir locks
(the kernel lock of `training.workdir.WorkdirLock`, the one `transfer_jax.main` takes too), one at
a time or several together as one vectorized group. The `process`, `submitit_local` and `slurm`
executors of `transfer_jax.sweep` call `train_runs` in their own processes."""

import sys

from transfer_jax import config_lib
from transfer_jax.training import runtime, train
from transfer_jax.training import workdir as workdir_lib

_LOCKS: dict[str, workdir_lib.WorkdirLock] = {}


def acquire(workdir: str) -> bool:
  """Takes the run's lock; False if another process holds it. Atomic: the kernel lock has no
  stale state to take over, a dead process's lock is gone with it."""
  lock = workdir_lib.WorkdirLock(workdir)
  if not lock.acquire():
    return False
  _LOCKS[lock.workdir] = lock
  return True


def release(workdir: str) -> None:
  lock = _LOCKS.pop(workdir_lib.WorkdirLock(workdir).workdir, None)
  if lock is not None:
    lock.release()


def train_runs(specs: list[str], overrides: list[list[str]], workdirs: list[str]) -> list[str]:
  """Trains runs in this process under their locks, several together as one vectorized group
  (`transfer_jax.training.train.train_runs`); an outcome per run: 'trained', 'skipped' (locked
  elsewhere) or 'failed' (e.g. its loss became NaN while the others of its group finished)."""
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
        if len(chosen) == 1 or isinstance(e, runtime.Interrupted):
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
