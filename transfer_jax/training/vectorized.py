"""Vectorized runs: runs that differ only in their seed and the step's hyperparameter arguments
(method.trade_off, optimizer.learning_rate, optimizer.weight_decay) train together in one
jit-compiled step, `jax.vmap`ped over a leading run axis of the state, the rngs, the
hyperparameters and (unless every run has the same seed, hence the same data order) the batch.

Each run keeps its own data order, initialisation and dropout randomness, workdir, checkpoints,
metrics and summary: the loop (`train.train_runs`) leaves every workdir as the run alone would
have left it, and the numbers equal those of the one-by-one runs up to float reduction order.
The sweep groups runs with `--vectorize K`; `python -m transfer_jax.bench.vectorized` measures
the speed-up.
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from transfer_jax.errors import UserError
from transfer_jax.training import parallel
from transfer_jax.training import workdir as workdir_lib
from transfer_jax.training.step import HPARAMS

VECTOR_KEYS = ('seed', *HPARAMS.values())


def differing_keys(configs: Sequence[ml_collections.ConfigDict]) -> list[str]:
  """The dotted config keys on which some config differs from the first."""
  first = workdir_lib.config_to_dict(configs[0])
  return sorted({key for c in configs[1:]
                 for key in workdir_lib.differences(first, workdir_lib.config_to_dict(c))})


def check_group(configs: Sequence[ml_collections.ConfigDict]) -> None:
  """Refuses runs that cannot share one vectorized program."""
  if not configs:
    raise UserError('no runs to train: give at least one config')
  others = [k for k in differing_keys(configs) if k not in VECTOR_KEYS]
  if others:
    raise UserError(f'runs trained together may differ only in {", ".join(VECTOR_KEYS)}; these '
                    f'differ in {", ".join(others[:5])}: train them separately')


def stacked_hparams(configs: Sequence[ml_collections.ConfigDict],
                    mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Each HPARAMS value of every run, stacked on the run axis, replicated over the mesh."""
  from transfer_jax.training.step import hparams_of
  values = [hparams_of(c) for c in configs]
  return jax.device_put(jax.tree.map(lambda *v: jnp.stack(v), *values),
                        parallel.replicated(mesh))


def stack(trees: Sequence[Any]) -> Any:
  """Trees of the same structure -> one tree with a leading run axis."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree: Any, index: int) -> Any:
  """Run `index` of a tree with a leading run axis."""
  return jax.tree.map(lambda leaf: leaf[index], tree)


def vectorize(program: Any, mesh: jax.sharding.Mesh,
              shared_batch: bool) -> tuple[Callable, Callable]:
  """The jitted initialisation `rngs -> states` and step `(states, batch, rngs, hparams) ->
  (states, metrics)` of `program`, vmapped over the run axis. `shared_batch`: every run reads
  the same batch (runs with one seed), passed once instead of stacked."""
  replicated = parallel.replicated(mesh)
  batch_sharding = (parallel.batch_sharding(mesh) if shared_batch
                    else parallel.batch_sharding(mesh, run_axis=True))
  step = jax.jit(jax.vmap(program.step_fn, in_axes=(0, None if shared_batch else 0, 0, 0)),
                 in_shardings=(replicated, batch_sharding, replicated, replicated),
                 out_shardings=(replicated, replicated), donate_argnums=(0,))
  init = jax.jit(jax.vmap(program.init_fn), out_shardings=replicated)
  return init, step


def group_key(config: str, arg: str, overrides: dict[str, Any]) -> str:
  """What runs of a sweep share when they can be trained together: everything but the
  VECTOR_KEYS overrides (a sweep yields those per run)."""
  rest = sorted((k, str(v)) for k, v in overrides.items() if k not in VECTOR_KEYS)
  return repr((config, arg, rest))
