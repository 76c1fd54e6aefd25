"""The one training loop: data -> jitted data-parallel step -> eval, logs, checkpoints -> workdir.

`train_and_evaluate(config, workdir)` is what `main.py`, tests and notebooks call. A method only
changes the loss (see `transfer_jax.objectives.methods`); what a method, regularizer or model
setting needs outside the step it declares, and `hooks.py` runs it at the loop's three moments.
One run or a vectorized group go through the same loop (`vectorized.runs_of`).
"""

import os
import signal
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from transfer_jax import validation
from transfer_jax.checkpoint import abstract_with_shardings
from transfer_jax.errors import UserError
from transfer_jax.training import parallel, runtime, vectorized, writers
from transfer_jax.training import workdir as workdir_lib
from transfer_jax.training.evaluation import Evaluator, check
from transfer_jax.training.hooks import hooks_for
from transfer_jax.training.inputs import TrainBatches, load_domains
from transfer_jax.training.program import build_program
from transfer_jax.training.run_files import (
  NonFiniteLossError,
  RunFiles,
  check_finite,
  report_pretrained,
)

Interrupted = runtime.Interrupted   # A public name: main catches it.


__all__ = ['Interrupted', 'NonFiniteLossError', 'train_and_evaluate', 'train_runs']


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       mesh: Mesh | None = None) -> dict[str, Any]:
  """Trains (or resumes) the run `config` in `workdir` and returns its summary."""
  return train_runs([config], [workdir], mesh)[0]


