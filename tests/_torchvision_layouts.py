"""PyTorch modules with torchvision's structure and parameter names, for the weight-loading tests.

torchvision's wheels do not import beside the CPU build of torch this project
pins, so the tests build their reference networks here: the same layers, in the
same order, under the same attribute names as torchvision's ``resnet``,
``vgg``, ``alexnet`` and ``mobilenetv2`` modules (their state dicts have
torchvision's keys). Widths are parameters so that tests can stay small.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.relu = nn.ReLU(inplace=True)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu(out + identity)


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # the stride on the 3x3 ("v1.5")
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = downsample

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return self.relu(out + identity)


class ResNet(nn.Module):
  def __init__(self, block, layers, num_classes: int = 1000):
    super().__init__()
    self.inplanes = 64
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    self.layer1 = self._make_layer(block, 64, layers[0])
    self.layer2 = self._make_layer(block, 128, layers[1], 2)
    self.layer3 = self._make_layer(block, 256, layers[2], 2)
    self.layer4 = self._make_layer(block, 512, layers[3], 2)
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.fc = nn.Linear(512 * block.expansion, num_classes)

  def _make_layer(self, block, planes, blocks, stride=1):
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
      downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                 nn.BatchNorm2d(planes * block.expansion))
    layers = [block(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes * block.expansion
    layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000) -> ResNet:
  return ResNet(BasicBlock, [2, 2, 2, 2], num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
  return ResNet(Bottleneck, [3, 4, 6, 3], num_classes)


VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
  def __init__(self, cfg=VGG16, batch_norm: bool = False, num_classes: int = 1000, hidden: int = 4096):
    super().__init__()
    layers: list[nn.Module] = []
    channels = 3
    for v in cfg:
      if v == "M":
        layers.append(nn.MaxPool2d(2, 2))
        continue
      layers.append(nn.Conv2d(channels, v, 3, padding=1))
      if batch_norm:
        layers.append(nn.BatchNorm2d(v))
      layers.append(nn.ReLU(inplace=True))
      channels = v
    self.features = nn.Sequential(*layers)
    self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(),
                                    nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
                                    nn.Linear(hidden, num_classes))

  def forward(self, x):
    return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class AlexNet(nn.Module):
  def __init__(self, num_classes: int = 1000, hidden: int = 4096):
    super().__init__()
    self.features = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
    self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
    self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(256 * 6 * 6, hidden), nn.ReLU(inplace=True),
                                    nn.Dropout(), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                                    nn.Linear(hidden, num_classes))

  def forward(self, x):
    return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _conv_bn_relu6(inp: int, oup: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
  # torchvision's Conv2dNormActivation: its children are named 0, 1, 2.
  return nn.Sequential(nn.Conv2d(inp, oup, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                       nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
  def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
    super().__init__()
    hidden = int(round(inp * expand_ratio))
    self.use_res_connect = stride == 1 and inp == oup
    layers: list[nn.Module] = []
    if expand_ratio != 1:
      layers.append(_conv_bn_relu6(inp, hidden, kernel=1))
    layers += [_conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
               nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
    self.conv = nn.Sequential(*layers)

  def forward(self, x):
    return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
  SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
             [6, 320, 1, 1]]

  def __init__(self, num_classes: int = 1000):
    super().__init__()
    features: list[nn.Module] = [_conv_bn_relu6(3, 32, stride=2)]
    channels = 32
    for t, c, n, s in self.SETTING:
      for i in range(n):
        features.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
        channels = c
    features.append(_conv_bn_relu6(channels, 1280, kernel=1))
    self.features = nn.Sequential(*features)
    self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

  def forward(self, x):
    x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
    return self.classifier(torch.flatten(x, 1))


def randomize_batch_norm(model: nn.Module, seed: int = 0) -> nn.Module:
  """Running statistics and affine parameters away from their defaults, so that loading them is tested."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.BatchNorm2d):
        n = m.num_features
        m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
        m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        m.weight.copy_(torch.rand(n, generator=g) + 0.5)
        m.bias.copy_(torch.randn(n, generator=g) * 0.1)
  return model.eval()
