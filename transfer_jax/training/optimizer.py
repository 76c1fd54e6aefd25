"""The optimizer from `config.optimizer`: rule, learning-rate schedule, weight decay, and which
parameters train when, at which rate.

  freeze          regex of parameters that never train (they keep no optimizer state)
  lr_multipliers  (('regex', m), ...): learning rate x m for matching parameters (first match)
  unfreeze        (('regex', step), ...): matching parameters stay frozen until `step` (gradual
                  unfreezing; linear-probe-then-fine-tune is (('backbone/.*', K),))
Paths look like 'backbone/conv1/kernel'. Groups are formed by `optax.multi_transform`.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from transfer_jax.errors import UserError
from transfer_jax.objectives.schedules import dann_annealing, inverse_decay
from transfer_jax.transfer.params import compile_regex, param_names


def learning_rate_schedule(cfg: ml_collections.ConfigDict, total_steps: int,
                           learning_rate: Any = None, name: str | None = None) -> optax.Schedule:
  """The schedule `name` (default: cfg.schedule) from `learning_rate` (default:
  cfg.learning_rate)."""
  base = cfg.learning_rate if learning_rate is None else learning_rate
  name = cfg.schedule if name is None else name
  if name == 'constant':
    return optax.constant_schedule(base)
  if name == 'dann_annealing':
    return dann_annealing(base, total_steps, cfg.anneal_alpha, cfg.anneal_beta)
  if name == 'inverse':
    return inverse_decay(base, cfg.inverse_gamma, cfg.inverse_power)
  if name == 'cosine':
    return optax.cosine_decay_schedule(base, total_steps)
  if name == 'step':
    boundaries = {int(b * total_steps): cfg.step_factor for b in cfg.step_boundaries}
    return optax.piecewise_constant_schedule(base, boundaries)
  raise UserError(f"unknown config.optimizer.schedule={name!r}; choose one of "
                  "['constant', 'cosine', 'dann_annealing', 'inverse', 'step']")


class _GateState(NamedTuple):
  count: jnp.ndarray


def frozen_until(step: int) -> optax.GradientTransformation:
  """Zeroes updates before optimizer step `step` (placed before and after the rule, so neither
  momentum nor weight decay moves a parameter that is still frozen)."""

  def init(params):
    del params
    return _GateState(count=jnp.zeros((), jnp.int32))

  def update(updates, state, params=None):
    del params
    gate = (state.count >= step).astype(jnp.float32)
    return jax.tree.map(lambda u: u * gate.astype(u.dtype), updates), _GateState(state.count + 1)

  return optax.GradientTransformation(init, update)


def _rule(cfg: ml_collections.ConfigDict, schedule: optax.Schedule, weight_decay: Any,
          decay: bool, momentum: float | None = None) -> optax.GradientTransformation:
  if cfg.name == 'sgd':
    momentum = cfg.momentum if momentum is None else momentum
    rule = optax.sgd(schedule, momentum=momentum or None, nesterov=cfg.nesterov)
  elif cfg.name == 'adam':
    rule = optax.adam(schedule)
  elif cfg.name == 'adamw':
    return optax.adamw(schedule, weight_decay=weight_decay)
  else:
    raise UserError(f"unknown config.optimizer.name={cfg.name!r}; choose sgd, adam or adamw")
  if decay:
    # Coupled L2 weight decay, as in torch.optim.SGD(weight_decay=...).
    rule = optax.chain(optax.add_decayed_weights(weight_decay), rule)
  return rule


def group_labels(cfg: ml_collections.ConfigDict, params: Any) -> tuple[Any, dict[str, tuple]]:
  """Each parameter's group label and each group's (lr multiplier, unfreeze step) or None if
  frozen for good."""
  freeze = compile_regex(cfg.freeze, 'optimizer.freeze')
  multipliers = [(compile_regex(p, 'optimizer.lr_multipliers'), float(m))
                 for p, m in cfg.lr_multipliers]
  unfreeze = [(compile_regex(p, 'optimizer.unfreeze'), int(s)) for p, s in cfg.unfreeze]
  labels, groups, matched = [], {}, set()
  for name in param_names(params):
    if freeze and freeze.fullmatch(name):
      labels.append('frozen')
      groups['frozen'] = None
      matched.add('freeze')
      continue
    multiplier = next((m for regex, m in multipliers if regex.fullmatch(name)), 1.0)
    start = next((s for regex, s in unfreeze if regex.fullmatch(name)), 0)
    label = f'lr_x{multiplier:g}_from{start}'
    labels.append(label)
    groups[label] = (multiplier, start)
  for field, rules in (('lr_multipliers', multipliers), ('unfreeze', unfreeze)):
    for regex, _ in rules:
      if not any(regex.fullmatch(n) for n in param_names(params)):
        raise UserError(f'config.optimizer.{field} pattern {regex.pattern!r} matches no '
                        f'parameter; names look like {param_names(params)[:3]}')
  if cfg.freeze and 'freeze' not in matched:
    raise UserError(f'config.optimizer.freeze={cfg.freeze!r} matches no parameter; names look '
                    f'like {param_names(params)[:3]}')
  return jax.tree.unflatten(jax.tree.structure(params), labels), groups


def build_optimizer(cfg: ml_collections.ConfigDict, total_steps: int, params: Any,
                    learning_rate: Any = None, weight_decay: Any = None,
                    decay: bool | None = None, schedule_name: str | None = None,
                    momentum: float | None = None) -> tuple[optax.GradientTransformation,
                                                            optax.Schedule]:
  """Returns the optimizer and its base learning-rate schedule (for logging).

  `learning_rate` / `weight_decay` replace the config's values and may be traced arrays: a
  vectorized step (transfer_jax.training.vectorized) builds its optimizer inside the step from
  each run's values. `decay`: whether weight decay is applied at all (default: the config's
  weight_decay is non-zero); the optimizer state does not depend on either value.
  `schedule_name` / `momentum` replace cfg.schedule / cfg.momentum (a parameter group's)."""
  learning_rate = cfg.learning_rate if learning_rate is None else learning_rate
  weight_decay = cfg.weight_decay if weight_decay is None else weight_decay
  decay = bool(cfg.weight_decay) if decay is None else decay
  schedule = learning_rate_schedule(cfg, total_steps, learning_rate, schedule_name)
  labels, groups = group_labels(cfg, params)
  transforms = {}
  for label, group in groups.items():
    if group is None:
      transforms[label] = optax.set_to_zero()
      continue
    multiplier, start = group
    rule = _rule(cfg, lambda count, m=multiplier: m * schedule(count), weight_decay, decay,
                 momentum)
    transforms[label] = (optax.chain(frozen_until(start), rule, frozen_until(start)) if start
                         else rule)
  if len(transforms) == 1 and 'frozen' not in transforms:
    return next(iter(transforms.values())), schedule
  return optax.multi_transform(transforms, labels), schedule


def group_params(params: dict, modules: tuple[str, ...]) -> dict:
  """The parameters of a method's parameter group: those of its top-level `modules`."""
  return {name: params[name] for name in modules if name in params}


def build_group_optimizers(cfg: ml_collections.ConfigDict, total_steps: int, params: dict,
                           param_groups: dict[str, tuple[str, ...]],
                           group_momentum: tuple = (), learning_rate: Any = None,
                           weight_decay: Any = None, decay: bool | None = None
                           ) -> dict[str, optax.GradientTransformation]:
  """One optimizer per parameter group of a multi-phase method, each with a state of its own that
  advances only when its group steps. `learning_rate` is the rate of this iteration (the
  schedule is evaluated at the iteration by the caller, however often a group steps in it);
  `group_momentum` (('GROUP', momentum), ...) replaces cfg.momentum for a group."""
  momenta = dict(group_momentum)
  unknown = set(momenta) - set(param_groups)
  if unknown:
    raise UserError(f'config.method.group_momentum names {sorted(unknown)}; this method\'s '
                    f'parameter groups are {sorted(param_groups)}')
  return {group: build_optimizer(cfg, total_steps, group_params(params, modules), learning_rate,
                                 weight_decay, decay, schedule_name='constant',
                                 momentum=momenta.get(group))[0]
          for group, modules in param_groups.items()}
