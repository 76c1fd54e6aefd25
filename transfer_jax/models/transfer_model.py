"""A backbone, a classifier head and optional auxiliary heads, as one Flax module.

Every method reuses the same split: `backbone` maps inputs to features, `classifier` maps
features to class logits, and auxiliary heads (e.g. the domain discriminator of DANN) act on
features and are called by the objective through `TransferModel.discriminate`.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from transfer_jax.errors import UserError


class TransferModel(nn.Module):
  backbone: nn.Module
  classifier: nn.Module
  domain_discriminator: nn.Module | None = None
  # True: the backbone runs in inference mode while training (BatchNorm normalises with, and
  # keeps, its transferred running statistics; backbone dropout is off too).
  freeze_backbone_statistics: bool = False

  def __call__(self, inputs: jnp.ndarray, *, train: bool = False) -> dict[str, jnp.ndarray]:
    features = self.backbone(inputs, train=train and not self.freeze_backbone_statistics)
    return {'features': features, 'logits': self.classifier(features, train=train)}

  def discriminate(self, features: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    """Domain logits, shape (batch,), for features (gradient reversal is the caller's job)."""
    if self.domain_discriminator is None:
      raise UserError('this model has no domain discriminator; the configured method needs one '
                       '(set config.model.discriminator_hidden)')
    return self.domain_discriminator(features, train=train)[..., 0]

  def init_all(self, inputs: jnp.ndarray) -> Any:
    """Calls every submodule once so that `init` creates all parameters."""
    outputs = self(inputs)
    if self.domain_discriminator is not None:
      outputs['domain_logits'] = self.discriminate(outputs['features'])
    return outputs
