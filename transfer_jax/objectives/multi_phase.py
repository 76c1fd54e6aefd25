"""The terms of the multi-phase methods, MCD and ADDA, one per phase, and `Phase`: one update of
such a method. Terms as in `methods`, which builds the two methods from them for its table.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from transfer_jax.objectives.batch_rows import domain_labels, num_source
from transfer_jax.objectives.losses import cross_entropy

Array = jnp.ndarray


def mcd_discrepancy(probs_1: Array, probs_2: Array) -> Array:
  """MCD's classifier discrepancy: mean |p1 - p2| over the batch and the classes."""
  return jnp.mean(jnp.abs(probs_1 - probs_2))


def mcd_class_balance(probs: Array) -> Array:
  """TLlib's MCD 'entropy': -mean_k log(mean_i p_ik + 1e-6), small when every class is
  predicted as often on the batch (not the per-example entropy)."""
  return -jnp.mean(jnp.log(jnp.mean(probs, axis=0) + 1e-6))


def _mcd_terms(outputs, batch, ctx):
  """F2's source cross-entropy, the class-balance terms of both classifiers on target (times
  `mcd_entropy_weight`) and their discrepancy on target; F1 is the model's classifier."""
  n = num_source(batch)
  logits_2 = ctx.adversary(outputs['features'])
  probs_1, probs_2 = jax.nn.softmax(outputs['logits'][n:]), jax.nn.softmax(logits_2[n:])
  source_2 = cross_entropy(logits_2[:n], batch['source']['label'])
  balance = mcd_class_balance(probs_1) + mcd_class_balance(probs_2)
  return source_2, ctx.config.mcd_entropy_weight * balance, mcd_discrepancy(probs_1, probs_2)


def mcd_fit(outputs, batch, ctx):
  """MCD step A (Saito et al., CVPR 2018): G, F1 and F2 fit the source (F1's cross-entropy is
  the step's source loss) plus the class-balance terms."""
  source_2, balance, _ = _mcd_terms(outputs, batch, ctx)
  return source_2 + balance, {'mcd/source_loss_f2': source_2, 'mcd/class_balance': balance}


def mcd_maximize(outputs, batch, ctx):
  """MCD step B: the classifiers fit the source and disagree on target (G does not move)."""
  source_2, balance, discrepancy_t = _mcd_terms(outputs, batch, ctx)
  return (source_2 + balance - ctx.trade_off * discrepancy_t,
          {'mcd/discrepancy_maximized': discrepancy_t})


def mcd_minimize(outputs, batch, ctx):
  """MCD step C: the generator makes the classifiers agree on target (F1, F2 do not move)."""
  _, _, discrepancy_t = _mcd_terms(outputs, batch, ctx)
  return ctx.trade_off * discrepancy_t, {'mcd/discrepancy': discrepancy_t}


def adda_discriminate(outputs, batch, ctx):
  """ADDA's discriminator step (Tzeng et al., CVPR 2017): tell the frozen source model's source
  features (label 0) from the target encoder's target features (label 1)."""
  n = num_source(batch)
  source_features = ctx.source_model(batch['source']['input'])['features']
  features = jnp.concatenate([source_features, jax.lax.stop_gradient(outputs['features'][n:])])
  logits = ctx.discriminate(features)
  labels = domain_labels(source_features.shape[0], features.shape[0])
  loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
  accuracy = jnp.mean(((logits > 0) == (labels > 0.5)).astype(jnp.float32))
  return loss, {'adda/domain_loss': loss, 'adda/domain_accuracy': accuracy}


def adda_map(outputs, batch, ctx):
  """ADDA's mapping step: the target encoder learns to make the discriminator call its target
  features source (the GAN loss with inverted labels, not a reversed gradient)."""
  n = num_source(batch)
  source_features = ctx.source_model(batch['source']['input'])['features']
  # The discriminator sees both domains, as when it learns (its BatchNorm's batch statistics).
  logits = ctx.discriminate(jnp.concatenate([source_features, outputs['features'][n:]]))
  logits = logits[source_features.shape[0]:]
  loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.zeros_like(logits)))
  return loss, {'adda/mapping_loss': loss}


@dataclasses.dataclass(frozen=True)
class Phase:
  """One update of a multi-phase method (MCD, ADDA): its own forward pass and `loss`, a term like
  the others, after which only the parameter groups in `steps` move."""
  loss: Callable[..., tuple[Array, dict[str, Array]]]
  steps: tuple[str, ...]       # Names of Method.param_groups this phase updates.
  task_loss: bool = True       # The step's supervised losses (source CE, regularizer) join in.
  repeat: str = ''             # A config.method field: how many times in a row it runs (else 1).
