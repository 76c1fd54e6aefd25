"""The LeNet-style digits networks used across the domain-adaptation literature.

Each block is conv 5x5 (valid) -> ReLU -> max-pool 2x2, in one of two formulations with the same
parameters, outputs and gradients (tests/test_models.py):

  'xla'    textbook: `lax.conv_general_dilated` + bias, ReLU, `reduce_window` max-pool, all
           differentiated by JAX.
  'fused'  the same function rewritten for XLA:CPU, where 'xla' spends most of a training step in
           the pool's gradient (select-and-scatter, lowered to index-tracking reduce-windows and a
           scatter over the full-size map) and in zero padding:
           - the pool is a reshape + max, taken before the bias and the ReLU (max(y + b) is
             max(y) + b exactly, and ReLU is monotonic), with a custom gradient that goes to the
             first maximum of each window, as in torch's max_pool2d and XLA's select-and-scatter;
           - the input gradient of the convolution pads only the width (see `_conv_input_grad`).
           On a 2-core CPU the DANN step takes 20 ms instead of 64 (python -m
           transfer_jax.bench.dann_step, with runtime.CPU_XLA_FLAGS; 37 and 84 ms without).
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from transfer_jax.errors import UserError

_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')


def _conv(x_BxHxWxI: jnp.ndarray, kernel_HxWxIxO: jnp.ndarray) -> jnp.ndarray:
  return lax.conv_general_dilated(x_BxHxWxI, kernel_HxWxIxO, (1, 1), 'VALID',
                                  dimension_numbers=_DIMENSIONS)


def conv_relu_pool_xla(x: jnp.ndarray, kernel: jnp.ndarray, bias: jnp.ndarray) -> jnp.ndarray:
  """The textbook block, as nn.Conv + nn.relu + nn.max_pool compute it."""
  return nn.max_pool(nn.relu(_conv(x, kernel) + bias), (2, 2), strides=(2, 2))


# --- 'fused' -----------------------------------------------------------------------------------

@jax.custom_vjp
def conv_valid(x_BxHxWxI: jnp.ndarray, kernel_HxWxIxO: jnp.ndarray) -> jnp.ndarray:
  """A 'VALID' stride-1 convolution whose input gradient skips most of XLA's zero padding."""
  return _conv(x_BxHxWxI, kernel_HxWxIxO)


def _conv_forward(x, kernel):
  return _conv(x, kernel), (x, kernel)


def _conv_backward(residuals, grad_y):
  x, kernel = residuals
  grad_kernel = jax.vjp(lambda k: _conv(x, k), kernel)[1](grad_y)[0]
  return _conv_input_grad(grad_y, kernel), grad_kernel


conv_valid.defvjp(_conv_forward, _conv_backward)


def _conv_input_grad(grad_y_BxHxWxO: jnp.ndarray, kernel_HxWxIxO: jnp.ndarray) -> jnp.ndarray:
  """The transposed convolution as one width-only convolution plus a sum over kernel rows.

  XLA pads the gradient by kernel-1 on all four sides (8x8 -> 16x16 for conv2: 2.25x the useful
  multiply-adds). Here only the width is padded: a (1, kw) convolution gives every kernel row's
  contribution as kh*I output channels, which are then added at their row offsets (1.5x).
  """
  kh, kw, features_in, features_out = kernel_HxWxIxO.shape
  flipped = jnp.flip(kernel_HxWxIxO, (0, 1))
  # (1, kw, O, kh*I): output channel (r, c) is the flipped kernel's row r, input channel c.
  row_kernel = jnp.transpose(flipped, (1, 3, 0, 2)).reshape(1, kw, features_out, kh * features_in)
  rows = lax.conv_general_dilated(grad_y_BxHxWxO, row_kernel, (1, 1), ((0, 0), (kw - 1, kw - 1)),
                                  dimension_numbers=_DIMENSIONS)
  b, h, w, _ = rows.shape
  rows = rows.reshape(b, h, w, kh, features_in)
  # Flipped row r is kernel row kh-1-r: output row y reaches input row y + kh-1-r through it.
  return sum(jnp.pad(rows[:, :, :, r], ((0, 0), (kh - 1 - r, r), (0, 0), (0, 0)))
             for r in range(kh))


