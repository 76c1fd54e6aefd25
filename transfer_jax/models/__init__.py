"""Models: backbones and heads (Flax Linen). `build_model` is the one place config meets model."""

import ml_collections

from transfer_jax.errors import UserError
from transfer_jax.models.lenet import DannLeNetFeatures
from transfer_jax.models.mlp import MLP, MLPFeatures
from transfer_jax.models.resnet import ResNetFeatures
from transfer_jax.models.transfer_model import TransferModel
from transfer_jax.models.vgg import VGGFeatures

# Config name -> backbone constructor. One explicit table; add an entry per new backbone.
BACKBONES = {
    # conv_impl: 'fused' (fast on CPU) or 'xla' (textbook); same parameters and outputs.
    'dann_lenet': lambda cfg: DannLeNetFeatures(conv_impl=cfg.get('conv_impl', 'fused')),
    # Dense-ReLU layers of widths `backbone_hidden`; the features are the last layer's ReLU.
    'mlp': lambda cfg: MLPFeatures(hidden=tuple(cfg.backbone_hidden),
                                   batch_norm=cfg.get('backbone_batch_norm', False)),
    # torchvision-named image backbones (pooled features: 512 / 2048 / 4096); weights from a
    # PyTorch state_dict via transfer_jax.transfer.torch_import. '_cifar': 3x3/1 stem, no max-pool.
    'resnet18': lambda cfg: ResNetFeatures(depth=18, stem='imagenet'),
    'resnet50': lambda cfg: ResNetFeatures(depth=50, stem='imagenet'),
    'resnet18_cifar': lambda cfg: ResNetFeatures(depth=18, stem='cifar'),
    'resnet50_cifar': lambda cfg: ResNetFeatures(depth=50, stem='cifar'),
    'vgg16': lambda cfg: VGGFeatures(dropout=cfg.get('backbone_dropout', 0.5)),
}


def build_model(model_config: ml_collections.ConfigDict, num_classes: int,
                with_discriminator: bool) -> TransferModel:
  """Builds the TransferModel that `model_config` describes."""
  if model_config.get('batch_norm', 'train') not in ('train', 'frozen', 'adabn'):
    raise UserError(f"unknown config.model.batch_norm={model_config.batch_norm!r}; choose "
                    "'train', 'frozen' or 'adabn'")
  if model_config.backbone not in BACKBONES:
    raise UserError(f'unknown config.model.backbone={model_config.backbone!r}; '
                     f'choose one of {sorted(BACKBONES)}')
  discriminator = None
  if with_discriminator:
    discriminator = MLP(hidden=tuple(model_config.discriminator_hidden), out_dim=1)
  return TransferModel(
      backbone=BACKBONES[model_config.backbone](model_config),
      classifier=MLP(hidden=tuple(model_config.classifier_hidden), out_dim=num_classes,
                     dropout=model_config.get('dropout', 0.0)),
      domain_discriminator=discriminator,
      freeze_backbone_statistics=model_config.get('batch_norm', 'train') == 'frozen')


__all__ = ['BACKBONES', 'MLP', 'DannLeNetFeatures', 'MLPFeatures', 'ResNetFeatures',
           'TransferModel', 'VGGFeatures', 'build_model']
