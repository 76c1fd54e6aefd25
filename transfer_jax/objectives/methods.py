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
several methods (kernels, MMD, CORAL, entropy) are in `discrepancy.py`.
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
from transfer_jax.objectives.gradient_reversal import gradient_reversal
from transfer_jax.objectives.losses import cross_entropy
from transfer_jax.objectives.schedules import dann_trade_off, warm_start

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


def _num_source(batch: dict[str, Any]) -> int:
  return batch['source']['label'].shape[0] if 'source' in batch else 0


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


def _domain_labels(num_source: int, total: int) -> Array:
  """0 for source rows, 1 for target rows."""
  return jnp.concatenate([jnp.zeros(num_source), jnp.ones(total - num_source)])


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
  labels = _domain_labels(_num_source(batch), features.shape[0])
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
  n, k = _num_source(batch), ctx.config.bsp_k
  features = outputs['features']
  penalty = sum(jnp.sum(jnp.linalg.svd(rows, compute_uv=False)[:k] ** 2)
                for rows in (features[:n], features[n:]))
  return loss + ctx.config.bsp_weight * penalty, {**metrics, 'bsp/penalty': penalty}


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
  labels = _domain_labels(_num_source(batch), features.shape[0])
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
  mmd = discrepancy.mmd_from_kernel(kernel, _num_source(batch), linear=cfg.mmd_linear)
  return ctx.trade_off * mmd, {'dan/mmd': mmd}


def jan(outputs, batch, ctx):
  """Joint adaptation network (JAN; Long et al., ICML 2017): MMD^2 of the joint distribution of
  features and predictions, with the product of a multi-kernel on features and a Gaussian of
  bandwidth `jan_sigma` on softmax predictions."""
  cfg = ctx.config
  k_features = discrepancy.multi_gaussian_kernel(outputs['features'], cfg.mmd_kernel_multipliers)
  probs = jax.nn.softmax(outputs['logits'])
  k_probs = jnp.exp(-discrepancy.squared_distances(probs, probs) / (2.0 * cfg.jan_sigma ** 2))
  jmmd = discrepancy.mmd_from_kernel(k_features * k_probs, _num_source(batch),
                                     linear=cfg.mmd_linear)
  return ctx.trade_off * jmmd, {'jan/jmmd': jmmd}


def coral(outputs, batch, ctx):
  """Deep CORAL (Sun & Saenko, ECCV-W 2016): distance of source and target covariances."""
  n = _num_source(batch)
  distance = discrepancy.coral(outputs['features'][:n], outputs['features'][n:])
  return ctx.trade_off * distance, {'coral/distance': distance}


def mcc(outputs, batch, ctx):
  """Minimum class confusion (MCC; Jin et al., ECCV 2020), on target predictions only.

  Temperature-scaled probabilities P (B, C); examples weighted by 1 + exp(-H(p_i)) (normalised
  to sum B); class correlation C = P^T W P, each row normalised to sum 1; the loss is the
  off-diagonal mass sum(C) - trace(C), divided by the number of classes.
  """
  logits_t = outputs['logits'][_num_source(batch):]
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
  n = _num_source(batch)
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
  example's feature norm `afn_delta_r` beyond its current value, on source and target."""
  del batch
  norms = jnp.linalg.norm(outputs['features'], axis=-1)
  loss = jnp.mean((norms - (jax.lax.stop_gradient(norms) + ctx.config.afn_delta_r)) ** 2)
  return ctx.trade_off * loss, {'afn/feature_norm': jnp.mean(norms)}


def shot_features(features: Array) -> Array:
  """SHOT's clustering space: features with a constant 1 appended, L2-normalised."""
  augmented = jnp.concatenate([features, jnp.ones(features.shape[:-1] + (1,))], axis=-1)
  return augmented / jnp.linalg.norm(augmented, axis=-1, keepdims=True)


def nearest_centroid(features: Array, centroids: Array) -> Array:
  """Index of the centroid of smallest cosine distance; unused classes (zero rows) never win."""
  normed = centroids / jnp.maximum(jnp.linalg.norm(centroids, axis=-1, keepdims=True), 1e-12)
  similarity = shot_features(features) @ normed.T
  valid = jnp.any(centroids != 0, axis=-1)
  return jnp.argmax(jnp.where(valid[None], similarity, -jnp.inf), axis=-1)


def shot(outputs, batch, ctx):
  """Source hypothesis transfer (SHOT; Liang et al., ICML 2020): source-free adaptation.

  The source classifier is kept (freeze it in the optimizer) and the feature extractor learns
  on target data alone: information maximisation (mean entropy of predictions minus the entropy
  of the mean prediction) plus `shot_beta` times the cross-entropy against pseudo-labels, the
  nearest of the class centroids that the training loop re-clusters from all target data every
  `shot_refresh_every` steps (soft weights, then one hard k-means step). Difference from the
  paper: a batch is pseudo-labelled with its current features against the last centroids,
  instead of features frozen at the refresh.
  """
  del batch
  logits = outputs['logits']
  probs = jax.nn.softmax(logits)
  conditional_entropy = jnp.mean(discrepancy.entropy(probs))
  diversity = discrepancy.entropy(jnp.mean(probs, axis=0, keepdims=True))[0]
  pseudo = nearest_centroid(jax.lax.stop_gradient(outputs['features']), ctx.anchors['centroids'])
  pseudo_loss = cross_entropy(logits, pseudo)
  loss = conditional_entropy - diversity + ctx.config.shot_beta * pseudo_loss
  return ctx.trade_off * loss, {'shot/entropy': conditional_entropy, 'shot/diversity': diversity,
                                'shot/pseudo_loss': pseudo_loss}