def _pool(windows: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Max over windows (A, H, 2, W, 2, C), and where its first occurrence is (2*row + column)."""
  pooled = windows.max(axis=(2, 4))
  first = jnp.full(pooled.shape, 3, jnp.int8)
  for position in (2, 1, 0):
    first = jnp.where(windows[:, :, position // 2, :, position % 2, :] == pooled,
                      jnp.int8(position), first)
  return pooled, first


def _unpool(first: jnp.ndarray, grad_pooled: jnp.ndarray) -> jnp.ndarray:
  """The gradient of `_pool`: (A, H, W, C) -> (A, H, 2, W, 2, C), nonzero at the first maxima."""
  shape = (1, 1, 2, 1, 2, 1)
  position = 2 * lax.broadcasted_iota(jnp.int8, shape, 2) + lax.broadcasted_iota(jnp.int8, shape, 4)
  return jnp.where(first[:, :, None, :, None, :] == position, grad_pooled[:, :, None, :, None, :],
                   0.0)


def _windows(y_BxHxWxC: jnp.ndarray) -> jnp.ndarray:
  b, h, w, c = y_BxHxWxC.shape
  return y_BxHxWxC.reshape(b, h // 2, 2, w // 2, 2, c)


def max_pool_2x2(y_BxHxWxC: jnp.ndarray) -> jnp.ndarray:
  """2x2 'VALID' max-pool whose gradient goes to the first maximum of each window."""
  _, h, w, _ = y_BxHxWxC.shape
  return _max_pool_even(y_BxHxWxC[:, :h // 2 * 2, :w // 2 * 2])  # An odd last row is dropped.


@jax.custom_vjp
def _max_pool_even(y_BxHxWxC: jnp.ndarray) -> jnp.ndarray:
  return _windows(y_BxHxWxC).max(axis=(2, 4))


def _max_pool_forward(y):
  return _pool(_windows(y))


def _max_pool_backward(first, grad_pooled):
  b, h, w, c = grad_pooled.shape
  return (_unpool(first, grad_pooled).reshape(b, 2 * h, 2 * w, c),)


_max_pool_even.defvjp(_max_pool_forward, _max_pool_backward)


def conv_relu_pool_fused(x: jnp.ndarray, kernel: jnp.ndarray, bias: jnp.ndarray) -> jnp.ndarray:
  """The textbook block with the pool first (bias and ReLU then touch a quarter of the values)."""
  return nn.relu(max_pool_2x2(conv_valid(x, kernel)) + bias)


def conv_relu_xla(x: jnp.ndarray, kernel: jnp.ndarray, bias: jnp.ndarray) -> jnp.ndarray:
  """conv (valid) -> ReLU without a pool, as nn.Conv + nn.relu compute it."""
  return nn.relu(_conv(x, kernel) + bias)


def conv_relu_fused(x: jnp.ndarray, kernel: jnp.ndarray, bias: jnp.ndarray) -> jnp.ndarray:
  """conv (valid) -> ReLU without a pool, the convolution's input gradient `conv_valid`'s."""
  return nn.relu(conv_valid(x, kernel) + bias)


# config.model.conv_impl -> (block with the 2x2 max-pool, block without) (x NHWC, kernel HWIO,
# bias) -> activations NHWC.
CONV_IMPLS: dict[str, tuple[Callable[..., jnp.ndarray], Callable[..., jnp.ndarray]]] = {
    'xla': (conv_relu_pool_xla, conv_relu_xla),
    'fused': (conv_relu_pool_fused, conv_relu_fused),
}


class ConvReluPool(nn.Module):
  """Conv `kernel_size` x `kernel_size` (valid) -> ReLU (-> max-pool 2x2 if `pool`), with
  nn.Conv's parameters (HWIO kernel, bias)."""

  features: int
  conv_impl: str = 'fused'
  dtype: Any = jnp.float32   # Computation dtype (the parameters stay float32).
  kernel_size: int = 5
  pool: bool = True

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    if self.conv_impl not in CONV_IMPLS:
      raise UserError(f'unknown config.model.conv_impl={self.conv_impl!r}; choose one of '
                      f'{sorted(CONV_IMPLS)}')
    # nn.Conv's names, shapes and initialisers: checkpoints of either formulation load in both.
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (self.kernel_size, self.kernel_size, x.shape[-1], self.features),
                        jnp.float32)
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,), jnp.float32)
    block = CONV_IMPLS[self.conv_impl][0 if self.pool else 1]
    return block(x.astype(self.dtype), kernel.astype(self.dtype), bias.astype(self.dtype))


