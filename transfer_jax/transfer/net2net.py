"""Net2WiderNet and Net2DeeperNet (Chen, Goodfellow & Shlens 2016, "Net2Net"): a bigger network
that computes the same function, on GrowableMLP / GrowableConvNet backbones.

widen(model, variables, layer, width, rng=..., noise=0.)
  Block `layer` gets `width` units (output channels for a conv block) through a random mapping
  g: unit j < n is unit j, each extra unit copies a random existing one. Its kernel columns,
  bias, BatchNorm scale/bias/mean/var and adapter up-projection are gathered by g; whatever reads
  the block (the next block's kernel, the adapter's down-projection, or the first layer of every
  MLP head for the last block) gets its input rows gathered by g and divided by the number of
  copies of each unit, so the sum over copies is the old weight. Exact in eval and train mode
  (BatchNorm statistics are per channel). `noise` > 0 adds N(0, (noise * std)^2) to the
  outgoing weights of replicated units, so that copies receive different gradients: the
  function then changes by about `noise`.

deepen(model, variables, after, rng=...)
  A new block after block `after`, of the same width, initialised to the identity: identity
  Dense kernel, or a conv kernel whose centre tap is the identity, zero bias. It is exact because
  every block ends in a ReLU (adapters sit before it), so its input is non-negative and
  ReLU(x) = x. With BatchNorm the new layer's statistics are mean 0, variance 1 and its
  scale = sqrt(1 + eps), bias 0: the identity in eval mode (running statistics). In train mode
  BatchNorm normalises with the batch's statistics, so the new block is only close to the
  identity there. A new adapter starts at zero.

A bare backbone widened at its last block returns wider, replicated features (nothing reads
them); in a wrapper model the heads absorb the change.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from transfer_jax.errors import UserError
from transfer_jax.models.growable import BATCH_NORM_EPSILON, GrowableConvNet
from transfer_jax.transfer.adapters import init_adapter
from transfer_jax.transfer.structure import (
    Variables,
    backbone_of,
    backbone_variables,
    check_growable,
    feature_heads,
    first_layer,
    with_backbone,
    with_backbone_variables,
)


def widen(model: Any, variables: Variables, layer: int, width: int, *, rng: jax.Array,
          noise: float = 0.0) -> tuple[Any, Variables]:
  """Net2WiderNet: block `layer` widened to `width` units, same outputs (up to `noise`)."""
  backbone = backbone_of(model)
  check_growable(backbone, 'widen')
  widths = list(backbone.widths)
  if not 0 <= layer < len(widths):
    raise UserError(f'widen: layer={layer} is not in 0..{len(widths) - 1}')
  old = widths[layer]
  if width < old:
    raise UserError(f'widen: width={width} is smaller than the current {old}')
  mapping_rng, noise_rng = jax.random.split(rng)
  mapping = jnp.concatenate([jnp.arange(old),
                             jax.random.randint(mapping_rng, (width - old,), 0, old)])
  copies = jnp.bincount(mapping, length=old)[mapping].astype(jnp.float32)  # Per new unit.

  def gather_outputs(array):  # Last axis: the widened units.
    return jnp.take(array, mapping, axis=-1)

  def split_inputs(kernel, rng=None):  # Axis -2 (Dense (in, out), conv HWIO): the inputs.
    grown = jnp.take(kernel, mapping, axis=-2) / copies[:, None]
    if rng is None or not noise:
      return grown
    replicated = (copies > 1).astype(kernel.dtype)[:, None]
    return grown + noise * jnp.std(kernel) * replicated * jax.random.normal(rng, grown.shape)

  kind = 'conv' if isinstance(backbone, GrowableConvNet) else 'dense'
  backbone_vars = backbone_variables(model, variables)
  block = backbone_vars['params'][f'layer{layer}']
  block[kind] = {name: gather_outputs(value) for name, value in block[kind].items()}
  if 'bn' in block:
    block['bn'] = {name: gather_outputs(value) for name, value in block['bn'].items()}
    stats = backbone_vars['batch_stats'][f'layer{layer}']
    stats['bn'] = {name: gather_outputs(value) for name, value in stats['bn'].items()}
  if 'adapter' in block:
    down, up = block['adapter']['down'], block['adapter']['up']
    block['adapter'] = {'down': {'kernel': split_inputs(down['kernel']), 'bias': down['bias']},
                        'up': {name: gather_outputs(value) for name, value in up.items()}}
  widths[layer] = width
  new_model = with_backbone(model, backbone.clone(widths=tuple(widths)))
  if layer + 1 < len(widths):
    following = backbone_vars['params'][f'layer{layer + 1}'][kind]
    following['kernel'] = split_inputs(following['kernel'], noise_rng)
    return new_model, with_backbone_variables(model, variables, backbone_vars)
  new_variables = with_backbone_variables(model, variables, backbone_vars)
  for key, head in feature_heads(model).items():
    if key not in new_variables['params']:
      continue  # A head that was never initialised (TransferModel.init without init_all).
    noise_rng, head_rng = jax.random.split(noise_rng)
    dense = new_variables['params'][key][first_layer(head, key)]
    dense['kernel'] = split_inputs(dense['kernel'], head_rng)
  return new_model, new_variables


def deepen(model: Any, variables: Variables, after: int, *,
           rng: jax.Array) -> tuple[Any, Variables]:
  """Net2DeeperNet: an identity-initialised block inserted after block `after` (see above)."""
  backbone = backbone_of(model)
  check_growable(backbone, 'deepen')
  widths = list(backbone.widths)
  if not 0 <= after < len(widths):
    raise UserError(f'deepen: after={after} is not in 0..{len(widths) - 1}')
  width = widths[after]
  conv = isinstance(backbone, GrowableConvNet)
  if conv:
    k = backbone.kernel_size
    centre = (k - 1) // 2  # The tap that 'SAME' padding aligns with the output position.
    kernel = np.zeros((k, k, width, width), np.float32)
    kernel[centre, centre] = np.eye(width, dtype=np.float32)
    new_block = {'conv': {'kernel': jnp.asarray(kernel), 'bias': jnp.zeros(width)}}
  else:
    new_block = {'dense': {'kernel': jnp.eye(width), 'bias': jnp.zeros(width)}}
  new_stats = None
  if backbone.batch_norm:
    new_block['bn'] = {'scale': jnp.full(width, np.sqrt(1.0 + BATCH_NORM_EPSILON), jnp.float32),
                       'bias': jnp.zeros(width)}
    new_stats = {'bn': {'mean': jnp.zeros(width), 'var': jnp.ones(width)}}
  if backbone.adapter_width:
    new_block['adapter'] = init_adapter(rng, backbone.adapter_width, width, conv)

  def insert(tree, new):
    blocks = [tree[f'layer{i}'] for i in range(len(widths))]
    blocks.insert(after + 1, new)
    rest = {name: value for name, value in tree.items() if not name.startswith('layer')}
    return {**rest, **{f'layer{i}': block for i, block in enumerate(blocks)}}

  backbone_vars = backbone_variables(model, variables)
  backbone_vars['params'] = insert(backbone_vars['params'], new_block)
  if new_stats is not None:
    backbone_vars['batch_stats'] = insert(backbone_vars['batch_stats'], new_stats)
  changes = {'widths': tuple(widths[:after + 1] + [width] + widths[after + 1:])}
  if conv and backbone.pools:
    pools = list(backbone.pools)
    changes['pools'] = tuple(pools[:after + 1] + [False] + pools[after + 1:])
  new_model = with_backbone(model, backbone.clone(**changes))
  return new_model, with_backbone_variables(model, variables, backbone_vars)
