"""Model selection without target labels: the criteria a domain-adaptation run logs at every
evaluation, so that a report can choose a step (or a hyperparameter) per rule.

Each criterion is a pure function of features, logits and source labels, oriented so that
HIGHER IS BETTER (risks are negated):
  source_val   accuracy on held-out labelled source data (config.data.source.val_fraction);
  entropy      minus the mean entropy of target predictions;
  snd          soft neighbourhood density (Saito et al., ICCV 2021): the mean entropy of each
               target example's softmax similarity (temperature 0.05) to the other target
               examples, on L2-normalised features;
  iwv          minus the importance-weighted source validation loss (Sugiyama et al., JMLR 2007),
               weights p_T(x)/p_S(x) from a logistic domain classifier on features;
  dev          minus deep embedded validation (You et al., ICML 2019): IWV with the control
               variate that minimises its variance.
The target oracle is `target/oracle_val/accuracy` (config.data.target.val_fraction; the loop
evaluates it whenever config.selection is on): labelled target data, reported as a reference,
never as a rule. Target test data selects nothing.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from transfer_jax.objectives.linear import logistic_fit

CRITERIA = ('source_val', 'entropy', 'snd', 'iwv', 'dev')


def mean_entropy(logits: jax.Array) -> jax.Array:
  log_p = jax.nn.log_softmax(logits)
  return -jnp.mean(jnp.sum(jnp.exp(log_p) * log_p, axis=-1))


def soft_neighbourhood_density(features: jax.Array, temperature: float = 0.05) -> jax.Array:
  """SND: mean over target examples of the entropy of softmax(cos-similarity / T) over the other
  examples. High when target features form dense clusters."""
  normed = features / jnp.maximum(jnp.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
  similarity = normed @ normed.T / temperature
  similarity = jnp.where(jnp.eye(features.shape[0], dtype=bool), -jnp.inf, similarity)
  log_p = jax.nn.log_softmax(similarity, axis=-1)
  p = jnp.exp(log_p)
  return -jnp.mean(jnp.sum(jnp.where(p > 0, p * log_p, 0.0), axis=-1))


def importance_weights(source_train: np.ndarray, target_train: np.ndarray,
                       source_val: np.ndarray, l2: float = 1e-3) -> np.ndarray:
  """w(x) = p_T(x) / p_S(x) on source validation features, from a logistic domain classifier
  (standardised features) trained on source and target training features, corrected for the
  two sample sizes."""
  x = np.concatenate([source_train, target_train]).astype(np.float32)
  mean, scale = x.mean(0), x.std(0) + 1e-6
  labels = np.concatenate([np.zeros(len(source_train)), np.ones(len(target_train))])
  kernel, bias = logistic_fit(jnp.asarray((x - mean) / scale), jnp.asarray(labels, jnp.int32),
                              l2, 2)
  logits = ((source_val - mean) / scale) @ np.asarray(kernel) + np.asarray(bias)
  log_odds = logits[:, 1] - logits[:, 0]
  return np.exp(log_odds) * len(source_train) / len(target_train)


def iwv_risk(losses: np.ndarray, weights: np.ndarray) -> float:
  """Importance-weighted validation risk: mean of w * loss."""
  return float(np.mean(weights * losses))


def dev_risk(losses: np.ndarray, weights: np.ndarray) -> float:
  """Deep embedded validation: mean(w l) + eta mean(w) - eta, eta = -Cov(w l, w) / Var(w)."""
  weighted = weights * losses
  variance = np.var(weights, ddof=1)
  eta = -np.cov(weighted, weights)[0, 1] / variance if variance > 0 else 0.0
  return float(np.mean(weighted) + eta * np.mean(weights) - eta)


def criteria(source_val: dict[str, np.ndarray], source_train: np.ndarray,
             target: dict[str, np.ndarray]) -> dict[str, float]:
  """Every criterion (higher is better) from source validation features/logits/labels, source
  training features and target training features/logits (no target labels)."""
  losses = np.asarray(optax.softmax_cross_entropy_with_integer_labels(
      source_val['logits'], source_val['labels']))
  weights = importance_weights(source_train, target['features'], source_val['features'])
  accuracy = np.mean(np.argmax(source_val['logits'], -1) == source_val['labels'])
  return {
      'select/source_val': float(accuracy),
      'select/entropy': -float(mean_entropy(target['logits'])),
      'select/snd': float(soft_neighbourhood_density(jnp.asarray(target['features']))),
      'select/iwv': -iwv_risk(losses, weights),
      'select/dev': -dev_risk(losses, weights),
  }


def best_step(records: list[dict[str, Any]], criterion: str) -> dict[str, Any] | None:
  """The evaluation record that maximises `criterion` (first of ties), or None if none has it."""
  scored = [r for r in records if criterion in r and np.isfinite(r[criterion])]
  return max(scored, key=lambda r: r[criterion]) if scored else None
