"""The runs one program trains: a single run (`SingleRun`, the program's jitted step) or a
vectorized group (`VectorizedRuns`): runs that differ only in their seed, the step's input
`method.trade_off` and the optimizer's hyperparameters (`optimizer.learning_rate`,
`optimizer.weight_decay`, held in the optimizer state) train together in one jit-compiled step,
over a leading run axis of the state, the rngs, the step inputs and (unless every run has the
same seed, hence the same data order) the batch: `jax.vmap`ped, or on CPU for convolutional
nets unrolled run by run in the one program (`run_axis_mode`). The loop sees one interface.

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
import numpy as np

from transfer_jax.errors import UserError
from transfer_jax.training import parallel
from transfer_jax.training import workdir as workdir_lib
from transfer_jax.training.optimizer import hyperparams_of
from transfer_jax.training.step import step_inputs

# The config keys runs of a group may differ in.
VECTOR_KEYS = ('seed', 'method.trade_off', 'optimizer.learning_rate', 'optimizer.weight_decay')


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


def stack(trees: Sequence[Any]) -> Any:
  """Trees of the same structure -> one tree with a leading run axis."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree: Any, index: int) -> Any:
  """Run `index` of a tree with a leading run axis."""
  return jax.tree.map(lambda leaf: leaf[index], tree)


def _stacked(values: Sequence[dict[str, jax.Array]], mesh: jax.sharding.Mesh) -> Any:
  return jax.device_put(stack(values), parallel.replicated(mesh))


class SingleRun:
  """One run, trained by the program's jitted step."""

  def __init__(self, program: Any, configs: Sequence[ml_collections.ConfigDict],
               mesh: jax.sharding.Mesh):
    self.program, self.configs, self.count = program, list(configs), 1
    self.stacked_batch = False   # The batch has no run axis.
    self.batch_configs = self.configs  # Whose data orders the batches follow.

  def keys(self, keys: Sequence[tuple[jax.Array, jax.Array]]) -> tuple[jax.Array, jax.Array]:
    """(init rng, train rng) from each run's pair."""
    return keys[0]

  def init(self, rng: jax.Array) -> Any:
    return self.program.init_state(rng)

  def step(self, state: Any, batch: dict[str, Any], rng: jax.Array) -> tuple[Any, dict]:
    return self.program.train_step(state, batch, rng)

  def state_of(self, state: Any, index: int) -> Any:
    return state

  def join(self, states: Sequence[Any]) -> Any:
    return states[0]

  def metrics_of(self, metrics: dict[str, Any], index: int) -> dict[str, Any]:
    return metrics

  def data_index(self, index: int) -> int:
    """Which data order of the batches run `index` reads."""
    return 0

  def per_run(self, fn: Callable, state: Any) -> Any:
    """`fn(state, config)` applied to each run's state."""
    return self.join([fn(self.state_of(state, i), c) for i, c in enumerate(self.configs)])


# Backbones without convolutions: their groups are vmapped on every backend.
DENSE_BACKBONES = ('mlp', 'growable_mlp')


def run_axis_mode(config: ml_collections.ConfigDict, backend: str | None = None) -> str:
  """How a group steps its runs: 'vmap' (one batched program over the run axis) or 'unroll'
  (the runs' steps one after another inside the one compiled step). XLA:CPU runs a vmapped
  convolution (a weight set per run) as a grouped convolution, slower than the runs' plain ones
  (8 DANN-LeNet runs: 17 against 40 run-steps/s; unrolled 28 against 29), so convolutional
  groups unroll on CPU (`jax.lax.map`'s loop was slower still: 0.7 run-steps/s); the dense nets
  and every accelerator vmap. Both keep the group's one data read, one dispatch and one
  program, and equal the one-by-one runs up to float reduction order."""
  backend = backend or jax.default_backend()
  return ('unroll' if backend == 'cpu' and config.model.backbone not in DENSE_BACKBONES
          else 'vmap')


