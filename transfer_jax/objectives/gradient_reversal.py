"""Gradient reversal layer (Ganin & Lempitsky 2015): identity forward, -coeff * grad backward."""

import jax
import jax.numpy as jnp


@jax.custom_vjp
def gradient_reversal(x: jnp.ndarray, coeff: jnp.ndarray | float) -> jnp.ndarray:
  """Returns `x`; the backward pass multiplies the incoming gradient by `-coeff`.

  `coeff` receives a zero gradient: it is a schedule value, not a parameter.
  """
  del coeff
  return x


def _forward(x, coeff):
  return x, coeff


def _backward(coeff, grad):
  return (jax.tree.map(lambda g: -coeff * g, grad), jnp.zeros_like(coeff))


gradient_reversal.defvjp(_forward, _backward)
