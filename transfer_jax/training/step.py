"""The pure training and evaluation steps: `(state, batch, rng) -> (state, metrics)`.

The objective of one step is

  source_weight * L_S + target_weight(p) * L_T + transfer term + regularizer

with L_S the cross-entropy on the labelled source batch, L_T the cross-entropy on labelled
target examples (the joint objective; `target_labeled` stream), the method's transfer term on
source and unlabelled target features (DANN, ...), and a distance regularizer towards the
transferred parameters (L2-SP, ...). A batch holds only the streams the objective uses.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from transfer_jax.models import TransferModel
from transfer_jax.objectives import losses
from transfer_jax.objectives.methods import Method, StepContext
from transfer_jax.objectives.regularizers import Regularizer, RegularizerContext
from transfer_jax.objectives.schedules import progress, ramp
from transfer_jax.training.optimizer import group_params, learning_rate_now
from transfer_jax.training.state import TrainState


def task_streams(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """One labelled stream per entry of `config.tasks` (multi-task, multi-source)."""
  return tuple(f'task_{name}' for name in config.tasks)


def stream_order(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Row order of the one concatenated pass: source, the tasks' streams, then target rows, so
  that a transfer term sees every labelled source-side row before the unlabelled target rows."""
  return ('source', *task_streams(config), 'target', 'target_labeled')


def streams_used(config: ml_collections.ConfigDict, method: Method) -> tuple[str, ...]:
  """The batch streams the configured objective needs, in `stream_order`."""
  used = []
  if config.objective.source_weight > 0 or (method.uses_target and method.uses_source):
    used.append('source')
  used += [stream for stream, task in zip(task_streams(config), config.tasks.values(),
                                          strict=True) if task.weight > 0]
  if method.uses_target:
    used.append('target')
  if config.objective.target_weight > 0:
    used.append('target_labeled')
  return tuple(used)


def step_inputs(config: ml_collections.ConfigDict) -> dict[str, jnp.ndarray]:
  """The step's inputs besides state, batch and rng: the values a vectorized group may vary that
  are not the optimizer's (those live in its state: optimizer.HYPERPARAMS)."""
  return {'trade_off': jnp.asarray(config.method.trade_off, jnp.float32)}


class MethodSettings:
  """`config.method` as a method sees it (`StepContext.config`) without `trade_off`: the step's
  input carries each run's value (`ctx.trade_off`), the config only the first run's."""

  def __init__(self, method_config: ml_collections.ConfigDict):
    self._config = method_config

  def __getattr__(self, name: str) -> Any:
    if name == 'trade_off':
      raise AttributeError('a method reads its trade-off from ctx.trade_off (each run\'s value, '
                           'with its schedule), never from ctx.config.trade_off')
    return getattr(self._config, name)

  __getitem__ = __getattr__


