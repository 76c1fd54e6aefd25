"""Schedules of the DANN paper (Ganin et al. 2016, section 5.2.2), functions of progress p, and
TLlib's, functions of the iteration alone (a run made with them can be continued to more steps)."""

import jax.numpy as jnp
import optax

from transfer_jax.errors import UserError


def dann_trade_off(progress: jnp.ndarray, gamma: float = 10.0) -> jnp.ndarray:
  """Adaptation factor lambda_p = 2 / (1 + exp(-gamma * p)) - 1, rising from 0 to ~1."""
  return 2.0 / (1.0 + jnp.exp(-gamma * progress)) - 1.0


def dann_annealing(base_lr: float, total_steps: int, alpha: float = 10.0,
                   beta: float = 0.75) -> optax.Schedule:
  """Learning rate mu_p = mu_0 / (1 + alpha * p)^beta with p = step / total_steps."""

  def schedule(step):
    progress = jnp.minimum(step / total_steps, 1.0)
    return base_lr / (1.0 + alpha * progress) ** beta

  return schedule


def inverse_decay(base_lr: float, gamma: float = 0.001, power: float = 0.75) -> optax.Schedule:
  """Learning rate lr * (1 + gamma * i)^-power in the iteration i (TLlib's LambdaLR schedule)."""

  def schedule(step):
    return base_lr * (1.0 + gamma * step) ** (-power)

  return schedule


def warm_start(step: jnp.ndarray, alpha: float = 1.0, max_iters: float = 1000.0) -> jnp.ndarray:
  """TLlib's WarmStartGradientReverseLayer coefficient 2 / (1 + exp(-alpha i / N)) - 1 in the
  iteration i, rising from 0 to ~1 (0.46 at i = N, 0.96 at 4N)."""
  return 2.0 / (1.0 + jnp.exp(-alpha * step / max_iters)) - 1.0


def progress(step: jnp.ndarray, total_steps: int) -> jnp.ndarray:
  """Training progress p = step / total_steps, clipped to [0, 1]."""
  return jnp.clip(step / total_steps, 0.0, 1.0)


def ramp(name: str, progress: jnp.ndarray) -> jnp.ndarray:
  """A weight schedule in [0, 1]: 'constant' (1), 'linear' (p) or 'dann' (the DANN ramp)."""
  if name == 'constant':
    return jnp.ones_like(progress)
  if name == 'linear':
    return progress
  if name == 'dann':
    return dann_trade_off(progress)
  raise UserError(f"unknown weight schedule {name!r}; choose 'constant', 'linear' or 'dann'")
