"""The optimizer from `config.optimizer`: rule, learning-rate schedule, weight decay, and which
parameters train when, at which rate.

  freeze          regex of parameters that never train (they keep no optimizer state)
  lr_multipliers  (('regex', m), ...): learning rate x m for matching parameters (first match)
  unfreeze        (('regex', step), ...): matching parameters stay frozen until `step` (gradual
                  unfreezing; linear-probe-then-fine-tune is (('backbone/.*', K),))
  momentum_overrides  (('regex', momentum), ...): sgd's momentum for matching parameters (first
                  match; TLlib's AFN: none on the backbone, 0.9 on bottleneck and head)
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
    rule = optax.adam(schedule, b1=cfg.b1)
  elif cfg.name == 'adamw':
    return optax.adamw(schedule, b1=cfg.b1, weight_decay=weight_decay)
  else:
    raise UserError(f"unknown config.optimizer.name={cfg.name!r}; choose sgd, adam or adamw")
  if decay:
    # Coupled L2 weight decay, as in torch.optim.SGD(weight_decay=...).
    rule = optax.chain(optax.add_decayed_weights(weight_decay), rule)
  return rule


def _grouped(cfg: ml_collections.ConfigDict, labels: Any, groups: dict[str, tuple | None],
             schedule: optax.Schedule, weight_decay: Any, decay: bool,
             momentum: float | None) -> optax.GradientTransformation:
  """The rule per group of `group_labels`: frozen, or the schedule times the group's multiplier
  from the group's unfreeze step on."""
  transforms = {}
  for label, group in groups.items():
    if group is None:
      transforms[label] = optax.set_to_zero()
      continue
    multiplier, start, group_momentum = group
    rule = _rule(cfg, lambda count, m=multiplier: m * schedule(count), weight_decay, decay,
                 momentum if group_momentum is None else group_momentum)
    transforms[label] = (optax.chain(frozen_until(start), rule, frozen_until(start)) if start
                         else rule)
  if len(transforms) == 1 and 'frozen' not in transforms:
    return next(iter(transforms.values()))
  return optax.multi_transform(transforms, labels)


def group_labels(cfg: ml_collections.ConfigDict, params: Any) -> tuple[Any, dict[str, tuple]]:
  """Each parameter's group label and each group's (lr multiplier, unfreeze step, momentum or
  None: the rule's) or None if frozen for good."""
  freeze = compile_regex(cfg.freeze, 'optimizer.freeze')
  multipliers = [(compile_regex(p, 'optimizer.lr_multipliers'), float(m))
                 for p, m in cfg.lr_multipliers]
  unfreeze = [(compile_regex(p, 'optimizer.unfreeze'), int(s)) for p, s in cfg.unfreeze]
  momenta = [(compile_regex(p, 'optimizer.momentum_overrides'), float(m))
             for p, m in cfg.momentum_overrides]
  if momenta and cfg.name != 'sgd':
    raise UserError(f'config.optimizer.momentum_overrides is for sgd, not '
                    f'optimizer.name={cfg.name!r}; remove it or use sgd')
  labels, groups, matched = [], {}, set()
  for name in param_names(params):
    if freeze and freeze.fullmatch(name):
      labels.append('frozen')
      groups['frozen'] = None
      matched.add('freeze')
      continue
    multiplier = next((m for regex, m in multipliers if regex.fullmatch(name)), 1.0)
    start = next((s for regex, s in unfreeze if regex.fullmatch(name)), 0)
    momentum = next((m for regex, m in momenta if regex.fullmatch(name)), None)
    label = f'lr_x{multiplier:g}_from{start}'
    if momentum is not None:
      label += f'_momentum{momentum:g}'
    labels.append(label)
    groups[label] = (multiplier, start, momentum)
  for field, rules in (('lr_multipliers', multipliers), ('unfreeze', unfreeze),
                       ('momentum_overrides', momenta)):
    for regex, _ in rules:
      if not any(regex.fullmatch(n) for n in param_names(params)):
        raise UserError(f'config.optimizer.{field} pattern {regex.pattern!r} matches no '
                        f'parameter; names look like {param_names(params)[:3]}')
  if cfg.freeze and 'freeze' not in matched:
    raise UserError(f'config.optimizer.freeze={cfg.freeze!r} matches no parameter; names look '
                    f'like {param_names(params)[:3]}')
  return jax.tree.unflatten(jax.tree.structure(params), labels), groups


