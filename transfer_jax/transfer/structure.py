"""Structural transfer: new heads, truncated backbones; shared helpers of the growth operations.

Every operation takes a model definition and its full Flax variables ({'params', 'batch_stats'?})
and returns `(new_model, new_variables)`; nothing is trained, and the result is the starting
point of an ordinary run. They are used before the training loop starts, never inside it.

  replace_head(model, variables, num_classes, rng=...)   a head for a new label set: fresh
      init (or only a fresh last layer with `keep_hidden`), every other leaf kept bit-identical.
  add_head(model, variables, name, num_classes, rng=...)  a TransferModel (or MultiHeadModel)
      -> MultiHeadModel with one more head on the same features; the old heads kept.
  truncate(model, variables, num_blocks)                  the first `num_blocks` blocks of a
      GrowableMLP / GrowableConvNet, or the first stages of a ResNet (-> ResNetTrunk); its output
      is the original's intermediate activation (globally pooled for conv nets). Heads on the
      features are re-initialised (`rng` needed), their input width being that of the new
      features.

Function-preserving growth lives beside these: `net2net.widen` / `net2net.deepen` (Chen et al.
2016) and `adapters.add_adapters`. `model` is a bare growable backbone or a wrapper with a
`backbone` field (TransferModel, MultiHeadModel) whose heads are MLPs.
"""

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from transfer_jax.errors import UserError
from transfer_jax.models.growable import GrowableConvNet, GrowableMLP, ResNetTrunk
from transfer_jax.models.mlp import MLP
from transfer_jax.models.multi_head import MultiHeadModel
from transfer_jax.models.resnet import ResNetFeatures

Variables = dict[str, Any]
GROWABLE = (GrowableMLP, GrowableConvNet)


# --- helpers shared by structure, net2net and adapters -------------------------------------------

def backbone_of(model: nn.Module) -> nn.Module:
  """The backbone of a wrapper model (TransferModel, MultiHeadModel), or `model` itself."""
  backbone = getattr(model, 'backbone', None)
  return backbone if isinstance(backbone, nn.Module) else model


def with_backbone(model: nn.Module, backbone: nn.Module) -> nn.Module:
  return model.clone(backbone=backbone) if backbone_of(model) is not model else backbone


def backbone_variables(model: nn.Module, variables: Variables) -> Variables:
  """A mutable copy of the backbone's part of every collection: {'params': {...}, ...}."""
  variables = flax.core.unfreeze(variables)
  if backbone_of(model) is model:
    return variables
  return {col: tree['backbone'] for col, tree in variables.items() if 'backbone' in tree}


def with_backbone_variables(model: nn.Module, variables: Variables,
                            backbone_vars: Variables) -> Variables:
  """`variables` with the backbone's part replaced by `backbone_vars` (heads kept as they are)."""
  if backbone_of(model) is model:
    return backbone_vars
  new = flax.core.unfreeze(variables)
  for col in set(new) | set(backbone_vars):
    new.setdefault(col, {})
    if col in backbone_vars:
      new[col]['backbone'] = backbone_vars[col]
    else:
      new[col].pop('backbone', None)
  return new


def feature_heads(model: nn.Module) -> dict[str, nn.Module]:
  """Params name -> head module, for every head of a wrapper that reads the features."""
  if backbone_of(model) is model:
    return {}
  if isinstance(model, MultiHeadModel):
    return {f'heads_{name}': head for name, head in model.heads.items()}
  return {f.name: getattr(model, f.name) for f in dataclasses.fields(model)
          if f.name not in ('backbone', 'parent') and isinstance(getattr(model, f.name), nn.Module)}


def first_layer(head: nn.Module, name: str) -> str:
  """The name of the Dense layer that reads the features in an MLP head."""
  if not isinstance(head, MLP):
    raise UserError(f'head {name!r} is a {type(head).__name__}; structural operations that '
                    'change the features handle MLP heads only')
  return 'dense0' if head.hidden else 'out'


def check_growable(backbone: nn.Module, operation: str) -> None:
  if not isinstance(backbone, GROWABLE):
    raise UserError(f'{operation} needs a GrowableMLP or GrowableConvNet backbone, not '
                    f'{type(backbone).__name__}')


def _fresh_head(head: nn.Module, rng: jax.Array, features_dim: int) -> dict:
  return head.init(rng, jnp.zeros((1, features_dim), jnp.float32))['params']


# --- heads ---------------------------------------------------------------------------------------

def replace_head(model: nn.Module, variables: Variables, num_classes: int, *, rng: jax.Array,
                 name: str = 'classifier', hidden: tuple[int, ...] | None = None,
                 keep_hidden: bool = False) -> tuple[nn.Module, Variables]:
  """A head of `num_classes` outputs (hidden widths `hidden`, default the old ones) for a new
  label set, freshly initialised; `keep_hidden` keeps the old hidden layers when the widths
  match, so only `out` is new. Every other leaf is the same array as before."""
  heads = feature_heads(model)
  key = f'heads_{name}' if isinstance(model, MultiHeadModel) else name
  if key not in heads:
    raise UserError(f'replace_head: the model has no head {name!r}; it has '
                    f'{sorted(heads)}')
  old = heads[key]
  first_layer(old, name)
  new_hidden = tuple(old.hidden) if hidden is None else tuple(hidden)
  new_head = old.clone(hidden=new_hidden, out_dim=num_classes)
  old_params = variables['params'][key]
  features_dim = old_params[first_layer(old, name)]['kernel'].shape[0]
  head_params = flax.core.unfreeze(_fresh_head(new_head, rng, features_dim))
  if keep_hidden and new_hidden == tuple(old.hidden):
    head_params.update({k: v for k, v in old_params.items() if k != 'out'})
  if isinstance(model, MultiHeadModel):
    new_model = model.clone(heads={**model.heads, name: new_head})
  else:
    new_model = model.clone(**{name: new_head})
  new_variables = flax.core.unfreeze(variables)
  new_variables['params'][key] = head_params
  return new_model, new_variables


