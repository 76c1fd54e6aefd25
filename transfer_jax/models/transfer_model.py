"""A backbone, a classifier head and optional auxiliary heads, as one Flax module.

Every method reuses the same split: `backbone` maps inputs to features, `classifier` maps
features to class logits, and auxiliary heads act on features and are called by the objective:
the domain discriminator of DANN/CDAN (`discriminate`), the adversarial classifier of MDD
(`adversarial_logits`), the residual fusion module (`fuse`).
"""

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from transfer_jax.errors import UserError


class TransferModel(nn.Module):
  backbone: nn.Module
  classifier: nn.Module
  domain_discriminator: nn.Module | None = None
  adversary: nn.Module | None = None   # A second classifier (MDD), same output size.
  fusion: nn.Module | None = None      # features -> features (residual feature fusion).
  # Extra classification heads on the shared features, one per task (multi-task learning).
  task_heads: Mapping[str, nn.Module] | None = None
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

  def classify(self, features: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    return self.classifier(features, train=train)

  def task_logits(self, features: jnp.ndarray, head: str, *, train: bool = False) -> jnp.ndarray:
    """Logits of the task head `head` ('': the main classifier)."""
    if not head:
      return self.classifier(features, train=train)
    return self.task_heads[head](features, train=train)

  def adversarial_logits(self, features: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    if self.adversary is None:
      raise UserError('this model has no adversarial classifier; the configured method needs one')
    return self.adversary(features, train=train)

  def fuse(self, features: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    if self.fusion is None:
      raise UserError('this model has no fusion module; the configured method needs one')
    return self.fusion(features)

  def init_all(self, inputs: jnp.ndarray,
               discriminator_input: Callable[[dict], jnp.ndarray] | None = None) -> Any:
    """Calls every submodule once so that `init` creates all parameters; the discriminator
    reads `discriminator_input(outputs)` (default: the features), as the method will feed it."""
    outputs = self(inputs)
    if self.domain_discriminator is not None:
      read = discriminator_input or (lambda o: o['features'])
      outputs['domain_logits'] = self.discriminate(read(outputs))
    if self.adversary is not None:
      outputs['adversarial_logits'] = self.adversarial_logits(outputs['features'])
    if self.fusion is not None:
      outputs['fused'] = self.fuse(outputs['features'])
    for name in self.task_heads or {}:
      outputs[f'task_logits/{name}'] = self.task_logits(outputs['features'], name)
    return outputs
