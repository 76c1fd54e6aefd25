"""Orbax checkpoints of the train state and the data-iterator state (current `ocp.args` API):
the writer the training loop keeps (`Checkpointer`) and the reader that `init_from` and the tests
use (`load_state`, `load_params`). Below `transfer` and `training`, which both use it.

Each checkpoint carries a digest of its state (per-leaf sums of the raw bits, computed on the
devices), checked on restore: a truncated or bit-flipped checkpoint is moved aside to
`checkpoints.corrupt/` with a warning and the previous kept one is used instead.
"""

import os
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from transfer_jax.errors import UserError

_UINT = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}


def _leaf_digest(x: jax.Array) -> jax.Array:
  """The sum (mod 2^32) of a leaf's raw bits: any single flipped bit changes it."""
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.uint8)
  bits = jax.lax.bitcast_convert_type(x, _UINT[x.dtype.itemsize])
  return jnp.sum(bits.astype(jnp.uint32), dtype=jnp.uint32)


_digest = jax.jit(lambda tree: [_leaf_digest(x) for x in jax.tree.leaves(tree)])


def state_digest(state: Any) -> list[int]:
  """One integer per leaf of `state` (the same on every process)."""
  return [int(np.asarray(d.addressable_data(0))) for d in _digest(state)]


class CorruptCheckpointError(RuntimeError):
  """A checkpoint that cannot be read or whose state does not match its digest."""


class Checkpointer:
  """Keeps the last `keep` checkpoints in `directory`, each holding `state` and `extra` (JSON)."""

  def __init__(self, directory: str, keep: int):
    self.directory, self.keep = os.path.abspath(directory), keep
    self._manager = self._open()

  def _open(self) -> ocp.CheckpointManager:
    # Temporary folders are what a kill during a save leaves; the workdir lock makes this
    # process the only writer, so they can go.
    options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True,
                                           cleanup_tmp_directories=True)
    return ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, extra: dict[str, Any]) -> None:
    extra = {**extra, 'digest': state_digest(state)}
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra)))

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
    """Restores onto `abstract_state` (ShapeDtypeStructs with shardings), keeping optax's tree;
    raises CorruptCheckpointError if it cannot be read or fails its digest."""
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), extra=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001 (orbax and tensorstore raise many kinds)
      if 'Structure mismatch' in str(e) or 'metadata_tree' in str(e):
        # Intact, but of another state layout: never moved aside nor trained over.
        raise UserError(
            f'the checkpoint at step {step} in {self.directory} holds a training state of another '
            'layout (written by another version of transfer_jax, or for another method or '
            'optimizer); it is left as it is: resume it with the version that wrote it (the '
            "git_commit in the run's summary.json) or train into a new --workdir") from None
      raise CorruptCheckpointError(f'{type(e).__name__}: {str(e).splitlines()[0][:200]}'
                                   if str(e) else type(e).__name__) from None
    digest = restored.extra.get('digest') if isinstance(restored.extra, dict) else None
    if digest is not None and digest != state_digest(restored.state):
      raise CorruptCheckpointError('its state does not match the digest saved with it')
    return restored.state, restored.extra

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict[str, Any]] | None:
    """(step, state, extra) of the newest checkpoint that reads back intact, None if none does.
    Corrupt ones are moved to `<directory>.corrupt/` with a warning."""
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        return (step, *self.restore(step, abstract_state))
      except CorruptCheckpointError as e:
        self._move_aside(step, str(e))
    return None

  def _move_aside(self, step: int, reason: str) -> None:
    aside = f'{self.directory}.corrupt'
    logging.warning('the checkpoint at step %d in %s is corrupt (%s): moved to %s; using the '
                    'previous one', step, self.directory, reason, aside)
    print(f'warning: the checkpoint at step {step} in {self.directory} is corrupt ({reason}); '
          f'moved to {aside}, resuming from the previous kept checkpoint')
    self._manager.close()
    if jax.process_index() == 0:
      os.makedirs(aside, exist_ok=True)
      target = os.path.join(aside, str(step))
      shutil.rmtree(target, ignore_errors=True)
      os.replace(os.path.join(self.directory, str(step)), target)
    self._manager = self._open()

  def read_extra(self, step: int) -> dict[str, Any]:
    """The JSON saved beside the state at `step`."""
    return self._manager.restore(step, args=ocp.args.Composite(extra=ocp.args.JsonRestore())).extra

  def read_best_value(self) -> float | None:
    """The metric value saved with the newest checkpoint here (best/), None if none is readable."""
    step = self.latest_step()
    if step is None:
      return None
    try:
      return self.read_extra(step)['value']
    except Exception as e:  # noqa: BLE001
      logging.warning('cannot read the best checkpoint in %s (%s); it will be replaced',
                      self.directory, e)
      return None

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def abstract_with_shardings(abstract_tree: Any, shardings: Any) -> Any:
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      abstract_tree, shardings)


def load_state(directory: str, step: int | None = None) -> Any:
  """The train state saved in a checkpoint directory at `step` (default: the latest), as a tree
  of arrays on this process's first device, whatever the device layout that saved it."""
  manager = ocp.CheckpointManager(
      os.path.abspath(directory),
      item_handlers={'state': ocp.StandardCheckpointHandler(),
                     'extra': ocp.JsonCheckpointHandler()})
  available = manager.all_steps()
  step = manager.latest_step() if step is None else step
  if step is None or step not in available:
    raise UserError(f'no checkpoint at step {step} in {directory}; it has steps {available}')
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        manager.item_metadata(step)['state'])
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  manager.close()
  return restored.state


def load_params(workdir: str, step: int | None = None) -> Any:
  """The parameters saved in `workdir/checkpoints` at `step` (default: the latest)."""
  return load_state(os.path.join(workdir, 'checkpoints'), step)['params']
