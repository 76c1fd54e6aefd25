"""Whole-config checks made before a run writes anything: ranges, types and names of the fields
the loop reads, each failure one line naming the field and what to use instead.

`check_config(config)` is called by `training.train.train_runs` before it touches the workdir, so
a refused config leaves nothing behind that would block the corrected command.
`extension_blocker(config)` says which field, if any, makes a run's numbers depend on
`total_steps` (such a run cannot be continued to more steps).
"""

import math
import os
import re
from collections.abc import Iterable
from typing import Any

import ml_collections

from transfer_jax.errors import UserError
from transfer_jax.models import BACKBONES
from transfer_jax.objectives.methods import METHODS
from transfer_jax.objectives.regularizers import REGULARIZERS

_MISSING = object()
OPTIMIZERS = ('sgd', 'adam', 'adamw')
LR_SCHEDULES = ('dann_annealing', 'inverse', 'constant', 'cosine', 'step')
GRL_SCHEDULES = ('dann', 'warm_start', 'constant')
RAMPS = ('constant', 'linear', 'dann')
BATCH_NORM_MODES = ('train', 'frozen', 'adabn')
NORMALIZE = ('unit', 'symmetric', 'standardize', 'center')
EVAL_SPLITS = ('test', 'val', 'oracle_val', 'labeled')
# Schedules that are functions of the iteration alone: a run using only these can continue.
ITERATION_LR_SCHEDULES = ('constant', 'inverse')
ITERATION_GRL_SCHEDULES = ('constant', 'warm_start')


def _get(config: ml_collections.ConfigDict, dotted: str) -> Any:
  node = config
  for key in dotted.split('.'):
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or key not in node:
      return _MISSING
    node = node[key]
  return node


def _fail(key: str, value: Any, want: str) -> None:
  raise UserError(f'config.{key}={value!r} is invalid: {want}; set --config.{key}=VALUE')


def _number(config, key: str, low: float | None = None, high: float | None = None,
            integer: bool = False, low_open: bool = False, high_open: bool = False) -> None:
  value = _get(config, key)
  if value is _MISSING:
    return
  kind = 'an integer' if integer else 'a number'
  if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
    _fail(key, value, f'it must be {kind}')
  if not math.isfinite(value):
    _fail(key, value, 'it must be finite')
  if low is not None and (value < low or (low_open and value == low)):
    _fail(key, value, f'it must be {">" if low_open else ">="} {low:g}'
                      + (f' and {"<" if high_open else "<="} {high:g}' if high is not None else ''))
  if high is not None and (value > high or (high_open and value == high)):
    _fail(key, value, f'it must be {"<" if high_open else "<="} {high:g}'
                      + (f' and {">" if low_open else ">="} {low:g}' if low is not None else ''))


def _choice(config, key: str, choices: Iterable[Any]) -> None:
  value = _get(config, key)
  choices = list(choices)
  if value is not _MISSING and value not in choices:
    _fail(key, value, f'choose one of {choices}')


def _regex(config, key: str) -> None:
  value = _get(config, key)
  if value is _MISSING or not value:
    return
  if not isinstance(value, str):
    _fail(key, value, 'it must be a regular expression (a string)')
  try:
    re.compile(value)
  except re.error as e:
    _fail(key, value, f'it is not a valid regular expression ({e})')


