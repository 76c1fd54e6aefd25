"""Models: backbones and heads (Flax Linen). `build_model` is the one place config meets model."""

import jax.numpy as jnp
import ml_collections

from transfer_jax.errors import UserError
from transfer_jax.models.growable import GrowableConvNet, GrowableMLP
from transfer_jax.models.lenet import DannLeNetFeatures, LeNetFeatures
from transfer_jax.models.mlp import MLP, MLPFeatures, ResidualMLP
from transfer_jax.models.resnet import ResNetFeatures
from transfer_jax.models.small_cnn import SmallCNNFeatures
from transfer_jax.models.transfer_model import TransferModel
from transfer_jax.models.vgg import VGGFeatures

# Config name -> backbone constructor. One explicit table; add an entry per new backbone.
BACKBONES = {
    # conv_impl: 'fused' (fast on CPU) or 'xla' (textbook); same parameters and outputs.
    'dann_lenet': lambda cfg: DannLeNetFeatures(conv_impl=cfg.conv_impl,
                                                dtype=compute_dtype(cfg)),
    # The LeNet family (models/lenet.py): the DANN paper's, TLlib's digits net, LeNet-5, ...
    'lenet': lambda cfg: LeNetFeatures(conv=tuple(cfg.lenet_conv),
                                       conv_padding=cfg.lenet_conv_padding,
                                       conv_dropout=cfg.lenet_conv_dropout,
                                       dense=tuple(cfg.lenet_dense),
                                       dense_dropout=cfg.lenet_dense_dropout,
                                       bottleneck=cfg.bottleneck_dim,
                                       bottleneck_batch_norm=cfg.bottleneck_batch_norm,
                                       bottleneck_dropout=cfg.bottleneck_dropout,
                                       bottleneck_dropout_l2=cfg.bottleneck_dropout_l2,
                                       bottleneck_init_std=cfg.head_init_std,
                                       conv_impl=cfg.conv_impl, dtype=compute_dtype(cfg)),
    # Dense-ReLU layers of widths `backbone_hidden`; the features are the last layer's ReLU.
    'mlp': lambda cfg: MLPFeatures(hidden=tuple(cfg.backbone_hidden),
                                   batch_norm=cfg.backbone_batch_norm),
    # torchvision-named image backbones (pooled features: 512 / 2048 / 4096); weights from a
    # PyTorch state_dict via transfer_jax.transfer.torch_import. '_cifar': 3x3/1 stem, no max-pool.
    # config.model.dtype: their computation dtype (mixed precision, `compute_dtype`).
    'resnet18': lambda cfg: ResNetFeatures(depth=18, stem='imagenet', dtype=compute_dtype(cfg)),
    'resnet50': lambda cfg: ResNetFeatures(depth=50, stem='imagenet', dtype=compute_dtype(cfg)),
    'resnet18_cifar': lambda cfg: ResNetFeatures(depth=18, stem='cifar', dtype=compute_dtype(cfg)),
    'resnet50_cifar': lambda cfg: ResNetFeatures(depth=50, stem='cifar', dtype=compute_dtype(cfg)),
    # PyTorch's MNIST-example CNN (skada-bench's MNIST <-> USPS net, models/small_cnn.py).
    'small_cnn': lambda cfg: SmallCNNFeatures(conv_impl=cfg.conv_impl, dtype=compute_dtype(cfg)),
    'vgg16': lambda cfg: VGGFeatures(dropout=cfg.backbone_dropout,
                                     dtype=compute_dtype(cfg)),
    # Nets that transfer/net2net.py can widen and deepen and transfer/adapters.py can extend:
    # Dense or conv (-> BatchNorm) (-> residual adapter) -> ReLU (-> 2x2 max-pool) blocks; the
    # conv net ends in a global average pool. Widths from `backbone_hidden`.
    'growable_mlp': lambda cfg: GrowableMLP(widths=tuple(cfg.backbone_hidden),
                                            batch_norm=cfg.backbone_batch_norm,
                                            adapter_width=cfg.adapter_width),
    'growable_conv': lambda cfg: GrowableConvNet(widths=tuple(cfg.backbone_hidden),
                                                 kernel_size=cfg.conv_kernel,
                                                 pools=tuple(cfg.conv_pools),
                                                 batch_norm=cfg.backbone_batch_norm,
                                                 adapter_width=cfg.adapter_width),
}


# config.model.dtype -> the computation dtype; the backbones that take one.
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
MIXED_PRECISION_BACKBONES = ('dann_lenet', 'lenet', 'resnet18', 'resnet50', 'resnet18_cifar',
                             'resnet50_cifar', 'vgg16')


