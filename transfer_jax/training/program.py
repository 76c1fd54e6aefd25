"""The compiled program of a run: model, optimizer, sharded initial state, jitted steps.

`build_program` is shared by the training loop and the benchmarks, so a benchmark measures
exactly the step that trains. Pretrained weights (`config.init_from`) are merged into the fresh
initialisation inside the jitted init.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from transfer_jax.errors import UserError
from transfer_jax.models import TransferModel, build_model
from transfer_jax.objectives.methods import Method, get_method
from transfer_jax.objectives.regularizers import Regularizer, get_regularizer
from transfer_jax.training import parallel
from transfer_jax.training.optimizer import (
  build_group_optimizers,
  build_optimizer,
  group_params,
  hyperparams_of,
  with_hyperparams,
)
from transfer_jax.training.state import TrainState
from transfer_jax.training.step import make_train_step, step_inputs, streams_used
from transfer_jax.transfer.pretrained import Pretrained, load_pretrained, merge


@dataclasses.dataclass(frozen=True)
class Program:
  """One run's compiled pieces. The step and the initialisation exist in two forms: pure
  (`step_fn`, `init_fn`: what a vectorized group vmaps) and jitted with shardings (`step`,
  `init`); `train_step` / `init_state` call the jitted ones with this config's values."""
  config: ml_collections.ConfigDict
  model: TransferModel
  method: Method
  regularizer: Regularizer
  streams: tuple[str, ...]      # Batch streams the step consumes.
  pretrained: Pretrained | None  # What init_from loaded (None: fresh initialisation).
  abstract_state: TrainState    # ShapeDtypeStructs (from jax.eval_shape).
  state_sharding: Any           # Replicated over the mesh, leaf by leaf.
  batch_sharding: Any           # Split over the mesh's data axis.
  step_fn: Callable   # (state, batch, rng, inputs) -> (state, metrics); inputs: step_inputs.
  init_fn: Callable   # (rng, hyperparams) -> state; hyperparams: optimizer.HYPERPARAMS values.
  step: Callable      # step_fn jitted, the state donated.
  init: Callable      # init_fn jitted.
  inputs: dict[str, jax.Array]       # This config's step inputs (replicated).
  hyperparams: dict[str, jax.Array]  # This config's optimizer hyperparameters.

  def init_state(self, rng: jax.Array) -> TrainState:
    return self.init(rng, self.hyperparams)

  def train_step(self, state: TrainState, batch: dict[str, Any],
                 rng: jax.Array) -> tuple[TrainState, dict]:
    return self.step(state, batch, rng, self.inputs)


