"""Models: backbones and heads (Flax Linen). `build_model` is the one place config meets model."""

import ml_collections

from transfer_jax.errors import UserError
from transfer_jax.models.growable import GrowableConvNet, GrowableMLP
from transfer_jax.models.lenet import DannLeNetFeatures, LeNetFeatures
from transfer_jax.models.mlp import MLP, MLPFeatures, ResidualMLP
from transfer_jax.models.resnet import ResNetFeatures
from transfer_jax.models.transfer_model import TransferModel
from transfer_jax.models.vgg import VGGFeatures

# Config name -> backbone constructor. One explicit table; add an entry per new backbone.
BACKBONES = {
    # conv_impl: 'fused' (fast on CPU) or 'xla' (textbook); same parameters and outputs.
    'dann_lenet': lambda cfg: DannLeNetFeatures(conv_impl=cfg.conv_impl),
    # The LeNet family (models/lenet.py): the DANN paper's, TLlib's digits net, LeNet-5, ...
    'lenet': lambda cfg: LeNetFeatures(conv=tuple(cfg.lenet_conv),
                                       conv_dropout=cfg.lenet_conv_dropout,
                                       dense=tuple(cfg.lenet_dense),
                                       dense_dropout=cfg.lenet_dense_dropout,
                                       bottleneck=cfg.bottleneck_dim,
                                       bottleneck_batch_norm=cfg.bottleneck_batch_norm,
                                       conv_impl=cfg.conv_impl),
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
    # Nets that transfer/net2net.py can widen and deepen and transfer/adapters.py can extend:
    # Dense or conv (-> BatchNorm) (-> residual adapter) -> ReLU (-> 2x2 max-pool) blocks; the
    # conv net ends in a global average pool. Widths from `backbone_hidden`.
    'growable_mlp': lambda cfg: GrowableMLP(widths=tuple(cfg.backbone_hidden),
                                            batch_norm=cfg.get('backbone_batch_norm', False),
                                            adapter_width=cfg.get('adapter_width', 0)),
    'growable_conv': lambda cfg: GrowableConvNet(widths=tuple(cfg.backbone_hidden),
                                                 kernel_size=cfg.get('conv_kernel', 3),
                                                 pools=tuple(cfg.get('conv_pools', ())),
                                                 batch_norm=cfg.get('backbone_batch_norm', False),
                                                 adapter_width=cfg.get('adapter_width', 0)),
}


def build_model(model_config: ml_collections.ConfigDict, num_classes: int,
                heads: tuple[str, ...] = (),
                task_classes: dict[str, int] | None = None) -> TransferModel:
  """Builds the TransferModel that `model_config` describes, with the extra `heads` a method
  needs ('discriminator' (domain logit), 'adversary' (a second classifier), 'fusion') and one
  classifier per entry of `task_classes` (task head name -> number of classes)."""
  if model_config.get('batch_norm', 'train') not in ('train', 'frozen', 'adabn'):
    raise UserError(f"unknown config.model.batch_norm={model_config.batch_norm!r}; choose "
                    "'train', 'frozen' or 'adabn'")
  if model_config.backbone not in BACKBONES:
    raise UserError(f'unknown config.model.backbone={model_config.backbone!r}; '
                     f'choose one of {sorted(BACKBONES)}')
  unknown = set(heads) - {'discriminator', 'adversary', 'fusion'}
  if unknown:
    raise ValueError(f'unknown model heads {sorted(unknown)}')
  discriminator = adversary = fusion = None
  if 'discriminator' in heads:
    discriminator = MLP(hidden=tuple(model_config.discriminator_hidden), out_dim=1,
                        batch_norm=model_config.discriminator_batch_norm)
  if 'adversary' in heads:  # MDD's f': the discriminator's hidden widths, one logit per class.
    adversary = MLP(hidden=tuple(model_config.discriminator_hidden), out_dim=num_classes,
                    batch_norm=model_config.discriminator_batch_norm)
  if 'fusion' in heads:
    fusion = ResidualMLP(hidden=tuple(model_config.get('fusion_hidden', (256,))))
  return TransferModel(
      backbone=BACKBONES[model_config.backbone](model_config),
      classifier=MLP(hidden=tuple(model_config.classifier_hidden), out_dim=num_classes,
                     dropout=model_config.get('dropout', 0.0)),
      domain_discriminator=discriminator, adversary=adversary, fusion=fusion,
      task_heads={name: MLP(hidden=tuple(model_config.classifier_hidden), out_dim=classes,
                            dropout=model_config.get('dropout', 0.0))
                  for name, classes in (task_classes or {}).items()} or None,
      freeze_backbone_statistics=model_config.get('batch_norm', 'train') == 'frozen')


__all__ = ['BACKBONES', 'MLP', 'DannLeNetFeatures', 'GrowableConvNet', 'GrowableMLP', 'LeNetFeatures',
           'MLPFeatures', 'ResNetFeatures', 'ResidualMLP', 'TransferModel', 'VGGFeatures',
           'build_model']