class LeNetFeatures(nn.Module):
  """The LeNet family of the domain-adaptation literature, one module with different fields.

  conv 5x5 (valid, after `conv_padding` zeros on each side) -> ReLU -> max-pool 2 blocks of
  widths `conv` (channel dropout of rate
  `conv_dropout` on the last block's maps, torch's Dropout2d), flattened in torch's (channel,
  height, width) order, then Dense -> ReLU (-> Dropout `dense_dropout`) layers of widths `dense`,
  then an optional bottleneck Dense `bottleneck` (-> BatchNorm) -> ReLU (-> Dropout
  `bottleneck_dropout`, its kept units scaled by 1/sqrt(1-p) if `bottleneck_dropout_l2`: SAFN's
  L2-preserved dropout). The features are the last layer's output. Max-pool, ReLU and a
  per-channel scale by 0 or 1/(1-p) commute, so the order of conv -> Dropout2d -> pool -> ReLU
  (TLlib) and conv -> ReLU -> pool does not matter.

    DANN paper (Ganin et al. 2016)  conv=(32, 48)                             768-d features
    TLlib digits LeNet               conv=(20, 50), conv_dropout=0.5, dense=(500,),
                                     dense_dropout=0.5, bottleneck=256 + BatchNorm
    LeNet-5 (LeCun et al. 1998)      conv=(6, 16), dense=(120, 84) on 32x32 inputs
  """

  conv: tuple[int, ...] = (32, 48)
  conv_padding: int = 0   # Zeros on each side before every conv (2: TensorFlow's 'SAME' 5x5).
  conv_dropout: float = 0.0
  dense: tuple[int, ...] = ()
  dense_dropout: float = 0.0
  bottleneck: int = 0
  bottleneck_batch_norm: bool = True
  bottleneck_dropout: float = 0.0
  bottleneck_dropout_l2: bool = False
  # > 0: the bottleneck Dense's kernel and bias drawn from N(0, std), its BatchNorm scale from
  # N(1, std) (TLlib's AFN ImageClassifier); 0: flax's defaults (LeCun normal, zeros, ones).
  bottleneck_init_std: float = 0.0
  conv_impl: str = 'fused'  # A key of CONV_IMPLS: 'fused' (fast on CPU) or 'xla' (textbook).
  # Computation dtype (config.model.dtype; 'bfloat16': mixed precision, float32 parameters and
  # BatchNorm statistics); the features are returned in float32.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images_BxHxWxC: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    x = images_BxHxWxC
    for i, width in enumerate(self.conv):
      if self.conv_padding:
        p = self.conv_padding
        x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
      x = ConvReluPool(width, self.conv_impl, self.dtype, name=f'conv{i + 1}')(x)
    if self.conv_dropout:  # Whole channels dropped (NHWC: the mask broadcasts over H and W).
      x = nn.Dropout(self.conv_dropout, broadcast_dims=(1, 2), deterministic=not train)(x)
    # Flatten in (channel, height, width) order so the feature layout, and hence the first dense
    # layer's weights, match torch's `x.flatten(1)` on NCHW tensors.
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
    for i, width in enumerate(self.dense):
      x = nn.relu(nn.Dense(width, dtype=self.dtype, name=f'fc{i + 1}')(x))
      if self.dense_dropout:
        x = nn.Dropout(self.dense_dropout, deterministic=not train)(x)
    if self.bottleneck:
      std = self.bottleneck_init_std
      init = ({'kernel_init': nn.initializers.normal(std), 'bias_init': nn.initializers.normal(std)}
              if std else {})
      x = nn.Dense(self.bottleneck, dtype=self.dtype, name='bottleneck', **init)(x)
      if self.bottleneck_batch_norm:  # torch's BatchNorm1d: momentum 0.1, eps 1e-5.
        scale = ({'scale_init': lambda key, shape, dtype=jnp.float32:
                  1.0 + std * jax.random.normal(key, shape, dtype)} if std else {})
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         dtype=self.dtype, name='bottleneck_bn', **scale)(x)
      x = nn.relu(x)
      if self.bottleneck_dropout:
        x = nn.Dropout(self.bottleneck_dropout, deterministic=not train)(x)
        if train and self.bottleneck_dropout_l2:  # 1/(1-p) -> 1/sqrt(1-p), as TLlib's Block.
          x = x * jnp.sqrt(1.0 - self.bottleneck_dropout).astype(x.dtype)
    return x.astype(jnp.float32)


def DannLeNetFeatures(conv_impl: str = 'fused', dtype: Any = jnp.float32) -> LeNetFeatures:  # noqa: N802
  """The DANN paper's MNIST feature extractor (Ganin et al. 2016, appendix): conv 32@5x5 ->
  ReLU -> max-pool 2 -> conv 48@5x5 -> ReLU -> max-pool 2 -> flatten (768-d on 28x28)."""
  return LeNetFeatures(conv=(32, 48), conv_impl=conv_impl, dtype=dtype)
