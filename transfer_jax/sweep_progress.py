"""What a sweep shows while it runs: a log file per run, progress lines with an ETA, and the
table's wall time and runs per hour at the end.

`logged_train_runs` is what every executor calls (inline in the sweep process, in a subprocess,
in a submitit job): it trains the runs through `sweep_worker.train_runs` while copying this
process's output (prints and Python logging) into `RUN_DIR/train.log` of each run it trains, so
a run's log lies in its workdir whichever executor trained it.
"""

import contextlib
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from transfer_jax.sweep_worker import train_runs

LOG_FILE = 'train.log'


class _Tee:
  """A text stream that writes to the original stream and to the log files."""

  def __init__(self, stream: TextIO, files: Sequence[TextIO]):
    self._stream, self._files = stream, files

  def write(self, text: str) -> int:
    for f in self._files:
      f.write(text)
      f.flush()
    return self._stream.write(text)

  def flush(self) -> None:
    self._stream.flush()

  def isatty(self) -> bool:
    return False  # Progress bars print plain lines, which a log file can hold.

  def __getattr__(self, name: str) -> Any:
    return getattr(self._stream, name)


@contextlib.contextmanager
def logs_to(run_dirs: Sequence[str]) -> Iterator[None]:
  """Copies stdout, stderr and Python logging into `RUN_DIR/train.log` of every run (appended:
  a resumed run's log continues)."""
  files = []
  for run_dir in run_dirs:
    os.makedirs(run_dir, exist_ok=True)
    files.append(open(os.path.join(run_dir, LOG_FILE), 'a'))  # noqa: SIM115 (closed below)
  handlers = [logging.StreamHandler(f) for f in files]
  for handler in handlers:
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s'))
    logging.getLogger().addHandler(handler)
  stdout, stderr = sys.stdout, sys.stderr
  sys.stdout, sys.stderr = _Tee(stdout, files), _Tee(stderr, files)
  try:
    yield
  except Exception:
    for f in files:  # The error that ended the run, in its log too.
      f.write(traceback.format_exc())
    raise
  finally:
    sys.stdout, sys.stderr = stdout, stderr
    for handler in handlers:
      logging.getLogger().removeHandler(handler)
    for f in files:
      f.close()


def logged_train_runs(specs: list[str], overrides: list[list[str]],
                      workdirs: list[str]) -> list[str]:
  """`sweep_worker.train_runs` with each run's output also in its `train.log`."""
  with logs_to(workdirs):
    return train_runs(specs, overrides, workdirs)


def _clock(seconds: float) -> str:
  seconds = int(round(seconds))
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


class Progress:
  """Counts a sweep's runs as they end and prints finished / failed / remaining and an ETA (the
  sweep's wall time per ended run so far, which counts parallel executors, times the runs
  remaining)."""

  def __init__(self, total: int, done_before: int, stream: TextIO | None = None):
    self.total, self.done_before = total, done_before
    self.finished = self.failed = self.other = 0   # other: blocked, or locked elsewhere.
    self.start = time.perf_counter()
    self.stream = stream or sys.stdout

  @property
  def remaining(self) -> int:
    return self.total - self.done_before - self.finished - self.failed - self.other

  def eta(self) -> str:
    ended = self.finished + self.failed
    if not ended:
      return 'ETA after the first run'
    per_run = (time.perf_counter() - self.start) / ended
    return f'ETA {_clock(per_run * self.remaining)}'

  def line(self, what: str) -> str:
    return (f'[{self.done_before + self.finished}/{self.total} finished, {self.failed} failed, '
            f'{self.remaining} remaining, {self.eta()}] {what}')

  def starting(self, names: Sequence[str], run_dirs: Sequence[str]) -> None:
    logs = ', '.join(os.path.join(d, LOG_FILE) for d in run_dirs[:1])
    more = f' (+{len(names) - 1} vectorized)' if len(names) > 1 else ''
    print(self.line(f'training {names[0]}{more}; log: {logs}'), file=self.stream, flush=True)

  def ended(self, name: str, outcome: str) -> None:
    if outcome == 'trained':
      self.finished += 1
    elif outcome == 'failed':
      self.failed += 1
    else:
      self.other += 1
    print(self.line(f'{name}: {outcome}'), file=self.stream, flush=True)

  def elapsed(self) -> float:
    return time.perf_counter() - self.start


def table_figures(summaries: Sequence[dict[str, Any] | None], trained: int,
                  elapsed_s: float) -> str:
  """The table's wall time and runs per hour: this invocation's, and the summed training time
  of every finished run (a vectorized group's wall time is shared by its runs)."""
  walls = [s['wall_s'] / s.get('vectorized_runs', 1) for s in summaries
           if s is not None and s.get('wall_s') is not None]
  parts = []
  if trained:
    parts.append(f'this sweep trained {trained} run(s) in {_clock(elapsed_s)} '
                 f'({3600 * trained / max(elapsed_s, 1e-9):.1f} runs/hour)')
  if walls:
    total = sum(walls)
    parts.append(f'the {len(walls)} finished run(s) of the table took {_clock(total)} of '
                 f'training (summary wall_s; {3600 * len(walls) / max(total, 1e-9):.1f} runs/hour)')
  return 'table: ' + ('; '.join(parts) if parts else 'no finished run yet')
