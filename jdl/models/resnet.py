"""ResNet-18/34/50/101 (He et al. 2015), torchvision layout (v1.5: stride on the 3×3)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jdl.models import _checks
from jdl.models._registry import register
from jdl.nn.blocks import BasicBlock, BottleneckBlock
from jdl.nn.initializers import Initializer
from jdl.nn.layers import BatchNorm, Conv, Dense, global_avg_pool, max_pool
from jdl.nn.preprocessing import check_preprocess, preprocess_images

_BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}
_STEMS = ("imagenet", "small")


class ResNet(nn.Module):
  """Residual network: stem → 4 stages of residual blocks → global average pool → fc.

  Stems: ``"imagenet"``: 7×7/2 conv (``width`` channels) → BN → ReLU → 3×3/2
  max-pool (224×224 → 56×56); ``"small"`` for 28×28 / 32×32 images: 3×3/1 conv →
  BN → ReLU, no max-pool. Stage ``i`` has ``width·2^i`` channels (×4 after
  bottleneck blocks) and halves the resolution in its first block (except stage
  0). Parameter names follow torchvision: ``stem_conv``, ``stem_bn``,
  ``layer1_0`` … ``layer4_{n-1}``, ``fc``. At 224×224×3 / 1000 classes:
  resnet18 11,689,512, resnet34 21,797,672, resnet50 25,557,032, resnet101
  44,549,160 parameters (BatchNorm running statistics not counted).

  Attributes:
    num_classes: output width (logits).
    stage_sizes: blocks per stage.
    block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (ResNet-50 and up).
    stem: ``"imagenet"`` or ``"small"``.
    width: channels of the stem and of the first stage (64).
    kernel_init: initializer name or function for every kernel (torchvision
      uses He normal with ``mode="fan_out"``; here He normal, fan-in).
    zero_init_residual: zero-initialize the last BatchNorm scale of each block,
      so every block starts as the identity.
    downsample_in: bottleneck blocks' strided convolution: ``"3x3"``
      (torchvision) or ``"1x1"`` (the paper's v1, Keras' ResNet50).
    conv_bias: convolutions with biases (Keras' ResNets).
    bn_epsilon: BatchNorm epsilon (1e-5; Keras' ResNets 1.001e-5).
    preprocess: the input normalisation applied first to images in [0, 1]
      (``jdl.nn.preprocessing``: ``"torchvision"``, ``"caffe"``, ``"tf"``), or
      None; the weight loaders set the one their weights were trained with.
  """

  num_classes: int
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block: str = "basic"
  stem: str = "imagenet"
  width: int = 64
  kernel_init: str | Initializer = "he_normal"
  zero_init_residual: bool = False
  downsample_in: str = "3x3"
  conv_bias: bool = False
  bn_epsilon: float = 1e-5
  preprocess: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.block not in _BLOCKS:
      raise ValueError(f"resnet: block must be one of {sorted(_BLOCKS)}, got {self.block!r}")
    if self.stem not in _STEMS:
      raise ValueError(f"resnet: stem must be one of {list(_STEMS)}, got {self.stem!r}")
    y = _checks.images("resnet", x)
    _checks.channels("resnet", self, y, ("stem_conv",))
    y = preprocess_images(y, check_preprocess(self.preprocess, "resnet: preprocess"))
    if self.stem == "imagenet":
      y = Conv(self.width, (7, 7), strides=2, padding=3, use_bias=self.conv_bias,
               kernel_init=self.kernel_init, name="stem_conv")(y)
    else:
      y = Conv(self.width, (3, 3), padding=1, use_bias=self.conv_bias, kernel_init=self.kernel_init,
               name="stem_conv")(y)
    y = nn.relu(BatchNorm(use_running_average=not train, epsilon=self.bn_epsilon, name="stem_bn")(y))
    if self.stem == "imagenet":
      y = max_pool(y, 3, strides=2, padding=1)
    block_cls = _BLOCKS[self.block]
    options = dict(kernel_init=self.kernel_init, zero_init_residual=self.zero_init_residual,
                   conv_bias=self.conv_bias, bn_epsilon=self.bn_epsilon)
    if self.block == "bottleneck":
      options["downsample_in"] = self.downsample_in
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        y = block_cls(features=self.width * 2**i, strides=2 if i > 0 and j == 0 else 1,
                      name=f"layer{i + 1}_{j}", **options)(y, train=train)
    y = global_avg_pool(y)
    return Dense(self.num_classes, kernel_init=self.kernel_init, name="fc")(y).astype(jnp.float32)


_INPUT = (224, 224, 3)
ResNet18 = register("resnet18", input_shape=_INPUT)(
    functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block="basic"))
ResNet34 = register("resnet34", input_shape=_INPUT)(
    functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="basic"))
ResNet50 = register("resnet50", input_shape=_INPUT)(
    functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck"))
ResNet101 = register("resnet101", input_shape=_INPUT)(
    functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block="bottleneck"))