def over_runs(step_fn: Callable, shared_batch: bool, mode: str) -> Callable:
  """`step_fn` (state, batch, rng, inputs) over a leading run axis of the state, the rngs,
  the inputs and (unless `shared_batch`) the batch, by `mode` ('vmap' or 'unroll')."""
  if mode == 'vmap':
    return jax.vmap(step_fn, in_axes=(0, None if shared_batch else 0, 0, 0))
  if mode != 'unroll':
    raise ValueError(f"unknown run-axis mode {mode!r}; choose 'vmap' or 'unroll'")

  def unrolled(state, batch, rng, inputs):
    count = jax.tree.leaves(state)[0].shape[0]
    outs = [step_fn(unstack(state, i), batch if shared_batch else unstack(batch, i), rng[i],
                    unstack(inputs, i)) for i in range(count)]
    return stack([out[0] for out in outs]), stack([out[1] for out in outs])
  return unrolled


class VectorizedRuns(SingleRun):
  """Several runs in one program, over a run axis (vmapped or unrolled: `run_axis_mode`)."""

  def __init__(self, program: Any, configs: Sequence[ml_collections.ConfigDict],
               mesh: jax.sharding.Mesh):
    super().__init__(program, configs, mesh)
    self.count = len(self.configs)
    # Runs with one seed read one data order: the batch is loaded once and shared.
    shared = len({c.seed for c in self.configs}) == 1
    self.stacked_batch, self.batch_configs = not shared, self.configs[:1] if shared else configs
    replicated = parallel.replicated(mesh)
    batch_sharding = (parallel.batch_sharding(mesh) if shared
                      else parallel.batch_sharding(mesh, run_axis=True))
    self.mode = run_axis_mode(self.configs[0])
    self._step = jax.jit(over_runs(program.step_fn, shared, self.mode),
                         in_shardings=(replicated, batch_sharding, replicated, replicated),
                         out_shardings=(replicated, replicated), donate_argnums=(0,))
    self._init = jax.jit(jax.vmap(program.init_fn), out_shardings=replicated)
    # Run i's state: one compiled gather (an eager slice per leaf cost ~1 ms each, the largest
    # part of an evaluation of a small net).
    self._take = jax.jit(unstack, in_shardings=(replicated, None),
                         out_shardings=program.state_sharding)
    self.inputs = _stacked([step_inputs(c) for c in self.configs], mesh)
    self.hyperparams = _stacked([hyperparams_of(c.optimizer) for c in self.configs], mesh)
    self.shared = shared

  def keys(self, keys: Sequence[tuple[jax.Array, jax.Array]]) -> tuple[jax.Array, jax.Array]:
    return tuple(stack(k) for k in zip(*keys, strict=True))

  def init(self, rng: jax.Array) -> Any:
    return self._init(rng, self.hyperparams)

  def step(self, state: Any, batch: dict[str, Any], rng: jax.Array) -> tuple[Any, dict]:
    return self._step(state, batch, rng, self.inputs)

  def state_of(self, state: Any, index: int) -> Any:
    return self._take(state, np.int32(index))

  def join(self, states: Sequence[Any]) -> Any:
    return stack(states)

  def metrics_of(self, metrics: dict[str, Any], index: int) -> dict[str, Any]:
    return {key: value[index] for key, value in metrics.items()}

  def data_index(self, index: int) -> int:
    return 0 if self.shared else index


def runs_of(program: Any, configs: Sequence[ml_collections.ConfigDict],
            mesh: jax.sharding.Mesh) -> SingleRun:
  """The driver of `configs` (checked by `check_group`) on `program`."""
  return (SingleRun if len(configs) == 1 else VectorizedRuns)(program, configs, mesh)


def group_decay(configs: Sequence[ml_collections.ConfigDict]) -> bool | None:
  """Whether a group's step applies weight decay: if any run's is non-zero (None: one run, its
  config decides)."""
  return any(c.optimizer.weight_decay for c in configs) if len(configs) > 1 else None


def group_key(config: str, arg: str, overrides: dict[str, Any]) -> str:
  """What runs of a sweep share when they can be trained together: everything but the
  VECTOR_KEYS overrides (a sweep yields those per run)."""
  rest = sorted((k, str(v)) for k, v in overrides.items() if k not in VECTOR_KEYS)
  return repr((config, arg, rest))