def _pairs(config, key: str, check_value, what: str) -> None:
  """A tuple of (regex, value) pairs, e.g. optimizer.lr_multipliers."""
  value = _get(config, key)
  if value is _MISSING:
    return
  example = f"(('backbone/.*', {what}),)"
  for item in value:
    if not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[0], str):
      _fail(key, value, f'it must be a tuple of (regex, value) pairs like {example}')
    try:
      re.compile(item[0])
    except re.error as e:
      _fail(key, value, f'{item[0]!r} is not a valid regular expression ({e})')
    if isinstance(item[1], bool) or not check_value(item[1]):
      _fail(key, value, f'the value of {item[0]!r} must be {what}')


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises a one-line UserError for the first field out of range, of the wrong type or with an
  unknown name; fields the config lacks are not checked (the loop reports them)."""
  for key in ('total_steps', 'batch_size', 'eval_batch_size', 'log_every_steps',
              'eval_every_steps', 'checkpoint_every_steps', 'keep_checkpoints',
              'selection_examples'):
    _number(config, key, low=1, integer=True)
  _number(config, 'seed', integer=True)
  _number(config, 'num_devices', low=0, integer=True)
  _choice(config, 'method.name', sorted(METHODS))
  for key in ('method.trade_off', 'method.grl_coeff', 'method.grl_gamma',
              'method.grl_warm_alpha'):
    _number(config, key)
  _number(config, 'method.grl_warm_iters', low=0, low_open=True)
  _choice(config, 'method.trade_off_schedule', RAMPS)
  _choice(config, 'method.grl_schedule', GRL_SCHEDULES)
  for key in ('objective.source_weight', 'objective.target_weight', 'regularizer.alpha',
              'regularizer.beta'):
    _number(config, key, low=0)
  _choice(config, 'objective.target_weight_schedule', RAMPS)
  _choice(config, 'regularizer.name', sorted(REGULARIZERS))
  _check_optimizer(config)
  _choice(config, 'model.backbone', sorted(BACKBONES))
  _choice(config, 'model.batch_norm', BATCH_NORM_MODES)
  _check_data(config)
  _check_init_from(config)
  _check_eval(config)


def _check_optimizer(config) -> None:
  _choice(config, 'optimizer.name', OPTIMIZERS)
  _choice(config, 'optimizer.schedule', LR_SCHEDULES)
  _number(config, 'optimizer.learning_rate', low=0)   # 0: nothing trains (a check of a model).
  _number(config, 'optimizer.momentum', low=0, high=1, high_open=True)
  _number(config, 'optimizer.weight_decay', low=0)
  _number(config, 'optimizer.step_factor', low=0)
  boundaries = _get(config, 'optimizer.step_boundaries')
  if boundaries is not _MISSING and not all(
      isinstance(b, (int, float)) and 0 < b < 1 for b in boundaries):
    _fail('optimizer.step_boundaries', boundaries, 'give fractions of total_steps in (0, 1)')
  _regex(config, 'optimizer.freeze')
  _pairs(config, 'optimizer.lr_multipliers',
         lambda v: isinstance(v, (int, float)) and math.isfinite(v) and v >= 0,
         'a multiplier >= 0')
  _pairs(config, 'optimizer.unfreeze', lambda v: isinstance(v, int) and v >= 0, 'a step >= 0')


def _check_data(config) -> None:
  _choice(config, 'data.normalize', NORMALIZE)
  _choice(config, 'data.channels', (1, 3))
  _number(config, 'data.image_size', low=0, integer=True)
  _number(config, 'data.test_fraction', low=0, high=1, low_open=True, high_open=True)
  domains = {'data.source': _get(config, 'data.source'), 'data.target': _get(config, 'data.target')}
  tasks = _get(config, 'tasks')
  if tasks is not _MISSING:
    domains.update({f'tasks.{name}.domain': task.domain for name, task in tasks.items()})
  for prefix, domain in domains.items():
    if domain is _MISSING:
      continue
    _number(config, f'{prefix}.val_fraction', low=0, high=1, high_open=True)
    _number(config, f'{prefix}.labeled_per_class', low=-1, integer=True)
    _number(config, f'{prefix}.train_size', low=0, integer=True)
    _number(config, f'{prefix}.box_size', low=0, integer=True)
  if _get(config, 'data.target.name') == '':
    _fail('data.target.name', '', 'name the target domain (a dataset, npz:PATH or folder:PATH)')
  if _get(config, 'selection') is True and not _get(config, 'data.source.val_fraction'):
    _fail('data.source.val_fraction', _get(config, 'data.source.val_fraction'),
          'config.selection needs held-out labelled source data (e.g. 0.1)')


def _check_init_from(config) -> None:
  for key in ('init_from.load', 'init_from.skip'):
    _regex(config, key)
  path = _get(config, 'init_from.path')
  if path is _MISSING:
    return
  if path and _get(config, 'init_from.allowed') is False:
    _fail('init_from.path', path, 'this config trains from scratch (e.g. recipe=scratch) and '
                                  'loads no weights; drop --config.init_from.path or pick a '
                                  'transfer recipe')
  if not path and _get(config, 'init_from.required') is True:
    _fail('init_from.path', path, 'this config transfers weights; give the workdir of an '
                                  'earlier run (or a .pth/.safetensors file)')
  if path and not os.path.exists(os.path.expanduser(path)):
    _fail('init_from.path', path, 'no such file or folder; give the workdir of an earlier run '
                                  '(or a .pth/.safetensors file)')


def _check_eval(config) -> None:
  splits = _get(config, 'eval_splits')
  if splits is _MISSING:
    return
  tasks = _get(config, 'tasks')
  roles = ['source', 'target', *(tasks.keys() if tasks is not _MISSING else ())]
  for split in splits:
    role, _, name = str(split).partition('/')
    if role not in roles or name not in EVAL_SPLITS:
      _fail('eval_splits', tuple(splits), f'{split!r} is not ROLE/SPLIT with ROLE one of '
                                          f'{roles} (roles: source, target and the names of '
                                          f'config.tasks) and SPLIT one of {list(EVAL_SPLITS)}')
  metric = _get(config, 'best_checkpoint_metric')
  if metric is _MISSING or not metric:
    return
  evaluated = list(splits) + (['target/oracle_val'] if _get(config, 'selection') else [])
  allowed = [f'{s}/{m}' for s in evaluated for m in ('accuracy', 'loss')]
  if metric not in allowed and not (metric.startswith('selection/') and _get(config, 'selection')):
    _fail('best_checkpoint_metric', metric, f'choose an eval metric: one of {allowed}')


def extension_blocker(config: ml_collections.ConfigDict) -> str | None:
  """The field that makes this run's numbers depend on `total_steps` (its schedule is a function
  of the progress step / total_steps), or None when every schedule is a function of the
  iteration alone, so that a finished run may be continued to a larger total_steps."""
  if config.optimizer.schedule not in ITERATION_LR_SCHEDULES:
    return f'optimizer.schedule={config.optimizer.schedule!r}'
  method = METHODS[config.method.name]
  adversarial = bool({'discriminator', 'adversary'} & set(method.heads))
  if adversarial and config.method.grl_schedule not in ITERATION_GRL_SCHEDULES:
    return f'method.grl_schedule={config.method.grl_schedule!r}'
  if config.method.name != 'source_only' and config.method.trade_off_schedule != 'constant':
    return f'method.trade_off_schedule={config.method.trade_off_schedule!r}'
  if config.objective.target_weight and config.objective.target_weight_schedule != 'constant':
    return f'objective.target_weight_schedule={config.objective.target_weight_schedule!r}'
  return None
