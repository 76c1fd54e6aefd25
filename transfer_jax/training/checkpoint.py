"""Moved to `transfer_jax.checkpoint` (below `transfer`, whose pretrained loader reads
checkpoints too). Re-export until train.py moves: it imports these two names from here."""

from transfer_jax.checkpoint import Checkpointer, abstract_with_shardings

__all__ = ['Checkpointer', 'abstract_with_shardings']
