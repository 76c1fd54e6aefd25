"""Transfer terms, one small pure function per method, and the one table that names them.

Each term has the signature `(outputs, batch, ctx) -> (loss, metrics)`:
  outputs: the model's outputs on the method's rows, source rows first, then unlabelled target
           rows (`features` (Bs+Bt, D), `logits` (Bs+Bt, C)); source-free methods see only
           target rows;
  batch:   {'source': {'input', 'label'}, 'target': {'input'}}: target labels never reach a term
           of an unsupervised method;
  ctx:     `StepContext`: the step, training progress, the weight lambda(p) of the transfer term
           (`trade_off` times its schedule), an RNG key, the method's config, and the model's
           heads as functions (domain discriminator, adversarial classifier, classifier, fusion
           module, a full forward pass).
The training step adds the returned loss to the source cross-entropy. Statistics shared by
several methods (kernels, MMD, CORAL, entropy) are in `discrepancy.py`; the self-training terms
(SHOT, FixMatch) in `self_training.py`; the multi-phase methods' terms (MCD, ADDA) and `Phase`,
which this table builds them from, in `multi_phase.py`.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from transfer_jax.errors import UserError
from transfer_jax.objectives import discrepancy
from transfer_jax.objectives.batch_rows import domain_labels, num_source
from transfer_jax.objectives.gradient_reversal import gradient_reversal
from transfer_jax.objectives.losses import cross_entropy
from transfer_jax.objectives.multi_phase import (
  Phase,
  adda_discriminate,
  adda_map,
  mcd_fit,
  mcd_maximize,
  mcd_minimize,
)
from transfer_jax.objectives.schedules import dann_trade_off, warm_start
from transfer_jax.objectives.self_training import fixmatch, shot

Metrics = dict[str, jnp.ndarray]
Array = jnp.ndarray


def _missing(name):
  def fail(*args, **kwargs):
    raise UserError(f'this model has no {name}; the configured method needs one')
  return fail


@dataclasses.dataclass(frozen=True)
class StepContext:
  step: Array
  progress: Array
  rng: jax.Array
  config: ml_collections.ConfigDict                # config.method
  trade_off: Array | float = 1.0                   # lambda(p): trade_off * its schedule.
  discriminate: Callable[[Array], Array] = _missing('domain discriminator')  # -> (B,) logits.
  adversary: Callable[[Array], Array] = _missing('adversarial classifier')   # -> (B, C) logits.
  classify: Callable[[Array], Array] = _missing('classifier')     # features -> (B, C) logits.
  fuse: Callable[[Array], Array] = _missing('fusion module')      # features -> features.
  forward: Callable[[Array], dict] = _missing('forward pass')     # inputs -> outputs (train).
  anchors: dict = dataclasses.field(default_factory=dict)         # e.g. SHOT's centroids.
  # inputs -> outputs of the transferred model, frozen, in inference mode (ADDA's source model).
  source_model: Callable[[Array], dict] = _missing('source model (init_from)')


def _grl_coeff(ctx: StepContext) -> Array:
  """The gradient-reversal coefficient: the DANN ramp to `grl_coeff` (in the progress), TLlib's
  warm start to it (in the iteration), or constant."""
  cfg = ctx.config
  if cfg.grl_schedule == 'dann':
    return cfg.grl_coeff * dann_trade_off(ctx.progress, cfg.grl_gamma)
  if cfg.grl_schedule == 'warm_start':
    return cfg.grl_coeff * warm_start(ctx.step, cfg.grl_warm_alpha, cfg.grl_warm_iters)
  if cfg.grl_schedule == 'constant':
    return jnp.asarray(cfg.grl_coeff, jnp.float32)
  raise UserError(f"unknown config.method.grl_schedule={cfg.grl_schedule!r}; choose 'dann', "
                  "'warm_start' or 'constant'")


def _domain_adversarial(domain_logits, labels, coeff, prefix, weights=None):
  per_example = optax.sigmoid_binary_cross_entropy(domain_logits, labels)
  loss = jnp.mean(per_example if weights is None else weights * per_example)
  accuracy = jnp.mean(((domain_logits > 0) == (labels > 0.5)).astype(jnp.float32))
  return loss, {f'{prefix}/domain_loss': loss, f'{prefix}/domain_accuracy': accuracy,
                f'{prefix}/grl_coeff': coeff}


def source_only(outputs: dict[str, Any], batch: dict[str, Any],
                ctx: StepContext) -> tuple[Array, Metrics]:
  """No transfer term: the source cross-entropy alone (the 'source-only' baseline)."""
  del outputs, batch, ctx
  return jnp.zeros(()), {}


def dann(outputs, batch, ctx):
  """Domain-adversarial training (DANN; Ganin et al., JMLR 2016, arXiv:1505.07818).

  A domain discriminator learns to tell source (label 0) from target (label 1) features; the
  gradient reversal layer sends `-coeff` times its gradient into the feature extractor, so the
  features become domain-invariant. `coeff` follows the paper's ramp 2/(1+exp(-gamma p))-1
  (`grl_schedule='dann'`) or stays at `grl_coeff` (`'constant'`).
  """
  features = outputs['features']
  coeff = _grl_coeff(ctx)
  labels = domain_labels(num_source(batch), features.shape[0])
  loss, metrics = _domain_adversarial(ctx.discriminate(gradient_reversal(features, coeff)),
                                      labels, coeff, 'dann')
  return ctx.trade_off * loss, metrics


def bsp(outputs, batch, ctx):
  """Batch spectral penalization on top of DANN (BSP; Chen et al., ICML 2019).

  DANN's domain-adversarial term plus `bsp_weight` times the sum of the squares of the `bsp_k`
  largest singular values of the source feature matrix and of the target feature matrix: the
  few dominant directions that adversarial alignment inflates are shrunk, so the other
  (discriminative) directions keep their weight. The penalty is not scaled by `trade_off`.
  """
  loss, metrics = dann(outputs, batch, ctx)
  n, k = num_source(batch), ctx.config.bsp_k
  features = outputs['features']
  penalty = sum(jnp.sum(top_squared_singular_values(rows, k))
                for rows in (features[:n], features[n:]))
  return loss + ctx.config.bsp_weight * penalty, {**metrics, 'bsp/penalty': penalty}


def top_squared_singular_values(rows: Array, k: int) -> Array:
  """The k largest squared singular values of `rows`, as the k largest eigenvalues of its
  smaller Gram matrix (sigma_i^2 = lambda_i(X X^T) = lambda_i(X^T X)). The same values as
  `jnp.linalg.svd`; LAPACK's symmetric eigensolver and its gradient cost ~10x less on CPU
  (128 x 256 features: 6.6 against 68 ms, value and gradient)."""
  gram = (jnp.matmul(rows, rows.T, precision=jax.lax.Precision.HIGHEST)
          if rows.shape[0] <= rows.shape[1] else
          jnp.matmul(rows.T, rows, precision=jax.lax.Precision.HIGHEST))
  return jnp.linalg.eigvalsh(gram)[::-1][:k]


def cdan_input(outputs: dict[str, Any], config: ml_collections.ConfigDict) -> Array:
  """CDAN's discriminator input: features (x) softmax(logits), the prediction detached."""
  probs = jax.nn.softmax(jax.lax.stop_gradient(outputs['logits']))
  return discrepancy.multilinear_map(outputs['features'], probs, config.cdan_randomized_dim)


