"""The one training loop: data -> jitted data-parallel step -> eval, logs, checkpoints -> workdir.

`train_and_evaluate(config, workdir)` is what `main.py`, tests and notebooks call. A method only
changes the loss (see `transfer_jax.objectives.methods`); nothing here is method-specific.
"""

import dataclasses
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from transfer_jax import data as data_lib
from transfer_jax import validation
from transfer_jax.errors import UserError
from transfer_jax.training import evaluation, parallel, runtime, vectorized, writers
from transfer_jax.training import workdir as workdir_lib
from transfer_jax.training.checkpoint import Checkpointer, abstract_with_shardings
from transfer_jax.training.inputs import (  # noqa: F401 (make_iterators: a public name)
  TrainBatches,
  load_domains,
  make_iterators,
)
from transfer_jax.training.optimizer import group_labels
from transfer_jax.training.passes import (  # noqa: F401 (adapt_batch_stats: a public name)
  adapt_batch_stats,
  cluster_target,
  estimate_fisher,
)
from transfer_jax.training.program import build_program
from transfer_jax.training.state import TrainState
from transfer_jax.transfer.params import count_params
from transfer_jax.transfer.pretrained import format_table

Interrupted = runtime.Interrupted   # A public name: main catches it.


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or Inf; the run stopped without saving a checkpoint after it."""


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       mesh: Mesh | None = None) -> dict[str, Any]:
  """Trains (or resumes) the run `config` in `workdir` and returns its summary."""
  return train_runs([config], [workdir], mesh)[0]


@dataclasses.dataclass
class _Run:
  """What the loop keeps for each run it trains."""
  config: ml_collections.ConfigDict
  workdir: str
  checkpointer: Checkpointer
  best_checkpointer: Checkpointer | None
  metrics_log: writers.MetricsLog
  best: dict[str, Any] = dataclasses.field(default_factory=lambda: {'value': None})
  previous_wall_s: float = 0.0
  failed: str = ''          # Why the run stopped (a non-finite loss), if it did.


def train_runs(configs: list[ml_collections.ConfigDict], workdirs: list[str],
               mesh: Mesh | None = None) -> list[dict[str, Any]]:
  """Trains (or resumes) runs that differ only in their seed and the step's hyperparameters
  (`vectorized.VECTOR_KEYS`) and returns their summaries. One run trains with the plain step;
  several train together, their step vmapped over a run axis (transfer_jax.training.vectorized).
  Every workdir ends up as its run alone would have left it.

  The whole config is checked before any workdir is touched. Each workdir is locked (a kernel
  lock: a second process gets one line naming this one) for as long as the runs train; a
  refused run leaves its workdir as it found it. SIGTERM and SIGINT finish the current step,
  checkpoint it and raise `Interrupted`."""
  called = time.perf_counter()
  for run_config in configs:
    validation.check_config(run_config)
  workdirs = [os.path.abspath(w) for w in workdirs]
  for workdir in workdirs:
    workdir_lib.check_workdir_path(workdir)
  # In a multi-process run every process trains in the same workdir: process 0 holds the lock.
  with workdir_lib.locked(workdirs, jax.process_index() == 0), runtime.stop_on_signals():
    return _train_locked(configs, workdirs, mesh, called)


def _train_locked(configs: list[ml_collections.ConfigDict], runs: list[str],
                  mesh: Mesh | None, called: float) -> list[dict[str, Any]]:
  """`train_runs` once its workdirs are locked."""
  vectorized.check_group(configs)
  if len(set(runs)) != len(configs):
    raise UserError('give each run its own workdir (one per config)')
  config, count = configs[0], len(configs)
  is_main = jax.process_index() == 0
  blocker = validation.extension_blocker(config)
  new_config = [workdir_lib.check_config(c, w, blocker) for c, w in zip(configs, runs, strict=True)]
  summaries = [workdir_lib.read_summary(w) for w in runs]
  finished = [bool(s) and s.get('steps') == c.total_steps
              for s, c in zip(summaries, configs, strict=True)]
  if all(finished):
    for workdir, summary in zip(runs, summaries, strict=True):
      print(f'run in {workdir} already finished at step {summary["steps"]}; nothing to do '
            f'(its results are in {workdir_lib.SUMMARY_FILE})')
    return summaries
  if any(finished):
    done = [w for w, f in zip(runs, finished, strict=True) if f]
    raise UserError(f'some of the runs given to train together are finished ({", ".join(done)}); '
                    'give only the others')

  mesh = mesh or parallel.make_mesh(config.num_devices)
  parallel.check_divisible(config.batch_size, mesh, 'config.batch_size')
  parallel.check_divisible(config.eval_batch_size, mesh, 'config.eval_batch_size')
  domains = load_domains(config)
  evaluation.check(config, domains)
  tasks = config.get('tasks', {})
  decay = any(c.optimizer.weight_decay for c in configs) if count > 1 else None
  program = build_program(config, mesh, domains['target'].input_shape,
                          domains['labels'].num_classes,
                          {t.head: domains[f'task_{n}'].num_classes for n, t in tasks.items()
                           if t.head}, decay=decay)
  # Made by a jitted function with replicated outputs: valid on meshes spanning several processes.
  replicated = parallel.replicated(mesh)
  split = jax.jit(lambda seed: tuple(jax.random.split(jax.random.key(seed))), static_argnums=0,
                  out_shardings=(replicated, replicated))
  keys = [split(c.seed) for c in configs]
  init_rng, train_rng = (keys[0] if count == 1
                         else (vectorized.stack(k) for k in zip(*keys, strict=True)))
  # Runs with one seed read one data order: the batch is loaded once and shared.
  shared_batch = len({c.seed for c in configs}) == 1
  process = dict(process_index=jax.process_index(), process_count=jax.process_count())
  # Each stream is read once per step for all runs (each in its own order; TrainBatches).
  inputs = TrainBatches(program.streams, domains, configs[:1] if shared_batch else configs,
                        process, stacked=not (count == 1 or shared_batch))
  if program.pretrained is not None and is_main:
    for workdir in runs:
      _report_pretrained(program, workdir)
  if count > 1:
    init_states, train_step = vectorized.vectorize(program, mesh, shared_batch)
    hparams = vectorized.stacked_hparams(configs, mesh)
  else:
    init_states, train_step, hparams = program.init_state, program.train_step, None

  if is_main:
    for run_config, workdir, write in zip(configs, runs, new_config, strict=True):
      if write:
        workdir_lib.write_config(run_config, workdir)
  runs = [_Run(c, w, Checkpointer(os.path.join(w, 'checkpoints'), c.keep_checkpoints),
               Checkpointer(os.path.join(w, 'best'), 1) if c.best_checkpoint_metric else None,
               writers.MetricsLog(os.path.join(w, workdir_lib.METRICS_FILE)))
          for c, w in zip(configs, runs, strict=True)]
  for run in runs:  # Same on every process: eval metrics are replicated.
    if run.best_checkpointer is not None:
      run.best['value'] = run.best_checkpointer.read_best_value()
  abstract = abstract_with_shardings(program.abstract_state, program.state_sharding)
  restored = [run.checkpointer.restore_latest(abstract) for run in runs]
  latest = [r[0] if r else None for r in restored]
  if len(set(latest)) > 1:
    raise UserError(f'the runs given to train together have checkpoints at different steps '
                    f'({latest}); resume them one by one')
  latest = latest[0]
  for run, r in zip(runs, restored, strict=True):
    if r:
      _check_device_count(run, r[2], mesh.size)
  if is_main:  # What lies beyond the restored step is recomputed: each step is logged once.
    for run in runs:
      run.metrics_log.truncate_after(latest or 0)
      writers.truncate_events(run.workdir, latest)
  if latest is not None:
    states = []
    for i, (run, (_, run_state, extra)) in enumerate(zip(runs, restored, strict=True)):
      states.append(run_state)
      if i < inputs.count:
        inputs.set_state(i, extra['iterators'])
      run.previous_wall_s = extra['wall_s']
    state = states[0] if count == 1 else vectorized.stack(states)
    resumed_pending = [{k: np.asarray(value, dtype) for k, (dtype, value) in m.items()}
                       for m in restored[0][2].get('pending', [])]
    print(f'resuming {", ".join(run.workdir for run in runs)} from the checkpoint at step {latest}')
  else:
    resumed_pending = []
    state = init_states(init_rng)
    if program.regularizer.needs_fisher:
      state = _per_run(lambda s, c: estimate_fisher(program, s, domains['source'], c, mesh,
                                                    process), state, configs)
  refresh_every = 0
  if program.method.needs_centroids:  # Re-clustered every refresh_every steps, from step 0.
    train_size = len(domains['target'].splits['train'])
    refresh_every = config.method.shot_refresh_every or -(-train_size // config.batch_size)
  eval_step = program.eval_step

  def evaluate(state: TrainState, config: ml_collections.ConfigDict) -> dict[str, float]:
    results = {}
    target_state = state
    if config.model.get('batch_norm', 'train') == 'adabn':
      target_state = adapt_batch_stats(program, state, domains['target'], config, mesh, process)
    splits = list(config.eval_splits)
    if (config.selection and 'oracle_val' in domains['target'].splits
        and 'target/oracle_val' not in splits):
      splits.append('target/oracle_val')   # The selection tables' oracle (an upper bound).
    for split_name in splits:
      role, split = split_name.split('/')
      domain = domains[role if role in ('source', 'target') else f'task_{role}']
      head = tasks[role].head if role in tasks else ''
      totals = None
      for batch in data_lib.eval_batches(domain.splits[split], domain.batch_fn,
                                         config.eval_batch_size, **process):
        sums = eval_step(target_state if role == 'target' else state,
                         parallel.to_global(batch, mesh), head)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
      totals = jax.device_get(totals)
      results[f'{split_name}/accuracy'] = float(totals['correct'] / totals['count'])
      results[f'{split_name}/loss'] = float(totals['loss_sum'] / totals['count'])
    if config.selection:
      results.update(evaluation.selection_record(program, state, domains, config, mesh, process))
    return results

  def run_state(index: int) -> TrainState:
    return state if count == 1 else vectorized.unstack(state, index)

  run_writers = [writers.create_writer(run.workdir, is_main) for run in runs]
  step = latest or 0
  if step == 0 and is_main:
    for run, writer in zip(runs, run_writers, strict=True):
      writer.write_hparams(workdir_lib.config_to_dict(run.config))
  progress = writers.Progress(config.total_steps, step)
  start = time.perf_counter()
  start_step = step
  # Per-step metrics since the last log step; a checkpoint saves them, so that a resumed run
  # logs the same means as an uninterrupted one.
  pending: list[dict[str, Any]] = list(resumed_pending)
  while step < config.total_steps:
    if refresh_every and step % refresh_every == 0:
      state = _per_run(lambda s, c: cluster_target(program, s, domains['target'], c, mesh,
                                                   process), state, configs)
    batch = parallel.to_global(inputs.next(), mesh, run_axis=inputs.stacked)
    if count == 1:
      state, metrics = train_step(state, batch, train_rng)
    else:
      state, metrics = train_step(state, batch, train_rng, hparams)
    step += 1
    if step == start_step + 1:  # Data loading, compilation (or cache hit) and one step.
      jax.block_until_ready(metrics)
      first_step_s = time.perf_counter() - called
    pending.append(metrics)
    log_now = step % config.log_every_steps == 0 or step == config.total_steps
    eval_now = step % config.eval_every_steps == 0 or step == config.total_steps
    stopping = runtime.STOP['signum'] is not None
    save_now = (step % config.checkpoint_every_steps == 0 or step == config.total_steps
                or stopping)
    wall_s = time.perf_counter() - start
    if log_now or eval_now or save_now:
      _check_finite(runs, np.atleast_1d(jax.device_get(state.first_nonfinite_step)), step)
    if log_now:
      means = _mean(jax.device_get(pending), count)
      pending = []
    if save_now:
      pending = jax.device_get(pending)
      saved_pending = [{k: [np.asarray(v).dtype.str, np.asarray(v).tolist()]
                        for k, v in m.items()} for m in pending]
    for index, (run, writer) in enumerate(zip(runs, run_writers, strict=True)):
      if run.failed:
        continue
      record = {}
      if log_now:
        record.update(means[index])
        record['train/steps_per_s'] = (step - start_step) / (time.perf_counter() - start)
      if eval_now:
        record.update(evaluate(run_state(index), run.config))
        if run.best_checkpointer is not None:
          _save_if_best(run.best_checkpointer, run.config.best_checkpoint_metric, record, step,
                        run_state(index), run.best)
      if record and is_main:
        run.metrics_log.write(step, run.previous_wall_s + wall_s, record)
        writer.write_scalars(step, record)
      if save_now:
        extra = {'iterators': inputs.get_state(0 if shared_batch else index),
                 'wall_s': run.previous_wall_s + wall_s, 'device_count': mesh.size,
                 'pending': saved_pending}
        run.checkpointer.save(step, run_state(index), extra)
      if index == 0:
        progress.update(step, record or None)
    if stopping:
      break
  for run in runs:
    for manager in filter(None, (run.checkpointer, run.best_checkpointer)):
      manager.wait()
      manager.close()
  for writer in run_writers:
    writer.close()   # Also ends its background thread (one per run otherwise).
  if step < config.total_steps:   # Stopped by a signal, its checkpoint saved.
    signum = runtime.STOP['signum']
    raise runtime.Interrupted(
        signum, f'stopped by {signal.Signals(signum).name} at step {step} of '
                f'{config.total_steps}; the checkpoint at step {step} is saved in '
                f'{", ".join(run.workdir for run in runs)}: rerun the same command to resume')

  train_seconds = time.perf_counter() - start
  summaries = []
  for index, run in enumerate(runs):
    if run.failed:
      summaries.append(None)
      continue
    final, best = workdir_lib.final_and_best(run.metrics_log.read() if is_main else [])
    params = run_state(index).params
    summary = {
        'steps': step,
        'wall_s': round(run.previous_wall_s + train_seconds, 3),
        'examples_per_s': round(2 * config.batch_size * (step - start_step) / train_seconds, 1)
                          if step > start_step else None,
        'final': final,
        'best': best,
        'param_count': count_params(params),
        'trainable_param_count': trainable_count(run.config, params),
        'time_to_first_step_s': round(first_step_s, 3) if step > start_step else None,
        'device_count': mesh.size,
        'process_count': jax.process_count(),
        'jax_version': jax.__version__,
        'git_commit': workdir_lib.git_commit(),
    }
    if count > 1:  # Wall time and throughput are the group's, shared by its runs.
      summary['vectorized_runs'] = count
    if is_main:
      workdir_lib.write_summary(run.workdir, summary)
      logging.info('finished %s: %s', run.workdir, final)
    summaries.append(summary)
  failed = [run for run in runs if run.failed]
  if failed:
    raise NonFiniteLossError('; '.join(run.failed for run in failed)
                             + (f' (the other {count - len(failed)} runs finished)'
                                if count > len(failed) else ''))
  return summaries


def _check_finite(runs: list[_Run], first_nonfinite: np.ndarray, step: int) -> None:
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


def _check_device_count(run: _Run, extra: dict[str, Any], device_count: int) -> None:
  """Refuses to resume on another number of devices unless config.allow_device_change: each
  step computes the same numbers to ~1e-7, but adversarial methods amplify that over a run."""
  saved = extra.get('device_count')
  if saved is None or saved == device_count or run.config.get('allow_device_change'):
    return
  raise UserError(f'{run.workdir} was trained on {saved} devices and this process has '
                  f'{device_count}: a step agrees to ~1e-7, but a whole run may end differently; '
                  f'resume on {saved} devices (config.num_devices) or set '
                  '--config.allow_device_change=True')


def _per_run(fn, state: TrainState, configs: list[ml_collections.ConfigDict]) -> TrainState:
  """`fn(state, config)` applied to each run's state (states stacked on a run axis if several)."""
  if len(configs) == 1:
    return fn(state, configs[0])
  return vectorized.stack([fn(vectorized.unstack(state, i), c) for i, c in enumerate(configs)])