def make_train_step(model: TransferModel, method: Method, regularizer: Regularizer,
                    transferred: Any, config: ml_collections.ConfigDict,
                    optimizer: optax.GradientTransformation,
                    group_optimizers: dict[str, optax.GradientTransformation] | None = None
                    ) -> Callable:
  """Builds the step `(state, batch, rng, step_in) -> (state, metrics)` for `config`;
  `transferred` marks the parameters loaded by init_from; `step_in` is `step_inputs(config)` (a
  run's own values under vectorization); `optimizer` (or, for a multi-phase method, one
  optimizer per parameter group) holds the learning rate and weight decay in its state."""
  total_steps = config.total_steps
  objective = config.objective
  order = stream_order(config)
  tasks = {f'task_{name}': (name, task) for name, task in config.tasks.items()}
  method_settings = MethodSettings(config.method)
  per_domain_passes = config.model.per_domain_passes

  def train_step(state: TrainState, batch: dict[str, Any], rng: jax.Array,
                 step_in: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jnp.ndarray]]:
    learning_rate = learning_rate_now(config.optimizer, total_steps, state.opt_state, state.step)
    rng = jax.random.fold_in(rng, state.step)
    dropout_rng, method_rng = jax.random.split(rng)
    streams = [name for name in order if name in batch]
    sizes = [batch[name]['input'].shape[0] for name in streams]
    offsets = dict(zip(streams, [sum(sizes[:i]) for i in range(len(sizes))], strict=True))
    rows = {name: slice(offsets[name], offsets[name] + size)
            for name, size in zip(streams, sizes, strict=True)}
    # One pass over every stream's inputs together (BatchNorm sees them as one batch), or with
    # `model.per_domain_passes` one pass per stream.
    inputs = jnp.concatenate([batch[name]['input'] for name in streams])
    mutable = list(state.model_state)
    p = progress(state.step, total_steps)

    def loss_fn(params, term=method.loss, with_task=True, dropout_rng=dropout_rng,
                model_state=state.model_state):
      """The objective with the transfer term `term`; `with_task`: the supervised losses too."""
      variables = {'params': params, **model_state}
      if per_domain_passes:
        # One pass per stream, in stream order, each updating the BatchNorm statistics the
        # previous one left: every domain is normalised with its own batch's statistics.
        passes, new_model_state = [], model_state
        for i, name in enumerate(streams):
          out = model.apply({'params': params, **new_model_state}, batch[name]['input'],
                            train=True, rngs={'dropout': jax.random.fold_in(dropout_rng, i)},
                            mutable=mutable or False)
          out, new_model_state = out if mutable else (out, {})
          passes.append(out)
        outputs = jax.tree.map(lambda *parts: jnp.concatenate(parts), *passes)
      else:
        outputs = model.apply(variables, inputs, train=True, rngs={'dropout': dropout_rng},
                              mutable=mutable or False)
        outputs, new_model_state = outputs if mutable else (outputs, {})
      metrics, total = {}, jnp.zeros(())
      for name, prefix, weight in (('source', 'source', objective.source_weight),
                                   ('target_labeled', 'target', objective.target_weight)):
        if with_task and name in rows and weight > 0:
          logits, labels = outputs['logits'][rows[name]], batch[name]['label']
          task_loss = losses.cross_entropy(logits, labels)
          if prefix == 'target':  # lambda of the joint objective, with its schedule.
            weight = weight * ramp(objective.target_weight_schedule, p)
          total += weight * task_loss
          metrics[f'{prefix}/train/loss'] = task_loss
          metrics[f'{prefix}/train/accuracy'] = losses.accuracy(logits, labels)
      for stream, (name, task) in tasks.items():  # Extra labelled tasks, their own heads.
        if stream not in rows or not with_task:
          continue
        logits = outputs['logits'][rows[stream]]
        if task.head:
          logits = model.apply(variables, outputs['features'][rows[stream]], task.head,
                               train=True, rngs={'dropout': dropout_rng},
                               method=TransferModel.task_logits)
        task_loss = losses.cross_entropy(logits, batch[stream]['label'])
        total += task.weight * task_loss
        metrics[f'{name}/train/loss'] = task_loss
        metrics[f'{name}/train/accuracy'] = losses.accuracy(logits, batch[stream]['label'])
      if method.uses_target:
        # The method sees source rows (unless source-free) then unlabelled target rows.
        # Task streams count as source rows (multi-source: several labelled source domains).
        source_side = [name for name in streams if name == 'source' or name in tasks]
        aligned = slice(rows[source_side[0]].start if method.uses_source else rows['target'].start,
                        rows['target'].stop)
        method_outputs = {key: value[aligned] for key, value in outputs.items()}
        method_batch = {'target': batch['target']}
        if method.uses_source:
          method_batch['source'] = {key: jnp.concatenate([batch[name][key] for name in source_side])
                                    for key in ('input', 'label')}

        def head(fn):  # A TransferModel method on features, in training mode.
          # BatchNorm in a head (TLlib's discriminator) normalises with the batch's statistics;
          # its running averages are not kept: heads are never evaluated in inference mode.
          def apply(x):
            out = model.apply(variables, x, train=True, rngs={'dropout': dropout_rng},
                              method=fn, mutable=mutable or False)
            return out[0] if mutable else out
          return apply

        def source_model(source_inputs):  # The transferred model, frozen (ADDA's source encoder).
          return model.apply(state.anchors['source_variables'], source_inputs, train=False)

        def forward(extra_inputs):  # An extra pass; its BatchNorm statistics are not kept.
          out = model.apply(variables, extra_inputs, train=True, rngs={'dropout': dropout_rng},
                            mutable=mutable or False)
          return out[0] if mutable else out

        ctx = StepContext(
            step=state.step, progress=p, rng=method_rng, config=method_settings,
            trade_off=step_in['trade_off'] * ramp(config.method.trade_off_schedule, p),
            discriminate=head(TransferModel.discriminate),
            adversary=head(TransferModel.adversarial_logits),
            classify=head(TransferModel.classify), fuse=head(TransferModel.fuse),
            forward=forward, anchors=state.anchors, source_model=source_model)
        transfer_loss, method_metrics = term(method_outputs, method_batch, ctx)
        total += transfer_loss
        metrics.update(method_metrics)
        metrics['train/transfer_loss'] = transfer_loss
      if with_task and regularizer.name != 'none':
        supervised = rows.get('target_labeled', rows.get('source'))
        reference_features = None
        if regularizer.needs_reference_features:
          reference_variables = {'params': state.anchors['params'], **model_state}
          reference_features = model.apply(reference_variables, inputs,
                                           train=False)['features'][supervised]
        reg_ctx = RegularizerContext(
            config=config.regularizer, reference=state.anchors.get('params'),
            transferred=transferred, fisher=state.anchors.get('fisher'),
            features=outputs['features'][supervised], reference_features=reference_features)
        reg_loss, reg_metrics = regularizer.loss(params, reg_ctx)
        total += reg_loss
        metrics.update(reg_metrics)
      metrics['train/total_loss'] = total
      return total, (metrics, new_model_state)

    def all_finite(tree):
      return jax.tree.reduce(jnp.logical_and,
                             jax.tree.map(lambda u: jnp.all(jnp.isfinite(u)), tree), True)

    if method.phases:
      params, opt_state, new_model_state, metrics, nonfinite = run_phases(
          state, loss_fn, dropout_rng, learning_rate, all_finite)
    else:
      (total_loss, (metrics, new_model_state)), grads = jax.value_and_grad(
          loss_fn, has_aux=True)(state.params)
      updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      metrics['train/grad_norm'] = optax.global_norm(grads)
      # A non-finite loss, or updates that would make the parameters non-finite, mark the run
      # bad before the parameters are checkpointed (the loop checks this flag before each save).
      nonfinite = ~jnp.isfinite(total_loss) | ~all_finite(updates)
    metrics['train/learning_rate'] = learning_rate
    first_nonfinite = jnp.where((state.first_nonfinite_step < 0) & nonfinite, state.step,
                                state.first_nonfinite_step)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              model_state=new_model_state or state.model_state,
                              first_nonfinite_step=first_nonfinite)
    return new_state, metrics

  def run_phases(state, loss_fn, dropout_rng, learning_rate, all_finite):
    """A multi-phase method's updates in order, each from a forward pass at the parameters the
    previous one left; only the phase's parameter groups move, each with its own optimizer
    state (a group that does not step keeps its momentum and count), at the iteration's
    `learning_rate`."""
    params, model_state = state.params, state.model_state
    opt_state = {group: s._replace(hyperparams={**s.hyperparams, 'iteration_rate': learning_rate})
                 for group, s in state.opt_state.items()}
    metrics, nonfinite, index = {}, jnp.zeros((), bool), 0
    for phase in method.phases:
      for _ in range(int(config.method[phase.repeat]) if phase.repeat else 1):
        rng = dropout_rng if index == 0 else jax.random.fold_in(dropout_rng, index)
        (loss, (phase_metrics, new_model_state)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(params, phase.loss, phase.task_loss, rng, model_state)
        model_state = new_model_state or model_state
        nonfinite |= ~jnp.isfinite(loss)
        if index == 0:
          metrics['train/grad_norm'] = optax.global_norm(grads)
        metrics.update({k: v for k, v in phase_metrics.items() if k not in metrics})
        metrics[f'train/phase{index}_loss'] = loss
        for group in phase.steps:
          modules = method.param_groups[group]
          group_values = group_params(params, modules)
          updates, opt_state[group] = group_optimizers[group].update(
              group_params(grads, modules), opt_state[group], group_values)
          nonfinite |= ~all_finite(updates)
          params = {**params, **optax.apply_updates(group_values, updates)}
        index += 1
    return params, opt_state, model_state, metrics, nonfinite

  return train_step