def cdan(outputs, batch, ctx, entropy_conditioning: bool = False):
  """Conditional domain adversarial network (CDAN, CDAN+E; Long et al., NeurIPS 2018).

  The discriminator sees the multilinear map of features and class predictions (or its
  randomized version, `cdan_randomized_dim`); gradient reversal as in DANN. CDAN+E weights each
  example by 1 + exp(-H(g)), normalised to mean 1, so confident predictions count more.
  """
  features = outputs['features']
  coeff = _grl_coeff(ctx)
  labels = domain_labels(num_source(batch), features.shape[0])
  domain_logits = ctx.discriminate(gradient_reversal(cdan_input(outputs, ctx.config), coeff))
  weights = None
  if entropy_conditioning:
    probs = jax.nn.softmax(jax.lax.stop_gradient(outputs['logits']))
    weights = 1.0 + jnp.exp(-discrepancy.entropy(probs))
    weights = weights / jnp.mean(weights)
  loss, metrics = _domain_adversarial(domain_logits, labels, coeff, 'cdan', weights)
  return ctx.trade_off * loss, metrics


def dan(outputs, batch, ctx):
  """Deep adaptation network (DAN; Long et al., ICML 2015): multi-kernel MMD^2 between source
  and target features; quadratic (V-statistic) or linear-time estimator (`mmd_linear`)."""
  cfg = ctx.config
  kernel = discrepancy.multi_gaussian_kernel(outputs['features'], cfg.mmd_kernel_multipliers)
  mmd = discrepancy.mmd_from_kernel(kernel, num_source(batch), linear=cfg.mmd_linear)
  return ctx.trade_off * mmd, {'dan/mmd': mmd}


