"""PyTorch reference networks of the tests, written here from the architectures' definitions.

The tests compare the Flax models and the state_dict import against these, so they carry the
module names of the originals: torchvision's ResNets (He et al. 2016; the v1.5 bottleneck that
strides in its 3x3 conv) and the DANN paper's MNIST network (Ganin et al. 2016) with the names of
the DANN speed benchmark's torch peer. No torchvision needed; the library's own copy in
transfer_jax/bench/torch_models.py serves the benchmark only, so a bug there cannot hide one in
transfer_jax.transfer.torch_import.
"""

import torch
from torch import nn


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1):
  padding = kernel // 2
  return (nn.Conv2d(in_channels, out_channels, kernel, stride, padding, bias=False),
          nn.BatchNorm2d(out_channels))


class ResidualBlock(nn.Module):
  """One residual block: basic (3x3, 3x3; expansion 1) or bottleneck (1x1, 3x3 with the stride,
  1x1 to 4x the width). `downsample` (a 1x1 conv and BatchNorm) projects the shortcut wherever
  the stride or the width changes."""

  def __init__(self, in_channels: int, width: int, stride: int, bottleneck: bool):
    super().__init__()
    self.out_channels = width * (4 if bottleneck else 1)
    if bottleneck:
      self.conv1, self.bn1 = _conv_bn(in_channels, width, 1)
      self.conv2, self.bn2 = _conv_bn(width, width, 3, stride)
      self.conv3, self.bn3 = _conv_bn(width, self.out_channels, 1)
      self.layers = 3
    else:
      self.conv1, self.bn1 = _conv_bn(in_channels, width, 3, stride)
      self.conv2, self.bn2 = _conv_bn(width, width, 3)
      self.layers = 2
    self.relu = nn.ReLU()
    self.downsample = None
    if stride != 1 or in_channels != self.out_channels:
      self.downsample = nn.Sequential(
          nn.Conv2d(in_channels, self.out_channels, 1, stride, bias=False),
          nn.BatchNorm2d(self.out_channels))

  def forward(self, x):
    y = x
    for i in range(1, self.layers + 1):
      y = getattr(self, f'bn{i}')(getattr(self, f'conv{i}')(y))
      if i < self.layers:
        y = self.relu(y)
    shortcut = x if self.downsample is None else self.downsample(x)
    return self.relu(y + shortcut)


class ResNet(nn.Module):
  """torchvision's ResNet: stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool; with `cifar` a 3x3/1 conv
  and no pool), four stages of widths 64, 128, 256, 512 (the first at stride 1, the others 2),
  global average pool, `fc`. `features` is the pooled vector before `fc`."""

  def __init__(self, blocks_per_stage, bottleneck: bool, num_classes: int = 10,
               cifar: bool = False):
    super().__init__()
    self.conv1, self.bn1 = ((nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64)) if cifar
                            else _conv_bn(3, 64, 7, 2))
    self.relu = nn.ReLU()
    self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(3, 2, 1)
    channels = 64
    for stage, (width, count) in enumerate(zip((64, 128, 256, 512), blocks_per_stage,
                                               strict=True)):
      blocks = []
      for i in range(count):
        blocks.append(ResidualBlock(channels, width, 2 if stage and not i else 1, bottleneck))
        channels = blocks[-1].out_channels
      setattr(self, f'layer{stage + 1}', nn.Sequential(*blocks))
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Linear(channels, num_classes)

  def features(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    for stage in range(1, 5):
      x = getattr(self, f'layer{stage}')(x)
    return self.avgpool(x).flatten(1)

  def forward(self, x):
    return self.fc(self.features(x))


def resnet(arch: str, num_classes: int = 10) -> ResNet:
  """The torch twin of transfer_jax.models' 'resnet18', 'resnet50' and their '_cifar' variants."""
  depths = {'resnet18': ((2, 2, 2, 2), False), 'resnet50': ((3, 4, 6, 3), True)}
  blocks_per_stage, bottleneck = depths[arch.removesuffix('_cifar')]
  return ResNet(blocks_per_stage, bottleneck, num_classes, cifar=arch.endswith('_cifar'))


class _ReverseGradient(torch.autograd.Function):
  """Identity forward; the backward pass multiplies the gradient by -coeff."""

  @staticmethod
  def forward(ctx, x, coeff):
    ctx.coeff = coeff
    return x.clone()

  @staticmethod
  def backward(ctx, grad):
    return -ctx.coeff * grad, None


class Dann(nn.Module):
  """The DANN paper's MNIST network: conv 32@5x5 -> ReLU -> max-pool 2 -> conv 48@5x5 -> ReLU ->
  max-pool 2 -> flatten (768 on 28x28 inputs); label head dense 100-100-10 (ReLU between);
  domain head gradient reversal -> dense 100 -> ReLU -> dense 1. `forward(x, coeff)` returns the
  label logits and the domain logit per example."""

  def __init__(self):
    super().__init__()
    self.conv1 = nn.Conv2d(1, 32, 5)
    self.conv2 = nn.Conv2d(32, 48, 5)
    self.label_head = nn.Sequential(nn.Linear(768, 100), nn.ReLU(), nn.Linear(100, 100),
                                    nn.ReLU(), nn.Linear(100, 10))
    self.domain_head = nn.Sequential(nn.Linear(768, 100), nn.ReLU(), nn.Linear(100, 1))

  def forward(self, x, coeff):
    pool_relu = lambda y: nn.functional.max_pool2d(torch.relu(y), 2)
    features = pool_relu(self.conv2(pool_relu(self.conv1(x)))).flatten(1)
    domain_logits = self.domain_head(_ReverseGradient.apply(features, coeff))
    return self.label_head(features), domain_logits.squeeze(1)
