"""Data parallelism over a 1-D device mesh with global-batch semantics.

Parameters are replicated, batches are sharded on the `data` axis: the jitted step then computes
the same numbers on 1 or N devices (up to float reduction order).
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from transfer_jax.errors import UserError

DATA_AXIS = 'data'


def make_mesh(num_devices: int = 0) -> Mesh:
  """A mesh over all devices (`num_devices=0`) or over the first `num_devices` of them."""
  devices = jax.devices()
  if num_devices:
    if num_devices > len(devices):
      raise UserError(f'config.num_devices={num_devices} but only {len(devices)} devices are '
                       'visible; use 0 for all of them')
    if jax.process_count() > 1:
      raise UserError('config.num_devices must be 0 (all devices) in a multi-process run')
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh, run_axis: bool = False) -> NamedSharding:
  """Batches split on their example axis; `run_axis`: after a leading axis of vectorized runs."""
  return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS) if run_axis
                       else PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def check_divisible(global_batch_size: int, mesh: Mesh, what: str) -> None:
  """A global batch must split evenly over the devices of the mesh."""
  if global_batch_size % mesh.size:
    raise UserError(f'{what}={global_batch_size} is not divisible by the {mesh.size} devices; '
                     f'use a multiple of {mesh.size} (the batch size is global, over all devices)')


def to_global(local_batch, mesh: Mesh, run_axis: bool = False):
  """Assembles each process's slice of a batch into global arrays sharded on the data axis
  (`run_axis`: the batch has a leading axis of vectorized runs)."""
  sharding = batch_sharding(mesh, run_axis)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
