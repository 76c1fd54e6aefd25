"""The optimizer from `config.optimizer`: rule, learning-rate schedule, weight decay, freezing."""

from typing import Any

import ml_collections
import optax

from transfer_jax.errors import UserError
from transfer_jax.objectives.schedules import dann_annealing
from transfer_jax.transfer.params import regex_labels


def learning_rate_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  if cfg.schedule == 'constant':
    return optax.constant_schedule(cfg.learning_rate)
  if cfg.schedule == 'dann_annealing':
    return dann_annealing(cfg.learning_rate, total_steps, cfg.anneal_alpha, cfg.anneal_beta)
  if cfg.schedule == 'cosine':
    return optax.cosine_decay_schedule(cfg.learning_rate, total_steps)
  raise UserError(f"unknown config.optimizer.schedule={cfg.schedule!r}; choose one of "
                   "['constant', 'cosine', 'dann_annealing']")


def build_optimizer(cfg: ml_collections.ConfigDict, total_steps: int,
                    params: Any) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns the optimizer and its learning-rate schedule (for logging).

  `cfg.freeze` is a regex over parameter paths ('backbone/.*'): matching parameters get no
  update and, through `optax.multi_transform`, keep no optimizer state.
  """
  schedule = learning_rate_schedule(cfg, total_steps)
  if cfg.name == 'sgd':
    rule = optax.sgd(schedule, momentum=cfg.momentum or None, nesterov=cfg.nesterov)
  elif cfg.name == 'adam':
    rule = optax.adam(schedule)
  elif cfg.name == 'adamw':
    rule = optax.adamw(schedule, weight_decay=cfg.weight_decay)
  else:
    raise UserError(f"unknown config.optimizer.name={cfg.name!r}; choose sgd, adam or adamw")
  if cfg.weight_decay and cfg.name != 'adamw':
    # Coupled L2 weight decay, as in torch.optim.SGD(weight_decay=...).
    rule = optax.chain(optax.add_decayed_weights(cfg.weight_decay), rule)
  if cfg.freeze:
    labels = regex_labels(params, cfg.freeze, matched='frozen', unmatched='trainable')
    rule = optax.multi_transform({'trainable': rule, 'frozen': optax.set_to_zero()}, labels)
  return rule, schedule
