"""Residual blocks: ResNet's basic and bottleneck blocks, MobileNetV2's inverted residual.

All blocks take NHWC inputs, are called as ``block(x, train=...)`` and follow
torchvision's layout, so parameter counts match it: convolutions without bias
(BatchNorm follows each), the stride on the 3×3 convolution (ResNet v1.5), and a
1×1 convolution + BatchNorm projection on the shortcut when the shape changes.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jdl.nn.initializers import Initializer
from jdl.nn.layers import BatchNorm, Conv


def _check_nhwc(x: jax.Array, block: str) -> None:
  if x.ndim != 4:
    raise ValueError(f"{block}: expected an input of shape (batch, height, width, channels), "
                     f"got shape {x.shape}")


def _check_strides(strides: int, block: str) -> None:
  if not isinstance(strides, int) or strides < 1:
    raise ValueError(f"{block}: strides must be a positive int, got {strides!r}")


class BasicBlock(nn.Module):
  """ResNet-18/34 block: 3×3 conv → BN → ReLU → 3×3 conv → BN, + shortcut, ReLU.

  Attributes:
    features: output channels.
    strides: stride of the first 3×3 convolution (2 halves the resolution).
    kernel_init: initializer name or function for the convolutions.
    zero_init_residual: initialize the last BatchNorm's scale to zero, so the
      block starts as the identity (Goyal et al. 2017; torchvision's
      ``zero_init_residual``).
  """

  features: int
  strides: int = 1
  kernel_init: str | Initializer = "he_normal"
  zero_init_residual: bool = False

  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    _check_nhwc(x, "BasicBlock")
    _check_strides(self.strides, "BasicBlock")
    s = self.strides
    y = Conv(self.features, (3, 3), strides=s, padding=1, use_bias=False,
             kernel_init=self.kernel_init, name="conv1")(x)
    y = nn.relu(BatchNorm(use_running_average=not train, name="bn1")(y))
    y = Conv(self.features, (3, 3), padding=1, use_bias=False, kernel_init=self.kernel_init,
             name="conv2")(y)
    y = BatchNorm(use_running_average=not train, name="bn2",
                  scale_init=nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones)(y)
    shortcut = x
    if s != 1 or x.shape[-1] != self.features:
      shortcut = Conv(self.features, (1, 1), strides=s, padding=0, use_bias=False,
                      kernel_init=self.kernel_init, name="downsample_conv")(x)
      shortcut = BatchNorm(use_running_average=not train, name="downsample_bn")(shortcut)
    return nn.relu(y + shortcut)


class BottleneckBlock(nn.Module):
  """ResNet-50/101/152 block: 1×1 → 3×3 (strided) → 1×1 (×expansion), + shortcut.

  Each convolution is followed by BatchNorm; ReLU after the first two and after
  the sum. Output channels: ``features * expansion``.

  Attributes:
    features: bottleneck width (the 3×3 convolution's channels).
    strides: stride of the 3×3 convolution.
    expansion: output channels / ``features`` (4 in ResNet).
    kernel_init: initializer name or function for the convolutions.
    zero_init_residual: zero-initialize the last BatchNorm's scale.
  """

  features: int
  strides: int = 1
  expansion: int = 4
  kernel_init: str | Initializer = "he_normal"
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    _check_nhwc(x, "BottleneckBlock")
    _check_strides(self.strides, "BottleneckBlock")
    s = self.strides
    out = self.features * self.expansion
    y = Conv(self.features, (1, 1), padding=0, use_bias=False, kernel_init=self.kernel_init,
             name="conv1")(x)
    y = nn.relu(BatchNorm(use_running_average=not train, name="bn1")(y))
    y = Conv(self.features, (3, 3), strides=s, padding=1, use_bias=False,
             kernel_init=self.kernel_init, name="conv2")(y)
    y = nn.relu(BatchNorm(use_running_average=not train, name="bn2")(y))
    y = Conv(out, (1, 1), padding=0, use_bias=False, kernel_init=self.kernel_init, name="conv3")(y)
    y = BatchNorm(use_running_average=not train, name="bn3",
                  scale_init=nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones)(y)
    shortcut = x
    if s != 1 or x.shape[-1] != out:
      shortcut = Conv(out, (1, 1), strides=s, padding=0, use_bias=False,
                      kernel_init=self.kernel_init, name="downsample_conv")(x)
      shortcut = BatchNorm(use_running_average=not train, name="downsample_bn")(shortcut)
    return nn.relu(y + shortcut)


class InvertedResidual(nn.Module):
  """MobileNetV2 block: 1×1 expand → 3×3 depthwise (strided) → 1×1 linear projection.

  Sandler et al. (2018). Expansion and depthwise convolutions are followed by
  BatchNorm and ReLU6; the projection by BatchNorm only (a linear bottleneck).
  The input is added back when ``strides == 1`` and the channel count is kept.
  With ``expand_ratio == 1`` the expansion convolution is skipped.

  Attributes:
    features: output channels.
    strides: stride of the depthwise convolution (1 or 2).
    expand_ratio: hidden channels = round(input channels × expand_ratio).
    kernel_init: initializer name or function for the convolutions.
  """

  features: int
  strides: int = 1
  expand_ratio: int = 6
  kernel_init: str | Initializer = "he_normal"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    _check_nhwc(x, "InvertedResidual")
    _check_strides(self.strides, "InvertedResidual")
    if self.expand_ratio < 1:
      raise ValueError(f"InvertedResidual: expand_ratio must be >= 1, got {self.expand_ratio!r}")
    in_features = x.shape[-1]
    hidden = int(round(in_features * self.expand_ratio))
    y = x
    if self.expand_ratio != 1:
      y = Conv(hidden, (1, 1), padding=0, use_bias=False, kernel_init=self.kernel_init,
               name="expand_conv")(y)
      y = nn.relu6(BatchNorm(use_running_average=not train, name="expand_bn")(y))
    y = Conv(hidden, (3, 3), strides=self.strides, padding=1, feature_group_count=hidden,
             use_bias=False, kernel_init=self.kernel_init, name="depthwise_conv")(y)
    y = nn.relu6(BatchNorm(use_running_average=not train, name="depthwise_bn")(y))
    y = Conv(self.features, (1, 1), padding=0, use_bias=False, kernel_init=self.kernel_init,
             name="project_conv")(y)
    y = BatchNorm(use_running_average=not train, name="project_bn")(y)
    if self.strides == 1 and in_features == self.features:
      y = y + x
    return y
