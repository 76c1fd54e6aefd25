"""Multi-layer perceptrons: heads (classifier, domain discriminator) and vector-data backbones."""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
  """Dense (-> BatchNorm) -> ReLU stack ending in a linear layer of `out_dim` units (no final
  activation). `batch_norm`: torch's BatchNorm1d after each hidden Dense (TLlib's domain
  discriminator). `dropout_before`: dropout on the input of each hidden Dense instead of after
  its ReLU (TLlib's MCD head: Dropout -> Dense -> BatchNorm -> ReLU, twice, -> Dense)."""

  hidden: Sequence[int]
  out_dim: int
  dropout: float = 0.0
  batch_norm: bool = False
  dropout_before: bool = False
  init_std: float = 0.0   # > 0: every Dense's kernel and bias from N(0, std) (TLlib's AFN head).

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    init = ({'kernel_init': nn.initializers.normal(self.init_std),
             'bias_init': nn.initializers.normal(self.init_std)} if self.init_std else {})
    for i, width in enumerate(self.hidden):
      if self.dropout and self.dropout_before:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = nn.Dense(width, name=f'dense{i}', **init)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         name=f'bn{i}')(x)
      x = nn.relu(x)
      if self.dropout and not self.dropout_before:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.out_dim, name='out', **init)(x)


class MLPFeatures(nn.Module):
  """Feature extractor for vector data (text, SURF): Dense (-> BatchNorm) -> ReLU layers."""

  hidden: Sequence[int]
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    for i, width in enumerate(self.hidden):
      x = nn.Dense(width, name=f'dense{i}')(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f'bn{i}')(x)
      x = nn.relu(x)
    return x


class ResidualMLP(nn.Module):
  """x + g(x), g a Dense-ReLU stack whose last layer starts at zero: the identity at init."""

  hidden: Sequence[int]

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    h = x
    for i, width in enumerate(self.hidden):
      h = nn.relu(nn.Dense(width, name=f'dense{i}')(h))
    return x + nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros, name='out')(h)
