"""Transfer operations: functions on parameter pytrees, used before the training loop starts."""

from transfer_jax.transfer.params import compile_regex, count_params, param_names
from transfer_jax.transfer.pretrained import Pretrained, load_pretrained, merge

__all__ = ['Pretrained', 'compile_regex', 'count_params', 'load_pretrained', 'merge',
           'param_names']
