"""Orbax checkpoints of the train state and the data-iterator state (current `ocp.args` API)."""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from transfer_jax.errors import UserError


class Checkpointer:
  """Keeps the last `keep` checkpoints in `directory`, each holding `state` and `extra` (JSON)."""

  def __init__(self, directory: str, keep: int):
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, extra: dict[str, Any]) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), extra=ocp.args.JsonSave(extra)))

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
    """Restores onto `abstract_state` (ShapeDtypeStructs with shardings), keeping optax's tree."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), extra=ocp.args.JsonRestore()))
    return restored.state, restored.extra

  def read_extra(self, step: int) -> dict[str, Any]:
    """The JSON saved beside the state at `step`."""
    return self._manager.restore(step, args=ocp.args.Composite(extra=ocp.args.JsonRestore())).extra

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