def compute_dtype(model_config: ml_collections.ConfigDict) -> jnp.dtype:
  """The backbone's computation dtype; parameters and optimizer state stay float32."""
  if model_config.dtype not in DTYPES:
    raise UserError(f'unknown config.model.dtype={model_config.dtype!r}; choose one of '
                    f'{sorted(DTYPES)}')
  if model_config.dtype != 'float32' and model_config.backbone not in MIXED_PRECISION_BACKBONES:
    raise UserError(f'config.model.dtype={model_config.dtype!r} is implemented for the '
                    f'backbones {", ".join(MIXED_PRECISION_BACKBONES)}, not '
                    f'{model_config.backbone!r}; use float32')
  return DTYPES[model_config.dtype]


def build_model(model_config: ml_collections.ConfigDict, num_classes: int,
                heads: tuple[str, ...] = (),
                task_classes: dict[str, int] | None = None) -> TransferModel:
  """Builds the TransferModel that `model_config` describes, with the extra `heads` a method
  needs ('discriminator' (domain logit), 'adversary' (a second classifier, the discriminator's
  widths), 'classifier2' (a second classifier like the first, in the adversary's place),
  'fusion') and one classifier per entry of `task_classes` (task head name -> classes)."""
  if model_config.batch_norm not in ('train', 'frozen', 'adabn'):
    raise UserError(f"unknown config.model.batch_norm={model_config.batch_norm!r}; choose "
                    "'train', 'frozen' or 'adabn'")
  if model_config.backbone not in BACKBONES:
    raise UserError(f'unknown config.model.backbone={model_config.backbone!r}; '
                     f'choose one of {sorted(BACKBONES)}')
  compute_dtype(model_config)   # Refuses an unknown dtype, or one the backbone lacks.
  if model_config.bottleneck_dropout and (model_config.backbone != 'lenet'
                                          or not model_config.bottleneck_dim):
    raise UserError(f'config.model.bottleneck_dropout={model_config.bottleneck_dropout} needs '
                    "the 'lenet' backbone with a bottleneck (model.bottleneck_dim > 0); set "
                    'one or leave bottleneck_dropout=0')
  if model_config.lenet_conv_padding < 0:
    raise UserError(f'config.model.lenet_conv_padding={model_config.lenet_conv_padding} is '
                    'negative; give the zeros added on each side (2: a 5x5 "SAME" conv) or 0')
  if model_config.lenet_conv_padding and model_config.backbone != 'lenet':
    raise UserError(f'config.model.lenet_conv_padding={model_config.lenet_conv_padding} pads the '
                    f"'lenet' backbone's convolutions, not {model_config.backbone!r}'s; set "
                    "model.backbone='lenet' (its default conv widths are the DANN paper's) or 0")
  if model_config.head_init_std < 0:
    raise UserError(f'config.model.head_init_std={model_config.head_init_std} is negative; give '
                    'a standard deviation > 0, or 0 for the default initialisers')
  unknown = set(heads) - {'discriminator', 'adversary', 'classifier2', 'fusion'}
  if unknown:
    raise ValueError(f'unknown model heads {sorted(unknown)}')
  discriminator = adversary = fusion = None
  if 'discriminator' in heads:
    discriminator = MLP(hidden=tuple(model_config.discriminator_hidden), out_dim=1,
                        batch_norm=model_config.discriminator_batch_norm)
  if 'adversary' in heads:  # MDD's f': the discriminator's hidden widths, one logit per class.
    adversary = MLP(hidden=tuple(model_config.discriminator_hidden), out_dim=num_classes,
                    batch_norm=model_config.discriminator_batch_norm)

  def classifier():
    return MLP(hidden=tuple(model_config.classifier_hidden), out_dim=num_classes,
               dropout=model_config.dropout,
               batch_norm=model_config.classifier_batch_norm,
               dropout_before=model_config.classifier_dropout_before,
               init_std=model_config.head_init_std)

  if 'classifier2' in heads:  # MCD's F2: a second classifier built like the first.
    adversary = classifier()
  if 'fusion' in heads:
    fusion = ResidualMLP(hidden=tuple(model_config.fusion_hidden))
  return TransferModel(
      backbone=BACKBONES[model_config.backbone](model_config),
      classifier=classifier(),
      domain_discriminator=discriminator, adversary=adversary, fusion=fusion,
      task_heads={name: MLP(hidden=tuple(model_config.classifier_hidden), out_dim=classes,
                            dropout=model_config.dropout)
                  for name, classes in (task_classes or {}).items()} or None,
      freeze_backbone_statistics=model_config.batch_norm == 'frozen')


__all__ = ['BACKBONES', 'MLP', 'DannLeNetFeatures', 'GrowableConvNet', 'GrowableMLP',
           'LeNetFeatures', 'MLPFeatures', 'ResNetFeatures', 'ResidualMLP', 'TransferModel',
           'VGGFeatures', 'build_model']
