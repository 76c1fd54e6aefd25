"""A backbone shared by several named heads (one per label set), as one Flax module.

Made by `transfer_jax.transfer.structure.add_head` from a TransferModel; its parameters are
`backbone/...` and `heads_{name}/...` (Flax's names for the modules of a dict field).
"""

from collections.abc import Mapping

import flax.linen as nn
import jax.numpy as jnp


class MultiHeadModel(nn.Module):
  """features = backbone(x); logits of every head in `head_logits`, of `primary` in `logits`."""

  backbone: nn.Module
  heads: Mapping[str, nn.Module]   # Name -> head (an MLP) on the features.
  primary: str = 'classifier'      # The head whose logits are `outputs['logits']`.
  freeze_backbone_statistics: bool = False  # As in TransferModel.

  def __call__(self, inputs: jnp.ndarray, *, train: bool = False) -> dict:
    features = self.backbone(inputs, train=train and not self.freeze_backbone_statistics)
    head_logits = {name: head(features, train=train) for name, head in self.heads.items()}
    return {'features': features, 'logits': head_logits[self.primary],
            'head_logits': head_logits}

  def classify(self, features: jnp.ndarray, *, train: bool = False,
               head: str | None = None) -> jnp.ndarray:
    return self.heads[head or self.primary](features, train=train)
