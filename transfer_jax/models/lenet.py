"""The LeNet-style digits networks used across the domain-adaptation literature."""

import flax.linen as nn
import jax.numpy as jnp


class DannLeNetFeatures(nn.Module):
  """Feature extractor of the DANN paper's MNIST network (Ganin et al. 2016, appendix).

  conv 32@5x5 (valid) -> ReLU -> max-pool 2 -> conv 48@5x5 (valid) -> ReLU -> max-pool 2 ->
  flatten. On 28x28 inputs the features have 4*4*48 = 768 dimensions.
  """

  @nn.compact
  def __call__(self, images_BxHxWxC: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    del train  # No dropout or batch statistics in this network.
    x = nn.Conv(32, (5, 5), padding='VALID', name='conv1')(images_BxHxWxC)
    x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    x = nn.Conv(48, (5, 5), padding='VALID', name='conv2')(x)
    x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    # Flatten in (channel, height, width) order so the feature layout, and hence the first dense
    # layer's weights, match torch's `x.flatten(1)` on NCHW tensors.
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
