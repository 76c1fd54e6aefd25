"""Transfer terms, one small pure function per method, and the one table that names them.

Each term has the signature `(outputs, batch, ctx) -> (loss, metrics)`:
  outputs: the model's outputs on the concatenated batch, source rows first
           (`features` (Bs+Bt, D), `logits` (Bs+Bt, C));
  batch:   {'source': {'input', 'label'}, 'target': {'input'}}: target labels never reach a term
           of an unsupervised method;
  ctx:     `StepContext` with the step, training progress, an RNG key, the method's config, and
           `discriminate` (features -> domain logits, through the model's domain discriminator).
The training step adds the returned loss to the source cross-entropy.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from transfer_jax.errors import UserError
from transfer_jax.objectives.gradient_reversal import gradient_reversal
from transfer_jax.objectives.losses import binary_cross_entropy
from transfer_jax.objectives.schedules import dann_trade_off

Metrics = dict[str, jnp.ndarray]


@dataclasses.dataclass(frozen=True)
class StepContext:
  step: jnp.ndarray
  progress: jnp.ndarray
  rng: jax.Array
  config: ml_collections.ConfigDict
  discriminate: Callable[[jnp.ndarray], jnp.ndarray]


def source_only(outputs: dict[str, Any], batch: dict[str, Any],
                ctx: StepContext) -> tuple[jnp.ndarray, Metrics]:
  """No transfer term: the source cross-entropy alone (the 'source-only' baseline)."""
  del outputs, batch, ctx
  return jnp.zeros(()), {}


def dann(outputs: dict[str, Any], batch: dict[str, Any],
         ctx: StepContext) -> tuple[jnp.ndarray, Metrics]:
  """Domain-adversarial training (DANN; Ganin et al., JMLR 2016, arXiv:1505.07818).

  A domain discriminator learns to tell source (label 0) from target (label 1) features; the
  gradient reversal layer sends `-coeff` times its gradient into the feature extractor, so the
  features become domain-invariant. `coeff` follows the paper's ramp 2/(1+exp(-gamma p))-1
  (`grl_schedule='dann'`) or stays at `grl_coeff` (`'constant'`). The discriminator itself always
  trains with gradient 1 * `trade_off`.
  """
  cfg = ctx.config
  features = outputs['features']
  num_source = batch['source']['label'].shape[0]
  if cfg.grl_schedule == 'dann':
    coeff = cfg.grl_coeff * dann_trade_off(ctx.progress, cfg.grl_gamma)
  else:
    coeff = jnp.asarray(cfg.grl_coeff, jnp.float32)
  domain_logits = ctx.discriminate(gradient_reversal(features, coeff))
  domain_labels = jnp.concatenate([jnp.zeros(num_source), jnp.ones(features.shape[0] - num_source)])
  domain_loss = binary_cross_entropy(domain_logits, domain_labels)
  domain_accuracy = jnp.mean(((domain_logits > 0) == (domain_labels > 0.5)).astype(jnp.float32))
  metrics = {'dann/domain_loss': domain_loss, 'dann/domain_accuracy': domain_accuracy,
             'dann/grl_coeff': coeff}
  return cfg.trade_off * domain_loss, metrics


@dataclasses.dataclass(frozen=True)
class Method:
  loss: Callable[..., tuple[jnp.ndarray, Metrics]]
  uses_target: bool = True            # Draws unlabelled target batches (alignment methods).
  needs_discriminator: bool = False


# config.method.name -> transfer term. The one table; add a line per method.
METHODS: dict[str, Method] = {
    'source_only': Method(source_only, uses_target=False),
    'dann': Method(dann, needs_discriminator=True),
}


def get_method(name: str) -> Method:
  if name not in METHODS:
    raise UserError(f'unknown config.method.name={name!r}; choose one of {sorted(METHODS)}')
  return METHODS[name]