def _report_pretrained(program, workdir: str) -> None:
  """Logs what init_from loaded, and writes the full table to WORKDIR/init_from.txt."""
  table = format_table(program.pretrained)
  workdir_lib.atomic_write(os.path.join(workdir, 'init_from.txt'), table + '\n')
  print(f'init_from: {program.pretrained.summary()} (table in {workdir}/init_from.txt)')
  logging.info('init_from:\n%s', table)


def _save_if_best(manager, metric: str, record: dict, step: int, state, best: dict) -> None:
  """Saves `state` in best/ when `metric` strictly improves (max accuracy, min loss)."""
  if metric not in record:
    raise UserError(f'config.best_checkpoint_metric={metric!r} is not an eval metric; eval '
                    f'metrics are {sorted(k for k in record if "/train/" not in k)}')
  value = record[metric]
  improved = best['value'] is None or (value > best['value'] if metric.endswith('accuracy')
                                       else value < best['value'])
  if improved:
    best['value'] = value
    manager.save(step, state, {'metric': metric, 'value': value})


def trainable_count(config: ml_collections.ConfigDict, params: Any) -> int:
  """Parameters the optimizer ever updates (all but `optimizer.freeze`)."""
  labels, _ = group_labels(config.optimizer, params)
  frozen = [leaf.size for leaf, label in zip(jax.tree.leaves(params), jax.tree.leaves(labels),
                                              strict=True) if label == 'frozen']
  return count_params(params) - int(sum(frozen))


def _mean(metrics: list[dict[str, Any]], count: int) -> list[dict[str, float]]:
  """Each run's mean of each metric over the steps logged (metrics carry a run axis if
  count > 1)."""
  if count == 1:
    return [{key: float(np.mean([m[key] for m in metrics])) for key in metrics[0]}]
  return [{key: float(np.mean([m[key][i] for m in metrics])) for key in metrics[0]}
          for i in range(count)]