# The optimizer's hyperparameters that may vary between runs of a vectorized group: they live in
# the optimizer state (`optax.inject_hyperparams`), each run's own values on the run axis.
HYPERPARAMS = ('learning_rate', 'weight_decay')


def build_optimizer(cfg: ml_collections.ConfigDict, total_steps: int, params: Any,
                    decay: bool | None = None, schedule_name: str | None = None,
                    momentum: float | None = None) -> optax.GradientTransformation:
  """The optimizer of `cfg`, its base learning rate and weight decay in its state
  (`opt_state.hyperparams`, see `with_hyperparams`); the schedule, the multipliers and the
  freezing are functions of the update count and of those two values. `decay`: whether weight
  decay is applied at all (default: the config's weight_decay is non-zero; a vectorized group
  whose runs differ in it sets it). `schedule_name` / `momentum` replace cfg.schedule /
  cfg.momentum (a parameter group's)."""
  decay = bool(cfg.weight_decay) if decay is None else decay
  labels, groups = group_labels(cfg, params)

  def make(learning_rate: Any, weight_decay: Any) -> optax.GradientTransformation:
    schedule = learning_rate_schedule(cfg, total_steps, learning_rate, schedule_name)
    return _grouped(cfg, labels, groups, schedule, weight_decay, decay, momentum)

  return optax.inject_hyperparams(make, hyperparam_dtype=jnp.float32)(
      learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay)


def hyperparams_of(cfg: ml_collections.ConfigDict) -> dict[str, jax.Array]:
  """`cfg`'s values of HYPERPARAMS (float32 scalars)."""
  return {name: jnp.asarray(cfg[name], jnp.float32) for name in HYPERPARAMS}


def with_hyperparams(opt_state: Any, values: dict[str, jax.Array]) -> Any:
  """`opt_state` (of `build_optimizer`, or a dict of them: `build_group_optimizers`) holding
  `values` as its HYPERPARAMS: how a vectorized group gives each run its own."""
  if isinstance(opt_state, dict):
    return {group: with_hyperparams(s, values) for group, s in opt_state.items()}
  return opt_state._replace(hyperparams={
      **opt_state.hyperparams, **{k: jnp.asarray(v, jnp.float32) for k, v in values.items()}})


def learning_rate_now(cfg: ml_collections.ConfigDict, total_steps: int, opt_state: Any,
                      step: jax.Array) -> jax.Array:
  """The base learning rate at iteration `step` (before any multiplier), from the base rate in
  `opt_state` (of one optimizer or of a group's: they hold the same base)."""
  if isinstance(opt_state, dict):
    opt_state = next(iter(opt_state.values()))
  return learning_rate_schedule(cfg, total_steps, opt_state.hyperparams['learning_rate'])(step)


def group_params(params: dict, modules: tuple[str, ...]) -> dict:
  """The parameters of a method's parameter group: those of its top-level `modules`."""
  return {name: params[name] for name in modules if name in params}


def build_group_optimizers(cfg: ml_collections.ConfigDict, total_steps: int, params: dict,
                           param_groups: dict[str, tuple[str, ...]],
                           group_momentum: tuple = (), decay: bool | None = None
                           ) -> dict[str, optax.GradientTransformation]:
  """One optimizer per parameter group of a multi-phase method, each with a state of its own that
  advances only when its group steps. Each steps at `opt_state.hyperparams['iteration_rate']`,
  the rate of the iteration, which the step sets from the base rate before the group's updates
  (the schedule is a function of the iteration, however often a group steps in it);
  `group_momentum` (('GROUP', momentum), ...) replaces cfg.momentum for a group."""
  momenta = dict(group_momentum)
  unknown = set(momenta) - set(param_groups)
  if unknown:
    raise UserError(f'config.method.group_momentum names {sorted(unknown)}; this method\'s '
                    f'parameter groups are {sorted(param_groups)}')
  decay = bool(cfg.weight_decay) if decay is None else decay

  def group_optimizer(modules: tuple[str, ...], momentum: float | None):
    labels, groups = group_labels(cfg, group_params(params, modules))

    def make(learning_rate: Any, weight_decay: Any, iteration_rate: Any):
      del learning_rate  # The base rate, kept for the schedule: the step reads it.
      return _grouped(cfg, labels, groups, lambda count: iteration_rate, weight_decay, decay,
                      momentum)

    return optax.inject_hyperparams(make, hyperparam_dtype=jnp.float32)(
        learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
        iteration_rate=cfg.learning_rate)

  return {group: group_optimizer(modules, momenta.get(group))
          for group, modules in param_groups.items()}
