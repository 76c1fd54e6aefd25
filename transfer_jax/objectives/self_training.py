"""Self-training transfer terms on unlabelled target data: SHOT (source-free, pseudo-labels from
class centroids that the loop re-clusters, `training.hooks`) and FixMatch (confident predictions
as pseudo-labels of a strongly augmented view). Terms as in `methods`, which names them in its
table.
"""

import jax
import jax.numpy as jnp
import optax

from transfer_jax.objectives import discrepancy
from transfer_jax.objectives.batch_rows import num_source
from transfer_jax.objectives.losses import cross_entropy

Array = jnp.ndarray


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
  n = num_source(batch)
  probs = jax.nn.softmax(jax.lax.stop_gradient(outputs['logits'][n:]))
  confidence, pseudo = jnp.max(probs, axis=-1), jnp.argmax(probs, axis=-1)
  mask = (confidence >= ctx.config.fixmatch_threshold).astype(jnp.float32)
  strong_logits = ctx.forward(strong_augment(batch['target']['input'], ctx.rng))['logits']
  per_example = optax.softmax_cross_entropy_with_integer_labels(strong_logits, pseudo)
  loss = jnp.mean(mask * per_example)
  return ctx.trade_off * loss, {'fixmatch/mask_rate': jnp.mean(mask), 'fixmatch/loss': loss}