def add_head(model: nn.Module, variables: Variables, name: str, num_classes: int, *,
             rng: jax.Array, hidden: tuple[int, ...] = ()) -> tuple[MultiHeadModel, Variables]:
  """A MultiHeadModel with a new head `name` (fresh MLP) beside the model's heads.

  From a TransferModel, each of its heads (classifier, domain discriminator, ...) becomes the
  head of that name, `classifier` staying the primary one; their parameters move from
  `params/{head}` to `params/heads_{head}` unchanged.
  """
  heads = feature_heads(model)
  if not heads:
    raise UserError('add_head needs a model with a backbone and heads (TransferModel, '
                    'MultiHeadModel)')
  prefix = 'heads_' if isinstance(model, MultiHeadModel) else ''
  names = {key[len(prefix):]: key for key in heads}
  if name in names:
    raise UserError(f'add_head: the model already has a head {name!r}')
  for head_name, key in names.items():
    first_layer(heads[key], head_name)
  some_key = next(iter(heads))
  features_dim = variables['params'][some_key][first_layer(heads[some_key], some_key)][
      'kernel'].shape[0]
  new_head = MLP(hidden=tuple(hidden), out_dim=num_classes)
  new_model = MultiHeadModel(
      backbone=model.backbone, heads={**{n: heads[k] for n, k in names.items()}, name: new_head},
      primary=model.primary if isinstance(model, MultiHeadModel) else 'classifier',
      freeze_backbone_statistics=model.freeze_backbone_statistics)
  old = flax.core.unfreeze(variables)
  new_variables = {col: {k: v for k, v in tree.items() if k not in heads}
                   for col, tree in old.items()}
  for n, k in names.items():
    for col, tree in old.items():
      if k in tree:
        new_variables[col][f'heads_{n}'] = tree[k]
  new_variables['params'][f'heads_{name}'] = flax.core.unfreeze(
      _fresh_head(new_head, rng, features_dim))
  return new_model, new_variables


# --- truncation ----------------------------------------------------------------------------------

def truncate(model: nn.Module, variables: Variables, num_blocks: int, *,
             rng: jax.Array | None = None,
             inputs: jnp.ndarray | None = None) -> tuple[nn.Module, Variables]:
  """The backbone cut after its first `num_blocks` blocks (ResNets: stages), later ones dropped.

  For a wrapper model the heads are re-initialised on the new features: give `rng` and an
  example `inputs` batch (only its shape is used).
  """
  backbone = backbone_of(model)
  backbone_vars = backbone_variables(model, variables)
  if isinstance(backbone, GROWABLE):
    total = len(backbone.widths)
    keep = lambda name: name.startswith('layer') and int(name[len('layer'):]) < num_blocks
    changes = {'widths': tuple(backbone.widths)[:num_blocks]}
    if isinstance(backbone, GrowableConvNet) and backbone.pools:
      changes['pools'] = tuple(backbone.pools)[:num_blocks]
    new_backbone = backbone.clone(**changes)
  elif isinstance(backbone, ResNetFeatures | ResNetTrunk):
    total = getattr(backbone, 'num_stages', len(backbone.widths))

    def keep(name):
      return name in ('conv1', 'bn1') or int(name[len('layer'):].split('_')[0]) <= num_blocks
    new_backbone = ResNetTrunk(depth=backbone.depth, stem=backbone.stem,
                               widths=tuple(backbone.widths), num_stages=num_blocks)
  else:
    raise UserError(f'truncate handles GrowableMLP, GrowableConvNet and ResNet backbones, not '
                    f'{type(backbone).__name__}')
  if not 1 <= num_blocks <= total:
    raise UserError(f'truncate: num_blocks={num_blocks} is not in 1..{total}')
  new_backbone_vars = {col: {k: v for k, v in tree.items() if keep(k)}
                       for col, tree in backbone_vars.items()}
  new_model = with_backbone(model, new_backbone)
  if backbone_of(model) is model:
    return new_model, new_backbone_vars
  if rng is None or inputs is None:
    raise UserError('truncate: a model with heads needs `rng` and example `inputs` to '
                    're-initialise the heads for the new features')
  features = jax.eval_shape(lambda v, x: new_backbone.apply(v, x), new_backbone_vars, inputs)
  new_variables = with_backbone_variables(model, variables, new_backbone_vars)
  for key, head in feature_heads(new_model).items():
    if key not in variables['params']:
      continue
    rng, head_rng = jax.random.split(rng)
    first_layer(head, key)
    new_variables['params'][key] = flax.core.unfreeze(
        _fresh_head(head, head_rng, features.shape[-1]))
  return new_model, new_variables
