"""Objectives: supervised losses, transfer terms (one pure function per method) and schedules."""

from transfer_jax.objectives.gradient_reversal import gradient_reversal
from transfer_jax.objectives.losses import accuracy, binary_cross_entropy, cross_entropy
from transfer_jax.objectives.methods import METHODS, Method, StepContext, get_method
from transfer_jax.objectives.schedules import dann_annealing, dann_trade_off, progress

__all__ = ['METHODS', 'Method', 'StepContext', 'accuracy', 'binary_cross_entropy',
           'cross_entropy', 'dann_annealing', 'dann_trade_off', 'get_method',
           'gradient_reversal', 'progress']
