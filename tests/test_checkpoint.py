"""The checkpoint format (transfer_jax/checkpoint.py): a checkpoint of another state layout is
refused in one line and left in place (corrupt checkpoints: tests/test_reliability.py)."""

import os

import jax
import jax.numpy as jnp
import pytest

from transfer_jax.checkpoint import Checkpointer
from transfer_jax.errors import UserError


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def test_another_layout_is_refused_and_left_in_place(tmp_path):
  directory = str(tmp_path / 'checkpoints')
  saved = {'params': jnp.ones(3), 'opt_state': {'mu': jnp.zeros(3)}}
  checkpointer = Checkpointer(directory, 2)
  checkpointer.save(5, saved, {'wall_s': 1.0})
  checkpointer.wait()
  newer = {'params': jnp.ones(3), 'opt_state': {'inner': {'mu': jnp.zeros(3)}}}
  with pytest.raises(UserError, match='another layout.*left as it is'):
    checkpointer.restore_latest(_abstract(newer))
  assert os.listdir(directory) == ['5'] and not os.path.exists(directory + '.corrupt')
  step, state, extra = checkpointer.restore_latest(_abstract(saved))
  assert step == 5 and extra['wall_s'] == 1.0
  checkpointer.close()
