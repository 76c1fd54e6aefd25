"""Backbones whose structure is data, for structural transfer (`transfer_jax.transfer.structure`).

`GrowableMLP` and `GrowableConvNet` are chains of blocks `layer0`, `layer1`, ... whose widths (and,
for the conv net, 2x2 max-pools) are dataclass fields, so an operation on a model can return a new
definition with one more block, a wider block or fewer blocks. Each block is

  dense | conv (kxk, 'SAME')  ->  [bn: BatchNorm]  ->  [adapter: x + up(relu(down(x)))]  ->  ReLU
  (-> 2x2 max-pool where `pools[i]`)

Parameter paths: `layer{i}/dense/{kernel,bias}` (or `conv`), `layer{i}/bn/{scale,bias}`,
`batch_stats/.../layer{i}/bn/{mean,var}`, `layer{i}/adapter/{down,up}/{kernel,bias}`.
The adapter (Rebuffi et al. 2017; the bottleneck of Houlsby et al. 2019) sits before the ReLU so
that every block's output is non-negative: an identity layer inserted after any block is then
exact (Net2DeeperNet). Its up-projection starts at zero, so an adapter adds nothing at init.
`ResNetTrunk` is `ResNetFeatures` cut after its first `num_stages` stages, with the same names.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from transfer_jax.models import resnet

BATCH_NORM_EPSILON = 1e-5  # Net2DeeperNet's identity BatchNorm needs it (scale = sqrt(var + eps)).


class ResidualAdapter(nn.Module):
  """x + up(relu(down(x))): a `bottleneck`-wide residual branch, zero (the identity) at init.

  On conv maps both projections are 1x1 convolutions.
  """

  bottleneck: int
  conv: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    def layer(features, name, **kwargs):
      if self.conv:
        return nn.Conv(features, (1, 1), name=name, **kwargs)
      return nn.Dense(features, name=name, **kwargs)
    h = nn.relu(layer(self.bottleneck, 'down')(x))
    return x + layer(x.shape[-1], 'up', kernel_init=nn.initializers.zeros)(h)


class GrowableBlock(nn.Module):
  """Dense or conv -> optional BatchNorm -> optional residual adapter -> ReLU -> optional pool."""

  width: int
  conv_kernel: int = 0          # 0: a Dense layer; k: a k x k 'SAME' convolution.
  batch_norm: bool = False
  adapter_width: int = 0        # 0: no adapter.
  pool: bool = False            # 2x2 max-pool after the ReLU (conv only).

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    if self.conv_kernel:
      k = self.conv_kernel
      x = nn.Conv(self.width, (k, k), padding='SAME', name='conv')(x)
    else:
      x = nn.Dense(self.width, name='dense')(x)
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=BATCH_NORM_EPSILON,
                       name='bn')(x)
    if self.adapter_width:
      x = ResidualAdapter(self.adapter_width, conv=bool(self.conv_kernel), name='adapter')(x)
    x = nn.relu(x)
    return nn.max_pool(x, (2, 2), strides=(2, 2)) if self.pool else x


class GrowableMLP(nn.Module):
  """Vector features through Dense blocks of `widths` (see the module docstring)."""

  widths: Sequence[int]
  batch_norm: bool = False
  adapter_width: int = 0

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    for i, width in enumerate(self.widths):
      x = GrowableBlock(width, 0, self.batch_norm, self.adapter_width, name=f'layer{i}')(
          x, train=train)
    return x


class GrowableConvNet(nn.Module):
  """NHWC images through conv blocks of `widths`, then a global average pool."""

  widths: Sequence[int]
  kernel_size: int = 3
  pools: Sequence[bool] = ()    # One per block (empty: no pooling).
  batch_norm: bool = False
  adapter_width: int = 0

  @nn.compact
  def __call__(self, images_BxHxWxC: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    pools = tuple(self.pools) or (False,) * len(self.widths)
    if len(pools) != len(self.widths):
      raise ValueError(f'GrowableConvNet: {len(pools)} pools for {len(self.widths)} blocks')
    x = images_BxHxWxC
    for i, (width, pool) in enumerate(zip(self.widths, pools, strict=True)):
      x = GrowableBlock(width, self.kernel_size, self.batch_norm, self.adapter_width, pool,
                        name=f'layer{i}')(x, train=train)
    return jnp.mean(x, axis=(1, 2))


class ResNetTrunk(nn.Module):
  """`ResNetFeatures` up to and including stage `num_stages`, globally average-pooled.

  Same module names as `ResNetFeatures` (`conv1`, `bn1`, `layer{s}_{i}`), so its variables are a
  subset of the full network's.
  """

  depth: int = 18
  stem: str = 'imagenet'
  widths: Sequence[int] = (64, 128, 256, 512)
  num_stages: int = 4

  @nn.compact
  def __call__(self, images_BxHxWxC: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    blocks_per_stage, bottleneck = resnet._STAGES[self.depth]
    block = resnet.Bottleneck if bottleneck else resnet.BasicBlock
    if self.stem == 'imagenet':
      x = resnet._conv(self.widths[0], 7, 2, 'conv1', jnp.float32)(images_BxHxWxC)
      x = nn.relu(resnet._batch_norm(train, 'bn1', jnp.float32)(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
      x = resnet._conv(self.widths[0], 3, 1, 'conv1', jnp.float32)(images_BxHxWxC)
      x = nn.relu(resnet._batch_norm(train, 'bn1', jnp.float32)(x))
    stages = list(zip(blocks_per_stage, self.widths, strict=True))[:self.num_stages]
    for stage, (num_blocks, planes) in enumerate(stages):
      for i in range(num_blocks):
        stride = 2 if stage > 0 and i == 0 else 1
        x = block(planes, stride, name=f'layer{stage + 1}_{i}')(x, train=train)
    return jnp.mean(x, axis=(1, 2))
