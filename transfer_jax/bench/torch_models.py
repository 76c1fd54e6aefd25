"""torchvision-identical ResNets built by hand (no torchvision), and their fine-tuning step timed.

The networks carry torchvision's module names, so their state_dicts are what
`transfer_jax.transfer.torch_import` reads (the tests build their own torch ResNets, in
tests/torch_references.py, to check the Flax ones). Run as a script, this times the PyTorch
side of `transfer_jax.bench.resnet_step` in a process without JAX and prints one JSON line:

  python -m transfer_jax.bench.torch_models --arch resnet50 --batch_size 16 --image_size 224 \\
      --num_classes 31 --steps 3 --repeats 3
"""

import argparse
import json
import statistics
import time

import torch
from torch import nn


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.relu = nn.ReLU(inplace=True)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x):
    y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
    return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # v1.5: stride here.
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = downsample

  def forward(self, x):
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
  """torchvision's ResNet; `cifar=True` swaps the stem for a 3x3/1 conv without max-pool."""

  def __init__(self, block, layers, num_classes=10, cifar=False):
    super().__init__()
    self.inplanes = 64
    self.conv1 = (nn.Conv2d(3, 64, 3, 1, 1, bias=False) if cifar else
                  nn.Conv2d(3, 64, 7, 2, 3, bias=False))
    self.bn1 = nn.BatchNorm2d(64)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(3, 2, 1)
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
      setattr(self, f'layer{i + 1}', self._make_layer(block, planes, blocks, 1 if i == 0 else 2))
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Linear(512 * block.expansion, num_classes)

  def _make_layer(self, block, planes, blocks, stride):
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
      downsample = nn.Sequential(
          nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
          nn.BatchNorm2d(planes * block.expansion))
    layers = [block(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes * block.expansion
    layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def features(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return torch.flatten(self.avgpool(x), 1)

  def forward(self, x):
    return self.fc(self.features(x))


def resnet(arch: str, num_classes: int = 10) -> ResNet:
  """'resnet18', 'resnet50', or either with '_cifar' (the names of transfer_jax.models)."""
  block, layers = ((Bottleneck, (3, 4, 6, 3)) if arch.startswith('resnet50') else
                   (BasicBlock, (2, 2, 2, 2)))
  return ResNet(block, layers, num_classes, cifar=arch.endswith('_cifar'))


def fine_tuning_step(model: ResNet, lr: float, backbone_lr_multiplier: float, momentum: float,
                     weight_decay: float, nesterov: bool = False):
  """The step of configs/imagefolder_resnet50.py in torch: SGD with momentum and coupled weight
  decay, the backbone at lr x multiplier and the new `fc` head at lr; BatchNorm in train mode."""
  head = list(model.fc.parameters())
  backbone = [p for name, p in model.named_parameters() if not name.startswith('fc.')]
  optimizer = torch.optim.SGD(
      [{'params': backbone, 'lr': lr * backbone_lr_multiplier}, {'params': head, 'lr': lr}],
      lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
  model.train()

  def step(images, labels):
    optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss

  return step


def main() -> None:
  parser = argparse.ArgumentParser(description='Times the torch ResNet fine-tuning step.')
  parser.add_argument('--arch', default='resnet18')
  parser.add_argument('--batch_size', type=int, default=16)
  parser.add_argument('--image_size', type=int, default=224)
  parser.add_argument('--num_classes', type=int, default=31)
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--lr', type=float, default=0.01)
  parser.add_argument('--backbone_lr_multiplier', type=float, default=0.1)
  parser.add_argument('--momentum', type=float, default=0.9)
  parser.add_argument('--weight_decay', type=float, default=5e-4)
  args = parser.parse_args()

  torch.manual_seed(0)
  model = resnet(args.arch, args.num_classes)
  step = fine_tuning_step(model, args.lr, args.backbone_lr_multiplier, args.momentum,
                          args.weight_decay)
  generator = torch.Generator().manual_seed(0)
  images = torch.rand((args.batch_size, 3, args.image_size, args.image_size),
                      generator=generator)
  labels = torch.randint(0, args.num_classes, (args.batch_size,), generator=generator)
  start = time.perf_counter()
  step(images, labels).item()
  first_step_s = time.perf_counter() - start
  step(images, labels).item()  # Warm-up.
  rates = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    for _ in range(args.steps):
      loss = step(images, labels)
    loss.item()
    rates.append(args.steps / (time.perf_counter() - start))
  rate = statistics.median(rates)
  print(json.dumps({
      'framework': f'torch {torch.__version__}', 'arch': args.arch,
      'batch_size': args.batch_size, 'image_size': args.image_size,
      'median_ms_per_step': round(1e3 / rate, 3), 'steps_per_s': round(rate, 4),
      'examples_per_s': round(rate * args.batch_size, 3),
      'ms_per_step_each_repeat': [round(1e3 / r, 3) for r in rates],
      'first_step_s': round(first_step_s, 3), 'threads': torch.get_num_threads()}))


if __name__ == '__main__':
  main()
