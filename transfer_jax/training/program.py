"""The compiled program of a run: model, optimizer, sharded initial state, jitted steps.

`build_program` is shared by the training loop and the benchmarks, so a benchmark measures
exactly the step that trains.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from transfer_jax.models import TransferModel, build_model
from transfer_jax.objectives.methods import get_method
from transfer_jax.training import parallel
from transfer_jax.training.optimizer import build_optimizer
from transfer_jax.training.state import TrainState
from transfer_jax.training.step import make_eval_step, make_train_step


@dataclasses.dataclass(frozen=True)
class Program:
  model: TransferModel
  optimizer: optax.GradientTransformation
  abstract_state: TrainState    # ShapeDtypeStructs (from jax.eval_shape).
  state_sharding: Any           # Replicated over the mesh, leaf by leaf.
  init_state: Callable[[jax.Array], TrainState]      # Jitted, with output shardings.
  train_step: Callable[..., tuple[TrainState, dict]]  # Jitted (state, batch, rng), state donated.
  eval_step: Callable[..., dict]                      # Jitted (state, batch) -> sums.


def build_program(config: ml_collections.ConfigDict, mesh: Mesh, input_shape: tuple[int, ...],
                  num_classes: int) -> Program:
  """Builds the model and optimizer from `config` and compiles-on-first-call the steps."""
  method = get_method(config.method.name)
  model = build_model(config.model, num_classes, method.needs_discriminator)
  example = jnp.zeros((1,) + tuple(input_shape), jnp.float32)

  def init_variables(rng):
    return model.init({'params': rng, 'dropout': rng}, example, method=TransferModel.init_all)

  abstract_params = jax.eval_shape(init_variables, jax.random.key(0))['params']
  optimizer, schedule = build_optimizer(config.optimizer, config.total_steps, abstract_params)

  def init_state(rng) -> TrainState:
    variables = init_variables(rng)
    params = variables.pop('params')
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=dict(variables),
                      opt_state=optimizer.init(params),
                      first_nonfinite_step=jnp.full((), -1, jnp.int32))

  abstract_state = jax.eval_shape(init_state, jax.random.key(0))
  replicated = parallel.replicated(mesh)
  state_sharding = jax.tree.map(lambda _: replicated, abstract_state)
  batch_sharding = parallel.batch_sharding(mesh)
  return Program(
      model=model, optimizer=optimizer, abstract_state=abstract_state,
      state_sharding=state_sharding,
      init_state=jax.jit(init_state, out_shardings=state_sharding),
      train_step=jax.jit(make_train_step(model, optimizer, schedule, method, config),
                         in_shardings=(state_sharding, batch_sharding, replicated),
                         out_shardings=(state_sharding, replicated), donate_argnums=(0,)),
      eval_step=jax.jit(make_eval_step(model), in_shardings=(state_sharding, batch_sharding),
                        out_shardings=replicated))
