"""What the loop keeps and writes for each run it trains: checkpoints (latest and best), the
metrics log and TensorBoard events, and at the end the summary. The loop (`train.py`) calls
these; nothing here knows about methods or the step.
"""

import dataclasses
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from transfer_jax.checkpoint import Checkpointer
from transfer_jax.errors import UserError
from transfer_jax.training import workdir as workdir_lib
from transfer_jax.training import writers
from transfer_jax.training.optimizer import group_labels
from transfer_jax.transfer.params import count_params
from transfer_jax.transfer.pretrained import format_table


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or Inf; the run stopped without saving a checkpoint after it."""


@dataclasses.dataclass
class RunFiles:
  """One run's workdir as the loop writes it."""
  config: ml_collections.ConfigDict
  workdir: str
  checkpointer: Checkpointer
  best_checkpointer: Checkpointer | None
  metrics_log: writers.MetricsLog
  writer: Any = None
  best: Any = None          # The best value of config.best_checkpoint_metric so far.
  previous_wall_s: float = 0.0
  failed: str = ''          # Why the run stopped (a non-finite loss), if it did.

  @classmethod
  def open(cls, config: ml_collections.ConfigDict, workdir: str) -> 'RunFiles':
    best = (Checkpointer(os.path.join(workdir, 'best'), 1) if config.best_checkpoint_metric
            else None)
    run = cls(config, workdir, Checkpointer(os.path.join(workdir, 'checkpoints'),
                                            config.keep_checkpoints),
              best, writers.MetricsLog(os.path.join(workdir, workdir_lib.METRICS_FILE)))
    if best is not None:  # Same on every process: eval metrics are replicated.
      run.best = best.read_best_value()
    return run

  def check_device_count(self, extra: dict[str, Any], device_count: int) -> None:
    """Refuses to resume on another number of devices unless config.allow_device_change: each
    step computes the same numbers to ~1e-7, but adversarial methods amplify that over a run."""
    saved = extra.get('device_count')
    if saved is None or saved == device_count or self.config.allow_device_change:
      return
    raise UserError(f'{self.workdir} was trained on {saved} devices and this process has '
                    f'{device_count}: a step agrees to ~1e-7, but a whole run may end '
                    f'differently; resume on {saved} devices (config.num_devices) or set '
                    '--config.allow_device_change=True')

  def resumed(self, latest: int | None, extra: dict[str, Any] | None, is_main: bool) -> None:
    """Takes up the restored checkpoint's wall time; what lies beyond the restored step is
    recomputed, so each step is logged once."""
    if extra is not None:
      self.previous_wall_s = extra['wall_s']
    if is_main:
      self.metrics_log.truncate_after(latest or 0)
      writers.truncate_events(self.workdir, latest)

  def write(self, step: int, wall_s: float, record: dict[str, float], is_main: bool) -> None:
    if record and is_main:
      self.metrics_log.write(step, self.previous_wall_s + wall_s, record)
      self.writer.write_scalars(step, record)

  def save_if_best(self, record: dict, step: int, state: Any) -> None:
    """Saves `state` in best/ when the metric strictly improves (max accuracy, min loss)."""
    metric = self.config.best_checkpoint_metric
    if self.best_checkpointer is None:
      return
    if metric not in record:
      raise UserError(f'config.best_checkpoint_metric={metric!r} is not an eval metric; eval '
                      f'metrics are {sorted(k for k in record if "/train/" not in k)}')
    value = record[metric]
    if self.best is None or (value > self.best if metric.endswith('accuracy')
                             else value < self.best):
      self.best = value
      self.best_checkpointer.save(step, state, {'metric': metric, 'value': value})

  def close(self) -> None:
    for manager in filter(None, (self.checkpointer, self.best_checkpointer)):
      manager.wait()
      manager.close()
    if self.writer is not None:
      self.writer.close()   # Also ends its background thread (one per run otherwise).

  def summary(self, state: Any, step: int, start_step: int, train_seconds: float,
              first_step_s: float, device_count: int, count: int,
              is_main: bool) -> dict[str, Any]:
    """Writes and returns the run's summary.json."""
    config = self.config
    final, best = workdir_lib.final_and_best(self.metrics_log.read() if is_main else [])
    trained = step > start_step
    summary = {
        'steps': step,
        'wall_s': round(self.previous_wall_s + train_seconds, 3),
        'examples_per_s': (round(2 * config.batch_size * (step - start_step) / train_seconds, 1)
                           if trained else None),
        'final': final,
        'best': best,
        'param_count': count_params(state.params),
        'trainable_param_count': trainable_count(config, state.params),
        'time_to_first_step_s': round(first_step_s, 3) if trained else None,
        'device_count': device_count,
        'process_count': jax.process_count(),
        'jax_version': jax.__version__,
        'git_commit': workdir_lib.git_commit(),
    }
    if count > 1:  # Wall time and throughput are the group's, shared by its runs.
      summary['vectorized_runs'] = count
    if is_main:
      workdir_lib.write_summary(self.workdir, summary)
      logging.info('finished %s: %s', self.workdir, final)
    return summary


def check_finite(runs: list[RunFiles], first_nonfinite: np.ndarray, step: int) -> None:
  """Marks runs whose loss became NaN or Inf as failed (their last good checkpoint is kept);
  raises once no run is left (a single run raises at once)."""
  for run, bad_step in zip(runs, first_nonfinite.tolist(), strict=True):
    if bad_step < 0 or run.failed:
      continue
    run.checkpointer.wait()
    good = run.checkpointer.latest_step()
    kept = (f'the last good checkpoint (step {good}) is kept in {run.workdir}/checkpoints'
            if good is not None else 'no checkpoint had been saved before it')
    run.failed = (f'{run.workdir}: the loss became NaN or Inf at step {bad_step} (noticed at '
                  f'step {step}); {kept}; lower config.optimizer.learning_rate or check the data')
  if all(run.failed for run in runs):
    raise NonFiniteLossError('; '.join(run.failed for run in runs))


def report_pretrained(pretrained: Any, workdir: str) -> None:
  """Logs what init_from loaded, and writes the full table to WORKDIR/init_from.txt."""
  table = format_table(pretrained)
  workdir_lib.atomic_write(os.path.join(workdir, 'init_from.txt'), table + '\n')
  print(f'init_from: {pretrained.summary()} (table in {workdir}/init_from.txt)')
  logging.info('init_from:\n%s', table)


def trainable_count(config: ml_collections.ConfigDict, params: Any) -> int:
  """Parameters the optimizer ever updates (all but `optimizer.freeze`)."""
  labels, _ = group_labels(config.optimizer, params)
  frozen = [leaf.size for leaf, label in zip(jax.tree.leaves(params), jax.tree.leaves(labels),
                                              strict=True) if label == 'frozen']
  return count_params(params) - int(sum(frozen))
