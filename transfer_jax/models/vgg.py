"""VGG-16 feature extractor in torchvision's layout (Simonyan & Zisserman 2015, configuration D).

Module names mirror torchvision's `nn.Sequential` indices with `.` replaced by `_`, so a PyTorch
state_dict maps mechanically (`transfer_jax.transfer.torch_import`):

  features.{0,2,5,7,10,...,28}.{weight,bias}   -> features_{i}/{kernel,bias}     (OIHW -> HWIO)
  classifier.0.{weight,bias}                   -> classifier_0/{kernel,bias}     (25088 -> 4096)
  classifier.3.{weight,bias}                   -> classifier_3/{kernel,bias}     (4096 -> 4096)
  classifier.6.{weight,bias}                   -> the classifier head, kept outside the backbone

The features are the 4096-d output of torchvision's classifier trunk (Linear, ReLU, Dropout,
Linear, ReLU, Dropout). The pooled 7x7 map is flattened in (channel, height, width) order, as
torch flattens NCHW tensors, so classifier_0's kernel is torch's weight transposed, with no
permutation of its 25088 input rows.

`dtype` is the computation dtype (mixed precision: 'bfloat16' computes in bfloat16 while the
parameters, and hence optimizer state, stay float32); the features are returned in float32.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from transfer_jax.errors import UserError

# Configuration D: conv widths, 'M' for a 2x2/2 max-pool.
VGG16_LAYERS = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M',
                512, 512, 512, 'M')

# torchvision: kaiming_normal_(fan_out, relu) for convs, normal(0, 0.01) for linears, zero biases.
_conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
_dense_init = nn.initializers.normal(0.01)


def adaptive_avg_pool(x_BxHxWxC: jnp.ndarray, output_size: tuple[int, int]) -> jnp.ndarray:
  """torch's `AdaptiveAvgPool2d` on NHWC: output bin i averages rows floor(i*H/n):ceil((i+1)*H/n).

  Exact for every input size (downsampling, identity, or the replicating upsample torch does
  when the map is smaller than the output); written as two small averaging matrices.
  """
  _, height, width, _ = x_BxHxWxC.shape
  if height == 0 or width == 0:
    raise UserError(f'adaptive average pooling of an empty {height}x{width} map')
  if (height, width) == tuple(output_size):
    return x_BxHxWxC
  rows = _bin_matrix(height, output_size[0])
  cols = _bin_matrix(width, output_size[1])
  return jnp.einsum('ih,jw,bhwc->bijc', rows, cols, x_BxHxWxC)


def _bin_matrix(size: int, bins: int) -> np.ndarray:
  """(bins, size) matrix whose row i averages torch's adaptive-pooling window i."""
  matrix = np.zeros((bins, size), np.float32)
  for i in range(bins):
    start, end = (i * size) // bins, -((-(i + 1) * size) // bins)
    matrix[i, start:end] = 1.0 / (end - start)
  return matrix


class VGGFeatures(nn.Module):
  """VGG without its last Linear: NHWC images -> 4096-d features (after ReLU and dropout).

  torchvision's adaptive average pooling to 7x7 is the identity for 224x224 inputs and is
  reproduced exactly for other sizes (>= 32x32).
  """

  layers: Sequence[int | str] = VGG16_LAYERS
  hidden: int = 4096
  dropout: float = 0.5
  dtype: Any = jnp.float32   # Computation dtype; parameters are float32 (see the module doc).

  @nn.compact
  def __call__(self, images_BxHxWxC: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    min_size = 2 ** sum(layer == 'M' for layer in self.layers)
    if min(images_BxHxWxC.shape[1:3]) < min_size:
      raise UserError(f'VGG needs images of at least {min_size}x{min_size} pixels, got '
                      f'{images_BxHxWxC.shape[1]}x{images_BxHxWxC.shape[2]}')
    x = images_BxHxWxC
    index = 0  # Position in torchvision's `features` Sequential (conv, ReLU, ..., MaxPool).
    for layer in self.layers:
      if layer == 'M':
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        index += 1
      else:
        x = nn.Conv(layer, (3, 3), padding=((1, 1), (1, 1)), kernel_init=_conv_init,
                    dtype=self.dtype, name=f'features_{index}')(x)
        x = nn.relu(x)
        index += 2
    x = adaptive_avg_pool(x, (7, 7)).astype(x.dtype)
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # torch's NCHW flatten order.
    for index in (0, 3):
      x = nn.Dense(self.hidden, kernel_init=_dense_init, dtype=self.dtype,
                   name=f'classifier_{index}')(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))
    return x.astype(jnp.float32)
