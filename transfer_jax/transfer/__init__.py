"""Transfer operations: functions on parameter pytrees, used before the training loop starts."""

from transfer_jax.transfer.params import count_params, param_names, regex_labels

__all__ = ['count_params', 'param_names', 'regex_labels']
