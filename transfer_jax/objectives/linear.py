"""Linear models fitted in full batch to fixed features: ridge regression in closed form and
L2-regularised multinomial logistic regression by L-BFGS. The feature probes
(`features.probes`) and the importance weights of the selection criteria (`selection`) fit them.
"""

from functools import partial

import jax
import jax.numpy as jnp
import optax


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
