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
import optax
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
)
from transfer_jax.training.state import TrainState
from transfer_jax.training.step import (
  hparams_of,
  make_centroid_step,
  make_eval_step,
  make_fisher_step,
  make_train_step,
  streams_used,
)
from transfer_jax.transfer.pretrained import Pretrained, load_pretrained, merge


@dataclasses.dataclass(frozen=True)
class Program:
  model: TransferModel
  method: Method
  regularizer: Regularizer
  optimizer: optax.GradientTransformation
  streams: tuple[str, ...]      # Batch streams the step consumes.
  pretrained: Pretrained | None  # What init_from loaded (None: fresh initialisation).
  abstract_state: TrainState    # ShapeDtypeStructs (from jax.eval_shape).
  state_sharding: Any           # Replicated over the mesh, leaf by leaf.
  init_state: Callable[[jax.Array], TrainState]      # Jitted, with output shardings.
  train_step: Callable[..., tuple[TrainState, dict]]  # Jitted (state, batch, rng), state donated.
  hparams: dict[str, jax.Array]  # The config's HPARAMS values, which train_step passes on.
  jitted_step: Callable  # The jitted step (state, batch, rng, hparams) that train_step calls.
  step_fn: Callable   # The unjitted step (state, batch, rng, hparams), for vectorized runs.
  init_fn: Callable   # The unjitted initialisation rng -> state.
  eval_step: Callable[..., dict]                      # Jitted (state, batch) -> sums.
  fisher_step: Callable[..., Any]                     # Jitted (state, batch) -> squared grads.
  reset_batch_stats: Callable[..., TrainState]        # Jitted: BatchNorm means 0, variances 1.
  adabn_step: Callable[..., TrainState]               # Jitted (state, batch): update BN stats.
  centroid_step: Callable[..., dict]                  # Jitted (state, batch, centroids) -> sums.
  predict_step: Callable[..., dict]                   # Jitted (state, batch) -> features, logits.
  set_anchor: Callable[..., TrainState]               # Jitted (state, name, value) -> state.


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
  batch_norm = config.model.get('batch_norm', 'train')
  if batch_norm != 'train' and 'batch_stats' not in abstract_variables:
    raise UserError(f'config.model.batch_norm={batch_norm!r} but this model has no BatchNorm '
                    f'layer (backbone {config.model.backbone!r}); use a backbone with BatchNorm '
                    '(e.g. resnet50, or mlp with model.backbone_batch_norm=True) or leave '
                    "model.batch_norm='train'")
  pretrained = load_pretrained(config.init_from, abstract_variables)
  abstract_params = abstract_variables['params']
  transferred = (pretrained.loaded_mask(abstract_params) if pretrained is not None
                 else jax.tree.map(lambda _: False, abstract_params))
  optimizer, _ = build_optimizer(config.optimizer, config.total_steps, abstract_params,
                                 decay=decay)
  if method.phases:  # One optimizer state per parameter group (a multi-phase method).
    group_optimizers = build_group_optimizers(config.optimizer, config.total_steps,
                                              abstract_params, method.param_groups,
                                              config.method.group_momentum, decay=decay)

  def init_opt_state(params):
    if not method.phases:
      return optimizer.init(params)
    return {group: group_optimizers[group].init(group_params(params, modules))
            for group, modules in method.param_groups.items()}

  def init_state(rng, loaded: dict[str, jax.Array]) -> TrainState:
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
                      opt_state=init_opt_state(params),
                      first_nonfinite_step=jnp.full((), -1, jnp.int32), anchors=anchors)

  loaded = pretrained.values if pretrained is not None else {}
  abstract_state = jax.eval_shape(init_state, jax.random.key(0), loaded)
  replicated = parallel.replicated(mesh)
  state_sharding = jax.tree.map(lambda _: replicated, abstract_state)
  batch_sharding = parallel.batch_sharding(mesh)
  jitted_init = jax.jit(init_state, out_shardings=state_sharding)

  def set_anchor(state: TrainState, name: str, value: Any) -> TrainState:
    return state.replace(anchors={**state.anchors, name: value})

  def reset_batch_stats(state: TrainState) -> TrainState:
    def reset(path, leaf):
      return jnp.ones_like(leaf) if str(path[-1].key) == 'var' else jnp.zeros_like(leaf)
    stats = jax.tree_util.tree_map_with_path(reset, state.model_state.get('batch_stats', {}))
    return state.replace(model_state={**state.model_state, 'batch_stats': stats})

  def adabn_step(state: TrainState, batch: dict[str, Any]) -> TrainState:
    """One forward pass in training mode: BatchNorm moves its statistics towards the batch's."""
    variables = {'params': state.params, **state.model_state}
    _, updated = model.apply(variables, batch['input'], train=True, mutable=['batch_stats'],
                             rngs={'dropout': jax.random.key(0)})
    return state.replace(model_state={**state.model_state, **updated})

  step_fn = make_train_step(model, method, regularizer, transferred, config, decay)
  jitted_step = jax.jit(step_fn, in_shardings=(state_sharding, batch_sharding, replicated,
                                               replicated),
                        out_shardings=(state_sharding, replicated), donate_argnums=(0,))
  hparams = jax.device_put(hparams_of(config), replicated)
  return Program(
      model=model, method=method, regularizer=regularizer, optimizer=optimizer,
      streams=streams_used(config, method), pretrained=pretrained,
      abstract_state=abstract_state, state_sharding=state_sharding,
      init_state=lambda rng: jitted_init(rng, loaded),
      train_step=functools.partial(_call_with, jitted_step, hparams),
      hparams=hparams, jitted_step=jitted_step, step_fn=step_fn,
      init_fn=lambda rng: init_state(rng, loaded),
      eval_step=jax.jit(make_eval_step(model), in_shardings=(state_sharding, batch_sharding),
                        out_shardings=replicated, static_argnums=(2,)),
      fisher_step=jax.jit(make_fisher_step(model), in_shardings=(state_sharding, batch_sharding),
                          out_shardings=replicated),
      set_anchor=jax.jit(set_anchor, static_argnums=(1,), out_shardings=state_sharding,
                         donate_argnums=(0,)),
      reset_batch_stats=jax.jit(reset_batch_stats, out_shardings=state_sharding),
      adabn_step=jax.jit(adabn_step, in_shardings=(state_sharding, batch_sharding),
                         out_shardings=state_sharding),
      predict_step=jax.jit(functools.partial(_predict, model),
                           in_shardings=(state_sharding, batch_sharding), out_shardings=replicated),
      centroid_step=jax.jit(make_centroid_step(model, num_classes),
                            in_shardings=(state_sharding, batch_sharding, replicated),
                            out_shardings=replicated))


def _call_with(step: Callable, hparams: dict[str, jax.Array], state: TrainState,
               batch: dict[str, Any], rng: jax.Array) -> tuple[TrainState, dict]:
  return step(state, batch, rng, hparams)


def _predict(model: TransferModel, state: TrainState, batch: dict[str, Any]) -> dict[str, Any]:
  """Features and logits in inference mode (with the batch's labels and padding mask)."""
  outputs = model.apply({'params': state.params, **state.model_state}, batch['input'])
  result = {'features': outputs['features'], 'logits': outputs['logits']}
  for key, name in (('label', 'labels'), ('mask', 'mask')):
    if key in batch:
      result[name] = batch[key]
  return result