def jan(outputs, batch, ctx):
  """Joint adaptation network (JAN; Long et al., ICML 2017): MMD^2 of the joint distribution of
  features and predictions, with the product of a multi-kernel on features and a Gaussian of
  bandwidth `jan_sigma` on softmax predictions."""
  cfg = ctx.config
  k_features = discrepancy.multi_gaussian_kernel(outputs['features'], cfg.mmd_kernel_multipliers)
  probs = jax.nn.softmax(outputs['logits'])
  k_probs = jnp.exp(-discrepancy.squared_distances(probs, probs) / (2.0 * cfg.jan_sigma ** 2))
  jmmd = discrepancy.mmd_from_kernel(k_features * k_probs, num_source(batch),
                                     linear=cfg.mmd_linear)
  return ctx.trade_off * jmmd, {'jan/jmmd': jmmd}


def coral(outputs, batch, ctx):
  """Deep CORAL (Sun & Saenko, ECCV-W 2016): distance of source and target covariances."""
  n = num_source(batch)
  distance = discrepancy.coral(outputs['features'][:n], outputs['features'][n:])
  return ctx.trade_off * distance, {'coral/distance': distance}


def mcc(outputs, batch, ctx):
  """Minimum class confusion (MCC; Jin et al., ECCV 2020), on target predictions only.

  Temperature-scaled probabilities P (B, C); examples weighted by 1 + exp(-H(p_i)) (normalised
  to sum B); class correlation C = P^T W P, each row normalised to sum 1; the loss is the
  off-diagonal mass sum(C) - trace(C), divided by the number of classes.
  """
  logits_t = outputs['logits'][num_source(batch):]
  probs = jax.nn.softmax(logits_t / ctx.config.mcc_temperature)
  weights = 1.0 + jnp.exp(-discrepancy.entropy(jax.lax.stop_gradient(probs)))
  weights = weights * probs.shape[0] / jnp.sum(weights)
  confusion = (probs * weights[:, None]).T @ probs
  confusion = confusion / jnp.sum(confusion, axis=1, keepdims=True)
  loss = (jnp.sum(confusion) - jnp.trace(confusion)) / probs.shape[1]
  return ctx.trade_off * loss, {'mcc/confusion': loss}


def mdd(outputs, batch, ctx):
  """Margin disparity discrepancy (MDD; Zhang et al., ICML 2019).

  An adversarial classifier f' (on gradient-reversed features) is trained to agree with the
  main classifier's predictions on source (cross-entropy, times the margin gamma) and to
  disagree on target (-log(1 - p'[y_hat])); the feature extractor receives the reversed
  gradient, so it shrinks that disparity: gamma * CE_s + NLL'_t is the adversary's loss.
  """
  n = num_source(batch)
  coeff = _grl_coeff(ctx)
  predictions = jnp.argmax(jax.lax.stop_gradient(outputs['logits']), axis=-1)
  adversarial = ctx.adversary(gradient_reversal(outputs['features'], coeff))
  source_disparity = cross_entropy(adversarial[:n], predictions[:n])
  target_probs = jax.nn.softmax(adversarial[n:])
  agree_t = jnp.take_along_axis(target_probs, predictions[n:, None], axis=-1)[:, 0]
  target_disparity = -jnp.mean(jnp.log(jnp.clip(1.0 - agree_t, 1e-6)))
  loss = ctx.config.mdd_margin * source_disparity + target_disparity
  return ctx.trade_off * loss, {'mdd/source_disparity': source_disparity,
                                'mdd/target_disparity': target_disparity, 'mdd/grl_coeff': coeff}


def afn(outputs, batch, ctx):
  """Stepwise adaptive feature norm (SAFN; Xu et al., ICCV 2019): every step pushes each
  example's feature norm `afn_delta_r` beyond its current value, the mean over the source and
  target rows together (the paper's lambda / (n_s + n_t) sum; TLlib's afn.py adds the two
  domains' means, twice this with equal batches), plus `afn_entropy_weight` times the mean
  entropy of the target predictions (the paper's "+ENT" variant)."""
  n = num_source(batch)
  norms = jnp.linalg.norm(outputs['features'], axis=-1)
  norm_loss = jnp.mean((norms - (jax.lax.stop_gradient(norms) + ctx.config.afn_delta_r)) ** 2)
  loss, metrics = ctx.trade_off * norm_loss, {'afn/feature_norm': jnp.mean(norms)}
  if ctx.config.afn_entropy_weight:
    target_entropy = jnp.mean(discrepancy.entropy(jax.nn.softmax(outputs['logits'][n:])))
    loss = loss + ctx.config.afn_entropy_weight * target_entropy
    metrics['afn/target_entropy'] = target_entropy
  return loss, metrics


