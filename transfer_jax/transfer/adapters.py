"""Residual adapters: new parameters in every block that leave the function unchanged at insertion.

`add_adapters(model, variables, bottleneck, rng=...)` gives each block of a growable backbone a
`ResidualAdapter` (x + up(relu(down(x))), before the block's ReLU; Rebuffi et al. 2017, Houlsby
et al. 2019) whose up-projection is zero, so the outputs are exactly the old ones. To train only
the adapters (and chosen heads), pass `adapter_mask(params, ...)` to `optax.masked` /
`optax.multi_transform`, or set `config.optimizer.freeze=adapter_freeze_regex(...)`.
"""

import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from transfer_jax.errors import UserError
from transfer_jax.models.growable import GrowableConvNet, ResidualAdapter
from transfer_jax.transfer.params import param_names
from transfer_jax.transfer.structure import (
    Variables,
    backbone_of,
    backbone_variables,
    check_growable,
    with_backbone,
    with_backbone_variables,
)


def init_adapter(rng: jax.Array, bottleneck: int, width: int, conv: bool) -> dict:
  """Fresh params of one adapter on `width` channels: random down-projection, zero up."""
  shape = (1, 1, 1, width) if conv else (1, width)
  return ResidualAdapter(bottleneck, conv).init(rng, jnp.zeros(shape, jnp.float32))['params']


def add_adapters(model: Any, variables: Variables, bottleneck: int, *,
                 rng: jax.Array) -> tuple[Any, Variables]:
  """The model with a `bottleneck`-wide residual adapter in every backbone block; same outputs."""
  backbone = backbone_of(model)
  check_growable(backbone, 'add_adapters')
  if backbone.adapter_width:
    raise UserError('add_adapters: the backbone already has adapters')
  if bottleneck < 1:
    raise UserError(f'add_adapters: bottleneck={bottleneck} must be at least 1')
  backbone_vars = backbone_variables(model, variables)
  conv = isinstance(backbone, GrowableConvNet)
  for i, (width, key) in enumerate(zip(backbone.widths,
                                       jax.random.split(rng, len(backbone.widths)), strict=True)):
    backbone_vars['params'][f'layer{i}']['adapter'] = init_adapter(key, bottleneck, width, conv)
  new_model = with_backbone(model, backbone.clone(adapter_width=bottleneck))
  return new_model, with_backbone_variables(model, variables, backbone_vars)


def _trainable(name: str, train_heads: Sequence[str]) -> bool:
  return '/adapter/' in f'/{name}' or any(name.startswith(f'{head}/') for head in train_heads)


def adapter_mask(params: Any, *, train_heads: Sequence[str] = ()) -> Any:
  """A bool tree like `params`: True for adapter leaves and the heads named in `train_heads`
  (params names such as 'classifier' or 'heads_new'), False for everything else."""
  names = param_names(params)
  return jax.tree.unflatten(jax.tree.structure(params),
                            [_trainable(n, train_heads) for n in names])


def adapter_freeze_regex(train_heads: Sequence[str] = ()) -> str:
  """A `config.optimizer.freeze` regex (matched against full names) that freezes every parameter
  but the adapters and the heads in `train_heads`."""
  heads = ''.join(f'(?!{re.escape(head)}/)' for head in train_heads)
  return f'(?!(?:.*/)?adapter/){heads}.*'
