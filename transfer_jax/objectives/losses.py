"""Basic supervised losses and metrics on logits. Means are over the (global) batch."""

import jax.numpy as jnp
import optax


def cross_entropy(logits_BxC: jnp.ndarray, labels_B: jnp.ndarray,
                  mask_B: jnp.ndarray | None = None) -> jnp.ndarray:
  """Mean softmax cross-entropy with integer labels; `mask_B` excludes padded examples."""
  per_example = optax.softmax_cross_entropy_with_integer_labels(logits_BxC, labels_B)
  return _masked_mean(per_example, mask_B)


def binary_cross_entropy(logits_B: jnp.ndarray, labels_B: jnp.ndarray) -> jnp.ndarray:
  """Mean sigmoid binary cross-entropy with 0/1 labels."""
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits_B, labels_B))


def accuracy(logits_BxC: jnp.ndarray, labels_B: jnp.ndarray,
             mask_B: jnp.ndarray | None = None) -> jnp.ndarray:
  """Fraction of examples whose arg-max logit is the label."""
  return _masked_mean((jnp.argmax(logits_BxC, -1) == labels_B).astype(jnp.float32), mask_B)


def _masked_mean(values_B, mask_B):
  if mask_B is None:
    return jnp.mean(values_B)
  mask_B = mask_B.astype(values_B.dtype)
  return jnp.sum(values_B * mask_B) / jnp.maximum(jnp.sum(mask_B), 1.0)
