"""The small CNN of PyTorch's MNIST example, as skada-bench uses it for MNIST <-> USPS.

skada-bench (scikit-adaptation/skada-bench, benchmark_utils/backbones_architecture.py
ShallowConvNet, after pytorch/examples mnist/main.py): conv 3x3 1->32 -> ReLU -> conv 3x3 32->64
-> ReLU -> max-pool 2 -> Dropout(0.25) -> flatten (9216 on 28x28) -> Linear 128 -> ReLU ->
Dropout(0.5). Those 128 values, dropout included, are its `feature_layer` output: the features
its DA losses and discriminators read. Its `final_layer` Linear 128 -> 10 is our classifier head.

The conv blocks are lenet.py's (`conv_impl`): 'fused' takes the pool before the last block's bias
and ReLU (they commute with max) with the first-maximum gradient, and the convolutions' input
gradient with width-only padding; 'xla' is the textbook nn.Conv -> ReLU -> nn.max_pool. Same
parameters (nn.Conv's names), outputs and gradients (tests/test_small_cnn.py); on XLA:CPU
'fused' trains faster (python -m transfer_jax.bench.dann_step --net skada).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from transfer_jax.models.lenet import ConvReluPool


class SmallCNNFeatures(nn.Module):
  """conv 3x3 (valid) -> ReLU blocks of widths `conv`, one 2x2 max-pool, dropout `conv_dropout`
  (element-wise, torch's nn.Dropout), flatten in torch's (channel, height, width) order, then
  Dense `dense` -> ReLU -> dropout `dense_dropout`: the features (128-d by default)."""

  conv: tuple[int, ...] = (32, 64)
  conv_dropout: float = 0.25
  dense: int = 128
  dense_dropout: float = 0.5
  conv_impl: str = 'fused'  # A key of lenet.CONV_IMPLS: 'fused' (fast on CPU) or 'xla' (textbook).
  dtype: Any = jnp.float32  # Computation dtype; parameters stay float32.

  @nn.compact
  def __call__(self, images_BxHxWxC: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    x = images_BxHxWxC.astype(self.dtype)
    for i, width in enumerate(self.conv):   # The last block ends in the 2x2 max-pool.
      x = ConvReluPool(width, self.conv_impl, self.dtype, kernel_size=3,
                       pool=i == len(self.conv) - 1, name=f'conv{i + 1}')(x)
    x = nn.Dropout(self.conv_dropout, deterministic=not train)(x)
    # torch's x.flatten(1) on NCHW: the first dense layer's weights keep torch's layout.
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.dense, dtype=self.dtype, name='fc1')(x))
    x = nn.Dropout(self.dense_dropout, deterministic=not train)(x)
    return x.astype(jnp.float32)