def strong_augment(inputs: Array, rng: jax.Array) -> Array:
  """A strong random view of a batch, on device.

  Images (B, H, W, C): a random translation by up to H/4 pixels (zero fill), a random
  contrast scale in [0.5, 1.5], and a cutout square of side H/2 set to 0. Vectors (B, D):
  inverted dropout of half the features plus Gaussian noise of std 0.1.
  """
  if inputs.ndim == 2:
    keep_key, noise_key = jax.random.split(rng)
    keep = jax.random.bernoulli(keep_key, 0.5, inputs.shape)
    return inputs * keep * 2.0 + 0.1 * jax.random.normal(noise_key, inputs.shape)
  batch, height, width = inputs.shape[:3]
  shift_key, contrast_key, cut_key = jax.random.split(rng, 3)
  shift = max(height // 4, 1)
  offsets = jax.random.randint(shift_key, (batch, 2), 0, 2 * shift + 1)
  padded = jnp.pad(inputs, ((0, 0), (shift, shift), (shift, shift), (0, 0)))
  translated = jax.vmap(lambda image, offset: jax.lax.dynamic_slice(
      image, (offset[0], offset[1], 0), (height, width, inputs.shape[3])))(padded, offsets)
  mean = jnp.mean(translated, axis=(1, 2, 3), keepdims=True)
  contrast = jax.random.uniform(contrast_key, (batch, 1, 1, 1), minval=0.5, maxval=1.5)
  jittered = mean + contrast * (translated - mean)
  centres = jax.random.randint(cut_key, (batch, 2), 0, jnp.array([height, width]))
  rows = jnp.arange(height)[None, :, None]
  cols = jnp.arange(width)[None, None, :]
  half = max(height // 4, 1)
  inside = ((jnp.abs(rows - centres[:, 0, None, None]) < half)
            & (jnp.abs(cols - centres[:, 1, None, None]) < half))
  return jnp.where(inside[..., None], 0.0, jittered)


def fixmatch(outputs, batch, ctx):
  """FixMatch-style self-training (Sohn et al., NeurIPS 2020) on unlabelled target data.

  Predictions on the target batch as given (the weak view) become hard pseudo-labels where their
  confidence reaches `fixmatch_threshold`; a strongly augmented view (`strong_augment`) is
  trained towards them. The loss is averaged over all target rows (masked rows count 0).
  """
  n = _num_source(batch)
  probs = jax.nn.softmax(jax.lax.stop_gradient(outputs['logits'][n:]))
  confidence, pseudo = jnp.max(probs, axis=-1), jnp.argmax(probs, axis=-1)
  mask = (confidence >= ctx.config.fixmatch_threshold).astype(jnp.float32)
  strong_logits = ctx.forward(strong_augment(batch['target']['input'], ctx.rng))['logits']
  per_example = optax.softmax_cross_entropy_with_integer_labels(strong_logits, pseudo)
  loss = jnp.mean(mask * per_example)
  return ctx.trade_off * loss, {'fixmatch/mask_rate': jnp.mean(mask), 'fixmatch/loss': loss}


def residual_fusion(outputs, batch, ctx):
  """Residual feature fusion: a residual network R(f) = f + g(f) (g's last layer starts at 0,
  so R starts as the identity) maps source features into the target feature space. The
  classifier also learns on R(source features) (cross-entropy), while multi-kernel MMD^2 pulls
  R(source features) towards the target features, which the classifier reads unchanged."""
  n = _num_source(batch)
  features = outputs['features']
  fused = ctx.fuse(features[:n])
  fused_loss = cross_entropy(ctx.classify(fused), batch['source']['label'])
  kernel = discrepancy.multi_gaussian_kernel(jnp.concatenate([fused, features[n:]]),
                                             ctx.config.mmd_kernel_multipliers)
  mmd = discrepancy.mmd_from_kernel(kernel, n, linear=ctx.config.mmd_linear)
  return fused_loss + ctx.trade_off * mmd, {'fusion/source_loss': fused_loss, 'fusion/mmd': mmd}


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
  n = _num_source(batch)
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
  n = _num_source(batch)
  source_features = ctx.source_model(batch['source']['input'])['features']
  features = jnp.concatenate([source_features, jax.lax.stop_gradient(outputs['features'][n:])])
  logits = ctx.discriminate(features)
  labels = _domain_labels(source_features.shape[0], features.shape[0])
  loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
  accuracy = jnp.mean(((logits > 0) == (labels > 0.5)).astype(jnp.float32))
  return loss, {'adda/domain_loss': loss, 'adda/domain_accuracy': accuracy}


def adda_map(outputs, batch, ctx):
  """ADDA's mapping step: the target encoder learns to make the discriminator call its target
  features source (the GAN loss with inverted labels, not a reversed gradient)."""
  n = _num_source(batch)
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
  loss: Callable[..., tuple[Array, Metrics]]
  steps: tuple[str, ...]       # Names of Method.param_groups this phase updates.
  task_loss: bool = True       # The step's supervised losses (source CE, regularizer) join in.
  repeat: str = ''             # A config.method field: how many times in a row it runs (else 1).


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
