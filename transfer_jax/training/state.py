"""The training state: a pytree of arrays only, so it shards, donates and checkpoints as a whole."""

from typing import Any

import flax.struct
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray            # int32 scalar: optimizer steps taken.
  params: Any                  # The 'params' collection.
  model_state: Any             # Other mutable collections (e.g. 'batch_stats'); {} if none.
  opt_state: Any
  first_nonfinite_step: jnp.ndarray  # int32 scalar: first step whose loss was NaN/Inf, else -1.
  anchors: Any = None          # What regularizers compare to: {'params': theta_S, 'fisher': F}.
