"""ResNet-18 and ResNet-50 feature extractors in torchvision's layout (He et al. 2016).

Module names mirror torchvision so that a PyTorch state_dict maps mechanically
(`transfer_jax.transfer.torch_import`): every `.N` (an `nn.Sequential` index) is joined to the
name before it with `_`, and torch's leaf names become Flax's:

  conv1.weight                       -> conv1/kernel             (OIHW -> HWIO)
  bn1.{weight,bias}                  -> bn1/{scale,bias}          (params)
  bn1.{running_mean,running_var}     -> bn1/{mean,var}            (batch_stats)
  layer2.0.conv2.weight              -> layer2_0/conv2/kernel
  layer2.0.downsample.0.weight       -> layer2_0/downsample_0/kernel   (1x1 conv)
  layer2.0.downsample.1.weight       -> layer2_0/downsample_1/scale    (its BatchNorm)
  fc.{weight,bias}                   -> the classifier head, kept outside the backbone

ResNet-50 is torchvision's v1.5: the bottleneck strides on its 3x3 conv (conv2), not on conv1.
Padding is explicit and equal to torch's ('SAME' differs from torch for stride 2).
BatchNorm normalises with the batch's biased variance in training, as torch does, but torch
updates `running_var` with the unbiased variance while Flax uses the biased one; the difference
is a factor n/(n-1) on the running estimate only.

`dtype` is the computation dtype (mixed precision: 'bfloat16' computes convolutions and
BatchNorm outputs in bfloat16, while parameters, and hence optimizer state, stay float32 and
BatchNorm statistics are computed in float32); the features are returned in float32.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

# torchvision initialises convolutions with kaiming_normal_(mode='fan_out', nonlinearity='relu').
_conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')

# Blocks per stage for each depth, and whether the depth uses bottleneck blocks.
_STAGES = {18: ((2, 2, 2, 2), False), 50: ((3, 4, 6, 3), True)}


def _conv(features: int, kernel: int, stride: int, name: str, dtype: Any) -> nn.Conv:
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((pad, pad), (pad, pad)), use_bias=False, kernel_init=_conv_init,
                 dtype=dtype, name=name)


def _batch_norm(train: bool, name: str, dtype: Any) -> nn.BatchNorm:
  # torch's momentum 0.1 weights the new batch; Flax's momentum weights the running average.
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                      name=name)


class BasicBlock(nn.Module):
  """Two 3x3 convs with a residual connection (ResNet-18/34); output width `planes`."""

  planes: int
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    dt = self.dtype
    y = nn.relu(_batch_norm(train, 'bn1', dt)(_conv(self.planes, 3, self.stride, 'conv1', dt)(x)))
    y = _batch_norm(train, 'bn2', dt)(_conv(self.planes, 3, 1, 'conv2', dt)(y))
    return nn.relu(y + _shortcut(x, self.planes, self.stride, train, dt))


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (strided, v1.5), 1x1 expand x4, residual (ResNet-50/101/152)."""

  planes: int
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    dt = self.dtype
    y = nn.relu(_batch_norm(train, 'bn1', dt)(_conv(self.planes, 1, 1, 'conv1', dt)(x)))
    y = nn.relu(_batch_norm(train, 'bn2', dt)(_conv(self.planes, 3, self.stride, 'conv2', dt)(y)))
    y = _batch_norm(train, 'bn3', dt)(_conv(4 * self.planes, 1, 1, 'conv3', dt)(y))
    return nn.relu(y + _shortcut(x, 4 * self.planes, self.stride, train, dt))


def _shortcut(x: jnp.ndarray, width: int, stride: int, train: bool, dtype: Any) -> jnp.ndarray:
  """Identity, or torchvision's `downsample` (1x1 conv + BN) when the shape changes."""
  if stride == 1 and x.shape[-1] == width:
    return x
  x = _conv(width, 1, stride, 'downsample_0', dtype)(x)
  return _batch_norm(train, 'downsample_1', dtype)(x)


class ResNetFeatures(nn.Module):
  """ResNet without its `fc` head: NHWC images -> globally average-pooled features.

  `stem='imagenet'` is torchvision's (7x7/2 conv, 3x3/2 max-pool); `stem='cifar'` is the usual
  small-image variant (3x3/1 conv, no max-pool) with the same parameter names. Features have
  512 dimensions for ResNet-18 and 2048 for ResNet-50.
  """

  depth: int = 18
  stem: str = 'imagenet'
  widths: Sequence[int] = (64, 128, 256, 512)
  dtype: Any = jnp.float32   # Computation dtype; parameters are float32 (see the module doc).

  @nn.compact
  def __call__(self, images_BxHxWxC: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    if self.depth not in _STAGES:
      raise ValueError(f'ResNet depth {self.depth} is not built here; choose one of '
                       f'{sorted(_STAGES)}')
    if self.stem not in ('imagenet', 'cifar'):
      raise ValueError(f"unknown ResNet stem {self.stem!r}; choose 'imagenet' or 'cifar'")
    blocks_per_stage, bottleneck = _STAGES[self.depth]
    block = Bottleneck if bottleneck else BasicBlock
    dt = self.dtype
    if self.stem == 'imagenet':
      x = _conv(self.widths[0], 7, 2, 'conv1', dt)(images_BxHxWxC)
      x = nn.relu(_batch_norm(train, 'bn1', dt)(x))
      # Flax pads max-pooling with -inf, as torch does.
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
      x = _conv(self.widths[0], 3, 1, 'conv1', dt)(images_BxHxWxC)
      x = nn.relu(_batch_norm(train, 'bn1', dt)(x))
    for stage, (num_blocks, planes) in enumerate(zip(blocks_per_stage, self.widths, strict=True)):
      for i in range(num_blocks):
        stride = 2 if stage > 0 and i == 0 else 1
        x = block(planes, stride, dt, name=f'layer{stage + 1}_{i}')(x, train=train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))