def build_program(config: ml_collections.ConfigDict, mesh: Mesh, input_shape: tuple[int, ...],
                  num_classes: int, task_classes: dict[str, int] | None = None,
                  decay: bool | None = None) -> Program:
  """Builds the model and optimizer from `config` and compiles-on-first-call the steps;
  `task_classes`: the number of classes of each task head (config.tasks.*.head); `decay`:
  whether the step applies weight decay (default: config.optimizer.weight_decay is non-zero; a
  vectorized group whose runs differ in weight decay sets it)."""
  method = get_method(config.method.name)
  regularizer = get_regularizer(config.regularizer.name)
  model = build_model(config.model, num_classes, method.heads, task_classes)
  example = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
  discriminator_input = None
  if method.discriminator_input is not None:
    discriminator_input = functools.partial(method.discriminator_input, config=config.method)

  def init_variables(rng):
    return model.init({'params': rng, 'dropout': rng}, example, method=TransferModel.init_all,
                      discriminator_input=discriminator_input)

  abstract_variables = jax.eval_shape(init_variables, jax.random.key(0))
  batch_norm = config.model.batch_norm
  if batch_norm != 'train' and 'batch_stats' not in abstract_variables:
    raise UserError(f'config.model.batch_norm={batch_norm!r} but this model has no BatchNorm '
                    f'layer (backbone {config.model.backbone!r}); use a backbone with BatchNorm '
                    '(e.g. resnet50, or mlp with model.backbone_batch_norm=True) or leave '
                    "model.batch_norm='train'")
  pretrained = load_pretrained(config.init_from, abstract_variables)
  abstract_params = abstract_variables['params']
  transferred = (pretrained.loaded_mask(abstract_params) if pretrained is not None
                 else jax.tree.map(lambda _: False, abstract_params))
  optimizer = build_optimizer(config.optimizer, config.total_steps, abstract_params, decay=decay)
  group_optimizers = None
  if method.phases:  # One optimizer state per parameter group (a multi-phase method).
    group_optimizers = build_group_optimizers(config.optimizer, config.total_steps,
                                              abstract_params, method.param_groups,
                                              config.method.group_momentum, decay=decay)

  def init_opt_state(params, hyperparams):
    if not method.phases:
      return with_hyperparams(optimizer.init(params), hyperparams)
    return {group: with_hyperparams(group_optimizers[group].init(group_params(params, modules)),
                                    hyperparams)
            for group, modules in method.param_groups.items()}

  def init_state(rng, hyperparams: dict[str, jax.Array], loaded: dict[str, jax.Array]
                 ) -> TrainState:
    variables = merge(init_variables(rng), loaded)
    params = variables.pop('params')
    anchors = {}
    if regularizer.needs_reference:
      anchors['params'] = params  # theta_S: the transferred values the run starts from.
    if method.needs_source_model:  # The transferred model, kept frozen (ADDA's source encoder).
      anchors['source_variables'] = {'params': params, **variables}
    if regularizer.needs_fisher:
      anchors['fisher'] = jax.tree.map(jnp.zeros_like, params)  # Estimated before step 0.
    if method.needs_centroids:  # Class centroids of target features (SHOT), set before step 0.
      features = model.apply({'params': params, **variables}, example)['features']
      anchors['centroids'] = jnp.zeros((num_classes, features.shape[-1] + 1), jnp.float32)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=dict(variables),
                      opt_state=init_opt_state(params, hyperparams),
                      first_nonfinite_step=jnp.full((), -1, jnp.int32), anchors=anchors)

  loaded = pretrained.values if pretrained is not None else {}
  hyperparams = hyperparams_of(config.optimizer)
  abstract_state = jax.eval_shape(init_state, jax.random.key(0), hyperparams, loaded)
  replicated = parallel.replicated(mesh)
  state_sharding = jax.tree.map(lambda _: replicated, abstract_state)
  batch_sharding = parallel.batch_sharding(mesh)
  step_fn = make_train_step(model, method, regularizer, transferred, config, optimizer,
                            group_optimizers)
  # The pure form closes over the loaded values; the jitted form takes them as an argument
  # (large pretrained weights must not become constants of the compiled program).
  init_fn = functools.partial(_init_with, init_state, loaded)
  jitted_init = jax.jit(init_state, out_shardings=state_sharding)
  return Program(
      config=config, model=model, method=method, regularizer=regularizer,
      streams=streams_used(config, method), pretrained=pretrained,
      abstract_state=abstract_state, state_sharding=state_sharding,
      batch_sharding=batch_sharding, step_fn=step_fn, init_fn=init_fn,
      step=jax.jit(step_fn, in_shardings=(state_sharding, batch_sharding, replicated, replicated),
                   out_shardings=(state_sharding, replicated), donate_argnums=(0,)),
      init=functools.partial(_init_with, jitted_init, loaded),
      inputs=jax.device_put(step_inputs(config), replicated),
      hyperparams=jax.device_put(hyperparams, replicated))


def _init_with(init_state: Callable, loaded: dict[str, jax.Array], rng: jax.Array,
               hyperparams: dict[str, jax.Array]) -> TrainState:
  return init_state(rng, hyperparams, loaded)
