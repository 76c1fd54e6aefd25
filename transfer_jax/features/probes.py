"""Closed-form and full-batch linear probes on fixed features: ridge regression to one-hot targets
and L2-regularised multinomial logistic regression.

Both standardise the features with the statistics of the rows they are fitted on and leave the
bias unpenalised. The L2 strength of each is chosen on held-out labelled SOURCE data (`select`),
never on target data; the chosen probe is then refitted on all source rows given to `select`.
The solvers are those of `objectives.linear`.
"""

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from transfer_jax.objectives.linear import logistic_fit, ridge_fit

# L2 strengths tried (per example: the objectives of `objectives.linear` are means over rows).
RIDGE_GRID = tuple(10.0 ** e for e in range(-5, 3))
LOGISTIC_GRID = tuple(10.0 ** e for e in range(-6, 1))


@dataclasses.dataclass(frozen=True)
class LinearProbe:
  mean: jax.Array    # (D,) standardisation, fitted on the training rows.
  scale: jax.Array   # (D,)
  kernel: jax.Array  # (D, C), on standardised features.
  bias: jax.Array    # (C,)

  def logits(self, features: np.ndarray) -> jax.Array:
    return ((features - self.mean) / self.scale) @ self.kernel + self.bias

  def accuracy(self, features: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(np.asarray(self.logits(features)), -1) == labels))


def standardizer(features: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-feature mean and standard deviation; constant features (dead units) get scale 1."""
  std = jnp.std(features, axis=0)
  return jnp.mean(features, axis=0), jnp.where(std > 1e-6, std, 1.0)


def fit(kind: str, features: np.ndarray, labels: np.ndarray, num_classes: int,
        l2: float) -> LinearProbe:
  """Standardises `features` on themselves and fits probe `kind` ('ridge' or 'logistic')."""
  mean, scale = standardizer(jnp.asarray(features))
  x = (jnp.asarray(features) - mean) / scale
  if kind == 'ridge':
    kernel, bias = ridge_fit(x, jax.nn.one_hot(labels, num_classes), l2)
  else:
    kernel, bias = logistic_fit(x, jnp.asarray(labels), l2, num_classes)
  return LinearProbe(mean, scale, kernel, bias)


PROBES: dict[str, Sequence[float]] = {'ridge': RIDGE_GRID, 'logistic': LOGISTIC_GRID}


@dataclasses.dataclass(frozen=True)
class Selected:
  probe: LinearProbe        # Refitted on train + val with the chosen l2.
  l2: float
  val_accuracy: float       # Of the chosen l2, fitted on train only.
  grid: dict[float, float]  # l2 -> val accuracy.


def select(kind: str, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
           num_classes: int, grid: Sequence[float] | None = None,
           fit_fn: Callable[..., LinearProbe] = fit) -> Selected:
  """Chooses the L2 strength of probe `kind` by accuracy on `val` (source data) and refits on
  train + val. Ties go to the stronger regularisation."""
  grid = sorted(PROBES[kind] if grid is None else grid, reverse=True)
  scores = {l2: fit_fn(kind, *train, num_classes, l2).accuracy(*val) for l2 in grid}
  best = max(grid, key=lambda l2: scores[l2])  # max keeps the first (strongest) of equals.
  features, labels = (np.concatenate(parts) for parts in zip(train, val, strict=True))
  return Selected(probe=fit_fn(kind, features, labels, num_classes, best), l2=best,
                  val_accuracy=scores[best], grid=scores)
