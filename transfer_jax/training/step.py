"""The pure training and evaluation steps: `(state, batch, rng) -> (state, metrics)`."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from transfer_jax.models import TransferModel
from transfer_jax.objectives import losses
from transfer_jax.objectives.methods import Method, StepContext
from transfer_jax.objectives.schedules import progress
from transfer_jax.training.state import TrainState


def make_train_step(model: TransferModel, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, method: Method,
                    config: ml_collections.ConfigDict) -> Callable:
  """Builds the step: source cross-entropy plus the method's transfer term, one optimizer update."""
  total_steps = config.total_steps
  method_config = config.method

  def train_step(state: TrainState, batch: dict[str, Any],
                 rng: jax.Array) -> tuple[TrainState, dict[str, jnp.ndarray]]:
    rng = jax.random.fold_in(rng, state.step)
    dropout_rng, method_rng = jax.random.split(rng)
    source = batch['source']
    num_source = source['label'].shape[0]
    # One feature pass over source and target images together (source rows first).
    inputs = jnp.concatenate([source['input'], batch['target']['input']])
    mutable = list(state.model_state)

    def loss_fn(params):
      variables = {'params': params, **state.model_state}
      outputs = model.apply(variables, inputs, train=True, rngs={'dropout': dropout_rng},
                            mutable=mutable or False)
      outputs, new_model_state = outputs if mutable else (outputs, {})

      def discriminate(features):
        return model.apply(variables, features, train=True, rngs={'dropout': dropout_rng},
                           method=TransferModel.discriminate)

      ctx = StepContext(step=state.step, progress=progress(state.step, total_steps),
                        rng=method_rng, config=method_config, discriminate=discriminate)
      source_logits = outputs['logits'][:num_source]
      task_loss = losses.cross_entropy(source_logits, source['label'])
      transfer_loss, metrics = method.loss(outputs, batch, ctx)
      total_loss = task_loss + transfer_loss
      metrics = {'source/train/loss': task_loss,
                 'source/train/accuracy': losses.accuracy(source_logits, source['label']),
                 'train/transfer_loss': transfer_loss, 'train/total_loss': total_loss, **metrics}
      return total_loss, (metrics, new_model_state)

    (total_loss, (metrics, new_model_state)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics['train/learning_rate'] = schedule(state.step)
    metrics['train/grad_norm'] = optax.global_norm(grads)
    # A non-finite loss, or updates that would make the parameters non-finite, mark the run bad
    # before the parameters are checkpointed (the loop checks this flag before every save).
    finite_updates = jax.tree.reduce(
        jnp.logical_and, jax.tree.map(lambda u: jnp.all(jnp.isfinite(u)), updates), True)
    nonfinite = ~jnp.isfinite(total_loss) | ~finite_updates
    first_nonfinite = jnp.where((state.first_nonfinite_step < 0) & nonfinite, state.step,
                                state.first_nonfinite_step)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              model_state=new_model_state or state.model_state,
                              first_nonfinite_step=first_nonfinite)
    return new_state, metrics

  return train_step


def make_eval_step(model: TransferModel) -> Callable:
  """Sums of loss, correct predictions and example count over the real (unpadded) rows."""

  def eval_step(state: TrainState, batch: dict[str, Any]) -> dict[str, jnp.ndarray]:
    variables = {'params': state.params, **state.model_state}
    logits = model.apply(variables, batch['input'], train=False)['logits']
    mask = batch['mask'].astype(jnp.float32)
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
    correct = (jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32)
    return {'loss_sum': jnp.sum(per_example * mask), 'correct': jnp.sum(correct * mask),
            'count': jnp.sum(mask)}

  return eval_step
