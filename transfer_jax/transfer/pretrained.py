"""The one explicit pretrained loader: merge a checkpoint into a fresh initialisation.

`config.init_from` names the checkpoint (a workdir of an earlier run, its best-on-validation
checkpoint, or a PyTorch state dict) and regex rules over leaf paths such as
'params/backbone/conv1/kernel' or 'batch_stats/backbone/bn1/mean':

  load   paths taken from the checkpoint (default '.*')
  skip   paths kept as fresh initialisation even if the checkpoint has them (a new head:
         'params/classifier/out/.*'); a skipped leaf may differ in shape
  rename ('regex=>replacement', ...) applied to the checkpoint's paths before matching

Shape mismatches of loaded leaves, model leaves the checkpoint lacks (unless
`allow_missing`) and checkpoint leaves the model lacks (unless `allow_unused`) stop with one
error listing the paths. The result records which leaves were loaded: the distance
regularizers (L2-SP, ...) pull exactly those towards their loaded values.
"""

import dataclasses
import os
import re
from typing import Any

import jax
import ml_collections
import numpy as np

from transfer_jax.checkpoint import load_state
from transfer_jax.errors import UserError
from transfer_jax.transfer import torch_import
from transfer_jax.transfer.params import compile_regex, param_names


@dataclasses.dataclass(frozen=True)
class Pretrained:
  values: dict[str, np.ndarray]   # Path ('params/...', 'batch_stats/...') -> loaded value.
  table: list[tuple[str, str, str]]  # (path, status, detail) for every model leaf.

  def loaded_mask(self, params: Any) -> Any:
    """A bool tree like `params`: True where the leaf was loaded."""
    names = ['params/' + n for n in param_names(params)]
    return jax.tree.unflatten(jax.tree.structure(params), [n in self.values for n in names])

  def summary(self) -> str:
    counts = {}
    for _, status, _ in self.table:
      counts[status] = counts.get(status, 0) + 1
    return ', '.join(f'{count} {status}' for status, count in sorted(counts.items()))


def read_checkpoint(cfg: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """Flat {path: array} of a run's checkpoint (params and model state), a torch state dict, or
  an .npz of flat 'collection/module/.../leaf' paths (e.g. parameters a structural operation
  produced: `transfer.params.save_flat`)."""
  path = os.path.expanduser(cfg.path)
  if path.endswith('.npz'):
    if not os.path.isfile(path):
      raise UserError(f'init_from.path={cfg.path!r}: no such .npz file')
    with np.load(path) as stored:
      return {name: stored[name] for name in stored.files}
  if path.endswith(('.pth', '.pt', '.safetensors')):
    return torch_import.read_flat(path, cfg.torch_arch)
  directory = os.path.join(path, 'best' if cfg.best else 'checkpoints')
  if not os.path.isdir(directory):
    raise UserError(f'init_from.path={cfg.path!r}: no {os.path.basename(directory)}/ folder there; '
                    'give the workdir of an earlier run' + (' that set best_checkpoint_metric'
                                                            if cfg.best else ''))
  state = load_state(directory, None if cfg.step < 0 else cfg.step)
  flat = {}
  for collection, tree in [('params', state['params']), *state['model_state'].items()]:
    for name, value in zip(param_names(tree), jax.tree.leaves(tree), strict=True):
      flat[f'{collection}/{name}'] = np.asarray(value)
  return flat


def merge_plan(cfg: ml_collections.ConfigDict, model_leaves: dict[str, tuple[int, ...]],
               checkpoint: dict[str, np.ndarray]) -> Pretrained:
  """Decides, leaf by leaf, what to load; raises one error listing every mismatch."""
  load = compile_regex(cfg.load or '.*', 'init_from.load')
  skip = compile_regex(cfg.skip, 'init_from.skip')
  renamed = {}
  for name, value in checkpoint.items():
    for rule in cfg.rename:
      pattern, arrow, replacement = rule.partition('=>')
      if not arrow:
        raise UserError(f"init_from.rename rule {rule!r} needs the form 'regex=>replacement'")
      name = re.sub(f'^(?:{pattern})$', replacement, name)
    renamed[name] = value
  values, table, problems = {}, [], []
  for name, shape in model_leaves.items():
    if skip and skip.fullmatch(name):
      table.append((name, 'skipped', 'fresh init (init_from.skip)'))
    elif not load.fullmatch(name):
      table.append((name, 'new', 'fresh init (not in init_from.load)'))
    elif name not in renamed:
      table.append((name, 'new', 'fresh init (not in the checkpoint)'))
      if not cfg.allow_missing:
        problems.append(f'{name} missing from the checkpoint')
    elif tuple(renamed[name].shape) != tuple(shape):
      problems.append(f'{name} has shape {tuple(renamed[name].shape)} in the checkpoint but '
                      f'{tuple(shape)} in the model')
    else:
      values[name] = renamed[name]
      table.append((name, 'loaded', f'{renamed[name].size} values'))
  unused = sorted(n for n in renamed if n not in model_leaves and not (skip and skip.fullmatch(n)))
  if unused and not cfg.allow_unused:
    problems += [f'{n} in the checkpoint has no place in the model' for n in unused]
  if problems:
    shown = '; '.join(problems[:8]) + (f'; and {len(problems) - 8} more' if len(problems) > 8
                                        else '')
    raise UserError(f'cannot load {cfg.path}: {shown} (use init_from.skip for new parts, '
                    'init_from.rename for renamed ones, or allow_missing / allow_unused)')
  if not values:
    raise UserError(f'init_from loaded nothing from {cfg.path}: no path matched load={cfg.load!r}')
  return Pretrained(values=values, table=table)


def model_leaf_shapes(abstract_variables: Any) -> dict[str, tuple[int, ...]]:
  shapes = {}
  for collection, tree in abstract_variables.items():
    for name, leaf in zip(param_names(tree), jax.tree.leaves(tree), strict=True):
      shapes[f'{collection}/{name}'] = tuple(leaf.shape)
  return shapes


def load_pretrained(cfg: ml_collections.ConfigDict, abstract_variables: Any) -> Pretrained | None:
  """The merge plan of `cfg` against the model's variables; None when `cfg.path` is empty."""
  if not cfg.path:
    if cfg.required:
      raise UserError('this config transfers pretrained weights: set --config.init_from.path to '
                      'the workdir of the pretraining run (or a torch state dict file)')
    return None
  return merge_plan(cfg, model_leaf_shapes(abstract_variables), read_checkpoint(cfg))


def merge(variables: Any, values: dict[str, Any]) -> Any:
  """`variables` with the leaves named in `values` replaced (inside jit: values are arrays)."""
  merged = {}
  for collection, tree in variables.items():
    names = [f'{collection}/{n}' for n in param_names(tree)]
    leaves = [values.get(n, leaf) for n, leaf in zip(names, jax.tree.leaves(tree), strict=True)]
    merged[collection] = jax.tree.unflatten(jax.tree.structure(tree), leaves)
  return merged


def format_table(pretrained: Pretrained) -> str:
  width = max(len(name) for name, _, _ in pretrained.table)
  lines = [f'{"path".ljust(width)}  status   detail']
  lines += [f'{name.ljust(width)}  {status.ljust(7)}  {detail}'
            for name, status, detail in pretrained.table]
  return '\n'.join(lines)