def residual_fusion(outputs, batch, ctx):
  """Residual feature fusion: a residual network R(f) = f + g(f) (g's last layer starts at 0,
  so R starts as the identity) maps source features into the target feature space. The
  classifier also learns on R(source features) (cross-entropy), while multi-kernel MMD^2 pulls
  R(source features) towards the target features, which the classifier reads unchanged."""
  n = num_source(batch)
  features = outputs['features']
  fused = ctx.fuse(features[:n])
  fused_loss = cross_entropy(ctx.classify(fused), batch['source']['label'])
  kernel = discrepancy.multi_gaussian_kernel(jnp.concatenate([fused, features[n:]]),
                                             ctx.config.mmd_kernel_multipliers)
  mmd = discrepancy.mmd_from_kernel(kernel, n, linear=ctx.config.mmd_linear)
  return fused_loss + ctx.trade_off * mmd, {'fusion/source_loss': fused_loss, 'fusion/mmd': mmd}


@dataclasses.dataclass(frozen=True)
class Method:
  loss: Callable[..., tuple[Array, Metrics]]
  uses_target: bool = True     # Draws unlabelled target batches.
  uses_source: bool = True     # The term sees source rows (False: source-free).
  # Extra model heads: 'discriminator', 'adversary', 'classifier2' (an adversary built like the
  # classifier), 'fusion'.
  heads: tuple[str, ...] = ()
  # What the domain discriminator reads (default: the features), for initialisation too.
  discriminator_input: Callable[[dict, ml_collections.ConfigDict], Array] | None = None
  needs_centroids: bool = False  # The loop re-clusters target features (SHOT).
  # Several updates per step, in order, each of some parameter groups (the model's top-level
  # modules) with an optimizer state of its own; empty: one update of everything with `loss`.
  phases: tuple[Phase, ...] = ()
  param_groups: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
  # The transferred model (init_from) is kept frozen beside the trained one (ADDA's source
  # encoder): `StepContext.source_model` runs it.
  needs_source_model: bool = False


# Maximum classifier discrepancy (MCD; Saito et al., CVPR 2018): a generator G (the backbone)
# and two classifiers, F1 (the model's classifier, the one evaluated) and F2 (the 'adversary'
# head, built like F1), updated in three steps every iteration: A (all fit the source), B (F1
# and F2 maximize their discrepancy on target), C (`mcd_num_k` times: G minimizes it).
MCD = Method(mcd_fit, heads=('classifier2',), param_groups={
    'generator': ('backbone',), 'classifiers': ('classifier', 'adversary')}, phases=(
        Phase(mcd_fit, ('generator', 'classifiers')),
        Phase(mcd_maximize, ('classifiers',)),
        Phase(mcd_minimize, ('generator',), task_loss=False, repeat='mcd_num_k')))


# Adversarial discriminative domain adaptation (ADDA; Tzeng et al., CVPR 2017), the paper's
# version: the source encoder and classifier come pretrained on source (init_from, a separate
# run); the target encoder starts from the source encoder; per iteration the discriminator
# steps on source-model source features against target-encoder target features, then the target
# encoder steps on the inverted-label GAN loss; the source model and the classifier never move,
# and the target is tested with target encoder + source classifier. TLlib's adda.py differs
# (its issues #172 / #179): DANN's loss through a gradient reversal layer (warm start to 2),
# one update of the target network and the discriminator together.
ADDA = Method(adda_discriminate, needs_source_model=True, heads=('discriminator',),
              param_groups={'discriminator': ('domain_discriminator',),
                            'target_encoder': ('backbone',)},
              phases=(Phase(adda_discriminate, ('discriminator',), task_loss=False),
                      Phase(adda_map, ('target_encoder',), task_loss=False)))


# config.method.name -> transfer term. The one table; add a line per method.
METHODS: dict[str, Method] = {
    'source_only': Method(source_only, uses_target=False),
    'dann': Method(dann, heads=('discriminator',)),
    'bsp': Method(bsp, heads=('discriminator',)),
    'cdan': Method(cdan, heads=('discriminator',), discriminator_input=cdan_input),
    'cdan_e': Method(functools.partial(cdan, entropy_conditioning=True), heads=('discriminator',),
                     discriminator_input=cdan_input),
    'dan': Method(dan),
    'jan': Method(jan),
    'coral': Method(coral),
    'mcc': Method(mcc),
    'mdd': Method(mdd, heads=('adversary',)),
    'mcd': MCD,
    'adda': ADDA,
    'afn': Method(afn),
    'shot': Method(shot, uses_source=False, needs_centroids=True),
    'fixmatch': Method(fixmatch),
    'residual_fusion': Method(residual_fusion, heads=('fusion',)),
}


def get_method(name: str) -> Method:
  if name not in METHODS:
    raise UserError(f'unknown config.method.name={name!r}; choose one of {sorted(METHODS)}')
  return METHODS[name]
