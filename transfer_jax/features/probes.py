"""Closed-form and full-batch linear probes on fixed features: ridge regression to one-hot targets
and L2-regularised multinomial logistic regression.

Both standardise the features with the statistics of the rows they are fitted on and leave the
bias unpenalised. The L2 strength of each is chosen on held-out labelled SOURCE data (`select`),
never on target data; the chosen probe is then refitted on all source rows given to `select`.
"""

import dataclasses
from collections.abc import Callable, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

# L2 strengths tried (per example: the objectives below are means over the rows).
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


@jax.jit
def ridge_fit(features: jax.Array, targets: jax.Array, l2: float) -> tuple[jax.Array, jax.Array]:
  """argmin_{W,b} (1/n)||X W + b - Y||^2 + l2 ||W||^2 in closed form: the primal solve
  (X^T X + n l2 I) W = X^T Y when D <= n, the dual W = X^T (X X^T + n l2 I)^-1 Y otherwise
  (X, Y centred, so the bias is unpenalised)."""
  n, d = features.shape
  x_mean, y_mean = features.mean(0), targets.mean(0)
  x, y = features - x_mean, targets - y_mean
  if d <= n:
    kernel = jax.scipy.linalg.solve(x.T @ x + n * l2 * jnp.eye(d), x.T @ y, assume_a='pos')
  else:
    kernel = x.T @ jax.scipy.linalg.solve(x @ x.T + n * l2 * jnp.eye(n), y, assume_a='pos')
  return kernel, y_mean - x_mean @ kernel


def logistic_loss(params: tuple[jax.Array, jax.Array], features: jax.Array, labels: jax.Array,
                  l2: float) -> jax.Array:
  """Mean softmax cross-entropy + l2/2 ||W||^2 (bias unpenalised)."""
  kernel, bias = params
  logits = features @ kernel + bias
  return (optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
          + 0.5 * l2 * jnp.sum(kernel ** 2))


@partial(jax.jit, static_argnames=('num_classes', 'max_iter'))
def logistic_fit(features: jax.Array, labels: jax.Array, l2: float, num_classes: int,
                 max_iter: int = 500, tol: float = 1e-5) -> tuple[jax.Array, jax.Array]:
  """Multinomial logistic regression, full batch, by L-BFGS with a zoom line search (optax),
  until the gradient norm is below `tol` or `max_iter` iterations."""
  loss_fn = partial(logistic_loss, features=features, labels=labels, l2=l2)
  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss_fn)
  start = (jnp.zeros((features.shape[1], num_classes)), jnp.zeros((num_classes,)))

  def step(carry):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=loss_fn)
    return optax.apply_updates(params, updates), state

  def unfinished(carry):
    _, state = carry
    count = optax.tree_utils.tree_get(state, 'count')
    grad_norm = optax.tree_utils.tree_norm(optax.tree_utils.tree_get(state, 'grad'))
    return (count == 0) | ((count < max_iter) & (grad_norm >= tol))

  params, _ = jax.lax.while_loop(unfinished, step, (start, solver.init(start)))
  return params


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
