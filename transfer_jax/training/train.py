"""The one training loop: data -> jitted data-parallel step -> eval, logs, checkpoints -> workdir.

`train_and_evaluate(config, workdir)` is what `main.py`, tests and notebooks call. A method only
changes the loss (see `transfer_jax.objectives.methods`); nothing here is method-specific.
"""

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh

from transfer_jax import data as data_lib
from transfer_jax.errors import UserError
from transfer_jax.training import parallel, writers
from transfer_jax.training import workdir as workdir_lib
from transfer_jax.training.checkpoint import Checkpointer, abstract_with_shardings
from transfer_jax.training.program import build_program
from transfer_jax.training.state import TrainState
from transfer_jax.transfer.params import count_params


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or Inf; the run stopped without saving a checkpoint after it."""


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       mesh: Mesh | None = None) -> dict[str, Any]:
  """Trains (or resumes) the run `config` in `workdir` and returns its summary."""
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  if is_main:
    workdir_lib.check_or_write_config(config, workdir)
  summary = workdir_lib.read_summary(workdir)
  if summary and summary.get('steps') == config.total_steps:
    print(f'run in {workdir} already finished at step {summary["steps"]}; nothing to do '
          f'(its results are in {workdir_lib.SUMMARY_FILE})')
    return summary

  mesh = mesh or parallel.make_mesh(config.num_devices)
  parallel.check_divisible(config.batch_size, mesh, 'config.batch_size')
  parallel.check_divisible(config.eval_batch_size, mesh, 'config.eval_batch_size')
  domains = {role: data_lib.load_domain(config.data[role], config.data, role)
             for role in ('source', 'target')}
  data_lib.check_compatible(domains['source'], domains['target'])
  for split_name in config.eval_splits:
    role, _, split = split_name.partition('/')
    if split == 'train':
      raise UserError(f"config.eval_splits names {split_name!r}: training metrics already use "
                      "that name; evaluate 'test', 'val', 'oracle_val' or 'labeled' splits")
    if role not in domains or split not in domains[role].splits:
      raise UserError(f'config.eval_splits names {split_name!r}, but the {role} domain has splits '
                      f'{sorted(domains.get(role, domains["source"]).splits)}')

  program = build_program(config, mesh, domains['source'].input_shape,
                          domains['source'].num_classes)
  # Made by a jitted function with replicated outputs: valid on meshes spanning several processes.
  replicated = parallel.replicated(mesh)
  init_rng, train_rng = jax.jit(lambda: tuple(jax.random.split(jax.random.key(config.seed))),
                                out_shardings=(replicated, replicated))()

  process = dict(process_index=jax.process_index(), process_count=jax.process_count())
  iterators = {
      role: data_lib.train_iterator(
          domains[role].splits['train'],
          # Target labels never enter training: the target stream carries inputs only.
          domains[role].batch_fn if role == 'source' else domains[role].unlabeled_fn,
          config.batch_size, config.seed, stream=stream, **process)
      for stream, role in enumerate(('source', 'target'))}

  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'), config.keep_checkpoints)
  metrics_log = writers.MetricsLog(os.path.join(workdir, workdir_lib.METRICS_FILE))
  previous_wall_s = 0.0
  latest = checkpointer.latest_step()
  if latest is not None:
    state, extra = checkpointer.restore(
        latest, abstract_with_shardings(program.abstract_state, program.state_sharding))
    for name, iterator in iterators.items():
      iterator.set_state(extra['iterators'][name])
    previous_wall_s = extra['wall_s']
    if is_main:
      metrics_log.truncate_after(latest)
    print(f'resuming {workdir} from its checkpoint at step {latest}')
  else:
    state = program.init_state(init_rng)
  train_step, eval_step = program.train_step, program.eval_step

  def evaluate(state: TrainState) -> dict[str, float]:
    results = {}
    for split_name in config.eval_splits:
      role, split = split_name.split('/')
      totals = None
      for batch in data_lib.eval_batches(domains[role].splits[split], domains[role].batch_fn,
                                         config.eval_batch_size, **process):
        sums = eval_step(state, parallel.to_global(batch, mesh))
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
      totals = jax.device_get(totals)
      results[f'{split_name}/accuracy'] = float(totals['correct'] / totals['count'])
      results[f'{split_name}/loss'] = float(totals['loss_sum'] / totals['count'])
    return results

  writer = writers.create_writer(workdir, is_main)
  step = latest or 0
  if step == 0 and is_main:
    writer.write_hparams(workdir_lib.config_to_dict(config))
  progress = writers.Progress(config.total_steps, step)
  start = time.perf_counter()
  start_step = step
  pending: list[dict[str, jax.Array]] = []
  while step < config.total_steps:
    local_batch = {name: next(iterator) for name, iterator in iterators.items()}
    state, metrics = train_step(state, parallel.to_global(local_batch, mesh), train_rng)
    step += 1
    pending.append(metrics)
    log_now = step % config.log_every_steps == 0 or step == config.total_steps
    eval_now = step % config.eval_every_steps == 0 or step == config.total_steps
    save_now = step % config.checkpoint_every_steps == 0 or step == config.total_steps
    wall_s = previous_wall_s + time.perf_counter() - start
    if log_now or eval_now or save_now:
      bad_step = int(state.first_nonfinite_step)
      if bad_step >= 0:
        checkpointer.wait()
        good = checkpointer.latest_step()
        kept = (f'the last good checkpoint (step {good}) is kept in {workdir}/checkpoints'
                if good is not None else 'no checkpoint had been saved before it')
        raise NonFiniteLossError(
            f'the loss became NaN or Inf at step {bad_step} (noticed at step {step}); {kept}; '
            'lower config.optimizer.learning_rate or check the data')
    record = {}
    if log_now:
      record.update(_mean(jax.device_get(pending)))
      record['train/steps_per_s'] = (step - start_step) / (time.perf_counter() - start)
      pending = []
    if eval_now:
      record.update(evaluate(state))
    if record and is_main:
      metrics_log.write(step, wall_s, record)
      writer.write_scalars(step, record)
    if save_now:
      extra = {'iterators': {n: it.get_state() for n, it in iterators.items()}, 'wall_s': wall_s}
      checkpointer.save(step, state, extra)
    progress.update(step, record or None)
  checkpointer.wait()
  checkpointer.close()
  writer.flush()

  train_seconds = time.perf_counter() - start
  final, best = workdir_lib.final_and_best(metrics_log.read() if is_main else [])
  summary = {
      'steps': step,
      'wall_s': round(previous_wall_s + train_seconds, 3),
      'examples_per_s': round(2 * config.batch_size * (step - start_step) / train_seconds, 1)
                        if step > start_step else None,
      'final': final,
      'best': best,
      'param_count': count_params(state.params),
      'device_count': mesh.size,
      'process_count': jax.process_count(),
      'jax_version': jax.__version__,
      'git_commit': workdir_lib.git_commit(),
  }
  if is_main:
    workdir_lib.write_summary(workdir, summary)
    logging.info('finished %s: %s', workdir, final)
  return summary


def _mean(metrics: list[dict[str, Any]]) -> dict[str, float]:
  return {key: float(np.mean([m[key] for m in metrics])) for key in metrics[0]}
