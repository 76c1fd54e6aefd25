"""The small CNN of PyTorch's MNIST example, as skada-bench uses it for MNIST <-> USPS.

skada-bench (scikit-adaptation/skada-bench, benchmark_utils/backbones_architecture.py
ShallowConvNet, after pytorch/examples mnist/main.py): conv 3x3 1->32 -> ReLU -> conv 3x3 32->64
-> ReLU -> max-pool 2 -> Dropout(0.25) -> flatten (9216 on 28x28) -> Linear 128 -> ReLU ->
Dropout(0.5). Those 128 values, dropout included, are its `feature_layer` output: the features
its DA losses and discriminators read. Its `final_layer` Linear 128 -> 10 is our classifier head.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class SmallCNNFeatures(nn.Module):
  """conv 3x3 (valid) -> ReLU blocks of widths `conv`, one 2x2 max-pool, dropout `conv_dropout`
  (element-wise, torch's nn.Dropout), flatten in torch's (channel, height, width) order, then
  Dense `dense` -> ReLU -> dropout `dense_dropout`: the features (128-d by default)."""

  conv: tuple[int, ...] = (32, 64)
  conv_dropout: float = 0.25
  dense: int = 128
  dense_dropout: float = 0.5
  dtype: Any = jnp.float32  # Computation dtype; parameters stay float32.

  @nn.compact
  def __call__(self, images_BxHxWxC: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    x = images_BxHxWxC.astype(self.dtype)
    for i, width in enumerate(self.conv):
      x = nn.relu(nn.Conv(width, (3, 3), padding='VALID', dtype=self.dtype,
                          name=f'conv{i + 1}')(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.Dropout(self.conv_dropout, deterministic=not train)(x)
    # torch's x.flatten(1) on NCHW: the first dense layer's weights keep torch's layout.
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.dense, dtype=self.dtype, name='fc1')(x))
    x = nn.Dropout(self.dense_dropout, deterministic=not train)(x)
    return x.astype(jnp.float32)
