"""Regularizers of parameter transfer, one small pure function each, and the table naming them.

A term has the signature `(params, ctx) -> (loss, metrics)` where `ctx` is a `RegularizerContext`:
the reference (source) parameters theta_S, which leaves were transferred from them, the diagonal
Fisher information (Fisher-SP), the features of the current and of the source model on the batch
(DELTA, BSS) and the term's config (`config.regularizer`). The step adds the loss to the objective.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from transfer_jax.errors import UserError

Metrics = dict[str, jnp.ndarray]


@dataclasses.dataclass(frozen=True)
class RegularizerContext:
  config: ml_collections.ConfigDict
  reference: Any = None     # theta_S: the parameters the run started from (same tree as params).
  transferred: Any = None   # Same tree, bools: True where the leaf was loaded from theta_S.
  fisher: Any = None        # Same tree: diagonal Fisher information at theta_S (Fisher-SP).
  features: jnp.ndarray | None = None            # Current backbone features on the batch.
  reference_features: jnp.ndarray | None = None  # Source model's features on the same batch.


def _sum_squares(tree: Any, weights: Any = None) -> jnp.ndarray:
  leaves = jax.tree.leaves(tree)
  weight_leaves = jax.tree.leaves(weights) if weights is not None else [None] * len(leaves)
  return sum((jnp.sum(w * jnp.square(x)) if w is not None else jnp.sum(jnp.square(x)))
             for x, w in zip(leaves, weight_leaves, strict=True)) if leaves else jnp.zeros(())


def _split(params: Any, transferred: Any) -> tuple[Any, Any]:
  """(transferred leaves, new leaves) of `params`, as trees with None where a leaf is absent."""
  old = jax.tree.map(lambda p, t: p if t else None, params, transferred)
  new = jax.tree.map(lambda p, t: None if t else p, params, transferred)
  return old, new


def no_regularizer(params: Any, ctx: RegularizerContext) -> tuple[jnp.ndarray, Metrics]:
  del params, ctx
  return jnp.zeros(()), {}


def l2(params: Any, ctx: RegularizerContext) -> tuple[jnp.ndarray, Metrics]:
  """Plain L2 penalty alpha/2 ||theta||^2 on every parameter (weight decay towards zero)."""
  loss = 0.5 * ctx.config.alpha * _sum_squares(params)
  return loss, {'regularizer/l2': loss}


def l2_sp(params: Any, ctx: RegularizerContext) -> tuple[jnp.ndarray, Metrics]:
  """L2-SP (Li, Grandvalet & Davoine, ICML 2018, arXiv:1802.01483).

  alpha/2 ||theta_transferred - theta_S||^2 + beta/2 ||theta_new||^2: transferred parameters are
  pulled towards their source values (the starting point), new ones (e.g. a new head) towards 0.
  """
  old, new = _split(params, ctx.transferred)
  reference, _ = _split(ctx.reference, ctx.transferred)
  drift = jax.tree.map(lambda p, r: p - r, old, reference)
  to_source = 0.5 * ctx.config.alpha * _sum_squares(drift)
  to_zero = 0.5 * ctx.config.beta * _sum_squares(new)
  return to_source + to_zero, {'regularizer/to_source': to_source, 'regularizer/to_zero': to_zero}


def fisher_sp(params: Any, ctx: RegularizerContext) -> tuple[jnp.ndarray, Metrics]:
  """Fisher-weighted SP (L2-SP-Fisher of Li et al. 2018; EWC, Kirkpatrick et al., PNAS 2017).

  alpha/2 sum_i F_i (theta_i - theta_S,i)^2 over transferred parameters + beta/2 ||theta_new||^2,
  with F the diagonal Fisher information estimated on source data at theta_S.
  """
  old, new = _split(params, ctx.transferred)
  reference, _ = _split(ctx.reference, ctx.transferred)
  fisher, _ = _split(ctx.fisher, ctx.transferred)
  drift = jax.tree.map(lambda p, r: p - r, old, reference)
  to_source = 0.5 * ctx.config.alpha * _sum_squares(drift, fisher)
  to_zero = 0.5 * ctx.config.beta * _sum_squares(new)
  return to_source + to_zero, {'regularizer/to_source': to_source, 'regularizer/to_zero': to_zero}


def delta(params: Any, ctx: RegularizerContext) -> tuple[jnp.ndarray, Metrics]:
  """DELTA's feature-map distance (Li et al., ICLR 2019, arXiv:1901.09229), on backbone features.

  alpha * mean_batch ||f_theta(x) - f_theta_S(x)||^2 (the source features carry no gradient),
  plus beta/2 ||theta_new||^2 as in the paper. Channels are weighted uniformly: the paper's
  supervised attention weights are not estimated here.
  """
  difference = ctx.features - jax.lax.stop_gradient(ctx.reference_features)
  distance = ctx.config.alpha * jnp.mean(jnp.sum(jnp.square(difference), axis=-1))
  _, new = _split(params, ctx.transferred)
  to_zero = 0.5 * ctx.config.beta * _sum_squares(new)
  return distance + to_zero, {'regularizer/feature_distance': distance,
                              'regularizer/to_zero': to_zero}


def bss(params: Any, ctx: RegularizerContext) -> tuple[jnp.ndarray, Metrics]:
  """Batch Spectral Shrinkage (Chen et al., NeurIPS 2019): eta * sum of the k smallest squared
  singular values of the batch feature matrix, suppressing untransferable spectral components."""
  del params
  singular_values = jnp.linalg.svd(ctx.features, compute_uv=False)  # Descending.
  smallest = singular_values[-ctx.config.bss_k:]
  loss = ctx.config.alpha * jnp.sum(jnp.square(smallest))
  return loss, {'regularizer/bss': loss}


@dataclasses.dataclass(frozen=True)
class Regularizer:
  name: str
  loss: Callable[..., tuple[jnp.ndarray, Metrics]]
  needs_reference: bool = False         # Keeps theta_S in the train state.
  needs_fisher: bool = False            # Estimates the diagonal Fisher before training.
  needs_reference_features: bool = False  # Runs the source model on every batch.
  needs_features: bool = False


# config.regularizer.name -> term. The one table; add a line per regularizer.
REGULARIZERS: dict[str, Regularizer] = {
    'none': Regularizer('none', no_regularizer),
    'l2': Regularizer('l2', l2),
    'l2_sp': Regularizer('l2_sp', l2_sp, needs_reference=True),
    'fisher_sp': Regularizer('fisher_sp', fisher_sp, needs_reference=True, needs_fisher=True),
    'delta': Regularizer('delta', delta, needs_reference=True, needs_reference_features=True,
                         needs_features=True),
    'bss': Regularizer('bss', bss, needs_features=True),
}


def get_regularizer(name: str) -> Regularizer:
  if name not in REGULARIZERS:
    raise UserError(f'unknown config.regularizer.name={name!r}; choose one of '
                    f'{sorted(REGULARIZERS)}')
  return REGULARIZERS[name]