def train_runs(configs: list[ml_collections.ConfigDict], workdirs: list[str],
               mesh: Mesh | None = None) -> list[dict[str, Any]]:
  """Trains (or resumes) runs that differ only in their seed and the step's hyperparameters
  (`vectorized.VECTOR_KEYS`) and returns their summaries. One run trains with the plain step;
  several train together, their step over a run axis (vmapped, or unrolled for convolutional
  nets on CPU: transfer_jax.training.vectorized).
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


def _train_locked(configs: list[ml_collections.ConfigDict], workdirs: list[str],
                  mesh: Mesh | None, called: float) -> list[dict[str, Any]]:
  """`train_runs` once its workdirs are locked."""
  vectorized.check_group(configs)
  if len(set(workdirs)) != len(configs):
    raise UserError('give each run its own workdir (one per config)')
  config, is_main = configs[0], jax.process_index() == 0
  blocker = validation.extension_blocker(config)
  new_config = [workdir_lib.check_config(c, w, blocker)
                for c, w in zip(configs, workdirs, strict=True)]
  summaries = _finished(configs, workdirs)
  if summaries is not None:
    return summaries
  mesh = mesh or parallel.make_mesh(config.num_devices)
  parallel.check_divisible(config.batch_size, mesh, 'config.batch_size')
  parallel.check_divisible(config.eval_batch_size, mesh, 'config.eval_batch_size')
  domains = load_domains(config)
  check(config, domains)
  program = build_program(config, mesh, domains['target'].input_shape,
                          domains['labels'].num_classes,
                          {t.head: domains[f'task_{n}'].num_classes
                           for n, t in config.tasks.items() if t.head},
                          decay=vectorized.group_decay(configs))
  group = vectorized.runs_of(program, configs, mesh)
  process = dict(process_index=jax.process_index(), process_count=jax.process_count())
  # Each stream is read once per step for all runs (each in its own order; TrainBatches).
  inputs = TrainBatches(program.streams, domains, group.batch_configs, process,
                        stacked=group.stacked_batch)
  hooks = hooks_for(program, domains, mesh, process)
  evaluator = Evaluator(program, domains, mesh, process)
  if is_main:
    for run_config, workdir, write in zip(configs, workdirs, new_config, strict=True):
      if program.pretrained is not None:
        report_pretrained(program.pretrained, workdir)
      if write:
        workdir_lib.write_config(run_config, workdir)
  runs = [RunFiles.open(c, w) for c, w in zip(configs, workdirs, strict=True)]
  state, step, pending = _restore_or_init(runs, group, program, inputs, hooks, mesh, is_main)
  _, train_rng = group.keys([_keys(c.seed, mesh) for c in configs])
  for run in runs:
    run.writer = writers.create_writer(run.workdir, is_main)
    if step == 0 and is_main:
      run.writer.write_hparams(workdir_lib.config_to_dict(run.config))
  progress = writers.Progress(config.total_steps, step)
  start, start_step, first_step_s = time.perf_counter(), step, 0.0
  while step < config.total_steps:
    for hook in hooks:
      if hook.due(step):
        state = group.per_run(hook.before_step, state)
    batch = parallel.to_global(inputs.next(), mesh, run_axis=inputs.stacked)
    state, metrics = group.step(state, batch, train_rng)
    step += 1
    if step == start_step + 1:  # Data loading, compilation (or cache hit) and one step.
      jax.block_until_ready(metrics)
      first_step_s = time.perf_counter() - called
    # Per-step metrics since the last log step; a checkpoint saves them, so that a resumed
    # run logs the same means as an uninterrupted one.
    pending.append(metrics)
    log_now = step % config.log_every_steps == 0 or step == config.total_steps
    eval_now = step % config.eval_every_steps == 0 or step == config.total_steps
    stopping = runtime.STOP['signum'] is not None
    save_now = (step % config.checkpoint_every_steps == 0 or step == config.total_steps
                or stopping)
    wall_s = time.perf_counter() - start
    if log_now or eval_now or save_now:
      check_finite(runs, np.atleast_1d(jax.device_get(state.first_nonfinite_step)), step)
    if log_now:
      pending, logged = [], jax.device_get(pending)
    if save_now:
      pending = jax.device_get(pending)
      saved_pending = [{k: [np.asarray(v).dtype.str, np.asarray(v).tolist()]
                        for k, v in m.items()} for m in pending]
    for index, run in enumerate(runs):
      if run.failed:
        continue
      record = {}
      if log_now:
        record.update(_means([group.metrics_of(m, index) for m in logged]))
        record['train/steps_per_s'] = (step - start_step) / (time.perf_counter() - start)
      if eval_now:
        record.update(evaluator.evaluate(group.state_of(state, index), run.config, hooks))
        run.save_if_best(record, step, group.state_of(state, index))
      run.write(step, wall_s, record, is_main)
      if save_now:
        run.checkpointer.save(step, group.state_of(state, index), {
            'iterators': inputs.get_state(group.data_index(index)),
            'wall_s': run.previous_wall_s + wall_s, 'device_count': mesh.size,
            'pending': saved_pending})
      if index == 0:
        progress.update(step, record or None)
    if stopping:
      break
  for run in runs:
    run.close()
  if step < config.total_steps:   # Stopped by a signal, its checkpoint saved.
    signum = runtime.STOP['signum']
    raise runtime.Interrupted(
        signum, f'stopped by {signal.Signals(signum).name} at step {step} of '
                f'{config.total_steps}; the checkpoint at step {step} is saved in '
                f'{", ".join(run.workdir for run in runs)}: rerun the same command to resume')
  train_seconds = time.perf_counter() - start
  summaries = [None if run.failed else
               run.summary(group.state_of(state, index), step, start_step, train_seconds,
                           first_step_s, mesh.size, group.count, is_main)
               for index, run in enumerate(runs)]
  failed = [run for run in runs if run.failed]
  if failed:
    raise NonFiniteLossError('; '.join(run.failed for run in failed)
                             + (f' (the other {len(runs) - len(failed)} runs finished)'
                                if len(runs) > len(failed) else ''))
  return summaries


def _finished(configs: list[ml_collections.ConfigDict],
              workdirs: list[str]) -> list[dict[str, Any]] | None:
  """The summaries if every run is finished already (None if none is); refuses a group of which
  only some are."""
  summaries = [workdir_lib.read_summary(w) for w in workdirs]
  finished = [bool(s) and s.get('steps') == c.total_steps
              for s, c in zip(summaries, configs, strict=True)]
  if all(finished):
    for workdir, summary in zip(workdirs, summaries, strict=True):
      print(f'run in {workdir} already finished at step {summary["steps"]}; nothing to do '
            f'(its results are in {workdir_lib.SUMMARY_FILE})')
    return summaries
  if any(finished):
    done = [w for w, f in zip(workdirs, finished, strict=True) if f]
    raise UserError(f'some of the runs given to train together are finished ({", ".join(done)}); '
                    'give only the others')
  return None


def _keys(seed: int, mesh: Mesh) -> tuple[jax.Array, jax.Array]:
  """(init rng, train rng) of a run, `jax.random.split(jax.random.key(seed))`, computed eagerly
  (a jit with the seed static compiled once per seed, 0.1-0.2 s a run) and placed replicated
  on the mesh through a callback, so valid on meshes spanning several processes."""
  data = np.asarray(jax.random.key_data(jax.random.split(jax.random.key(seed))))
  replicated = parallel.replicated(mesh)
  return tuple(jax.random.wrap_key_data(
      jax.make_array_from_callback(part.shape, replicated, lambda index, part=part: part[index]))
      for part in data)


def _restore_or_init(runs: list[RunFiles], group: vectorized.SingleRun, program, inputs, hooks,
                     mesh: Mesh, is_main: bool) -> tuple[Any, int, list[dict[str, Any]]]:
  """(state, step, pending metrics): from the runs' latest checkpoints (all at one step), else
  freshly initialised with the hooks' passes before training."""
  abstract = abstract_with_shardings(program.abstract_state, program.state_sharding)
  restored = [run.checkpointer.restore_latest(abstract) for run in runs]
  latest = {r[0] if r else None for r in restored}
  if len(latest) > 1:
    raise UserError(f'the runs given to train together have checkpoints at different steps '
                    f'({[r[0] if r else None for r in restored]}); resume them one by one')
  latest = latest.pop()
  for run, r in zip(runs, restored, strict=True):
    if r:
      run.check_device_count(r[2], mesh.size)
  for run, r in zip(runs, restored, strict=True):
    run.resumed(latest, r[2] if r else None, is_main)
  if latest is None:
    init_rng, _ = group.keys([_keys(c.seed, mesh) for c in group.configs])
    state = group.init(init_rng)
    for hook in hooks:
      state = group.per_run(hook.before_training, state)
    return state, 0, []
  for index, (_, _, extra) in enumerate(restored):
    if index < inputs.count:
      inputs.set_state(index, extra['iterators'])
  print(f'resuming {", ".join(run.workdir for run in runs)} from the checkpoint at step {latest}')
  pending = [{k: np.asarray(value, dtype) for k, (dtype, value) in m.items()}
             for m in restored[0][2].get('pending', [])]
  return group.join([r[1] for r in restored]), latest, pending


def _means(metrics: list[dict[str, Any]]) -> dict[str, float]:
  """A run's mean of each metric over the steps logged."""
  return {key: float(np.mean([m[key] for m in metrics])) for key in metrics[0]}
