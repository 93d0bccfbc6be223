"""Residual blocks: ResNet's basic and bottleneck blocks, MobileNetV2's inverted residual.

All blocks take NHWC inputs, are called as ``block(x, train=...)`` and follow
torchvision's layout, so parameter counts match it: convolutions without bias
(BatchNorm follows each), the stride on the 3×3 convolution (ResNet v1.5), and a
1×1 convolution + BatchNorm projection on the shortcut when the shape changes.
"""

from __future__ import annotations

import functools

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
    conv_bias: give every convolution a bias (Keras' ResNets have them).
    bn_epsilon: the BatchNorms' epsilon.
  """

  features: int
  strides: int = 1
  kernel_init: str | Initializer = "he_normal"
  zero_init_residual: bool = False
  conv_bias: bool = False
  bn_epsilon: float = 1e-5

  expansion = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    _check_nhwc(x, "BasicBlock")
    _check_strides(self.strides, "BasicBlock")
    s = self.strides
    conv = functools.partial(Conv, use_bias=self.conv_bias, kernel_init=self.kernel_init)
    norm = functools.partial(BatchNorm, use_running_average=not train, epsilon=self.bn_epsilon)
    y = conv(self.features, (3, 3), strides=s, padding=1, name="conv1")(x)
    y = nn.relu(norm(name="bn1")(y))
    y = conv(self.features, (3, 3), padding=1, name="conv2")(y)
    y = norm(name="bn2", scale_init=nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones)(y)
    shortcut = x
    if s != 1 or x.shape[-1] != self.features:
      shortcut = conv(self.features, (1, 1), strides=s, padding=0, name="downsample_conv")(x)
      shortcut = norm(name="downsample_bn")(shortcut)
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
    downsample_in: which convolution carries the stride: ``"3x3"`` (torchvision,
      "ResNet v1.5") or ``"1x1"``, the first one (the paper's, Caffe's and
      Keras' ResNet50).
    conv_bias: give every convolution a bias (Keras' ResNets have them).
    bn_epsilon: the BatchNorms' epsilon (Keras' ResNets: 1.001e-5).
  """

  features: int
  strides: int = 1
  expansion: int = 4
  kernel_init: str | Initializer = "he_normal"
  zero_init_residual: bool = False
  downsample_in: str = "3x3"
  conv_bias: bool = False
  bn_epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    _check_nhwc(x, "BottleneckBlock")
    _check_strides(self.strides, "BottleneckBlock")
    if self.downsample_in not in ("3x3", "1x1"):
      raise ValueError(f"BottleneckBlock: downsample_in must be '3x3' or '1x1', got {self.downsample_in!r}")
    s = self.strides
    s1, s3 = (s, 1) if self.downsample_in == "1x1" else (1, s)
    out = self.features * self.expansion
    conv = functools.partial(Conv, use_bias=self.conv_bias, kernel_init=self.kernel_init)
    norm = functools.partial(BatchNorm, use_running_average=not train, epsilon=self.bn_epsilon)
    y = conv(self.features, (1, 1), strides=s1, padding=0, name="conv1")(x)
    y = nn.relu(norm(name="bn1")(y))
    y = conv(self.features, (3, 3), strides=s3, padding=1, name="conv2")(y)
    y = nn.relu(norm(name="bn2")(y))
    y = conv(out, (1, 1), padding=0, name="conv3")(y)
    y = norm(name="bn3", scale_init=nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones)(y)
    shortcut = x
    if s != 1 or x.shape[-1] != out:
      shortcut = conv(out, (1, 1), strides=s, padding=0, name="downsample_conv")(x)
      shortcut = norm(name="downsample_bn")(shortcut)
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
    padding: the depthwise convolution's: ``"symmetric"`` (1 on every side,
      torchvision) or ``"same"`` (TensorFlow's SAME: a strided convolution of an
      even-sized input pads only the bottom and right, as Keras does).
    bn_epsilon: the BatchNorms' epsilon (Keras' MobileNetV2: 1e-3).
  """

  features: int
  strides: int = 1
  expand_ratio: int = 6
  kernel_init: str | Initializer = "he_normal"
  padding: str = "symmetric"
  bn_epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    _check_nhwc(x, "InvertedResidual")
    _check_strides(self.strides, "InvertedResidual")
    if self.expand_ratio < 1:
      raise ValueError(f"InvertedResidual: expand_ratio must be >= 1, got {self.expand_ratio!r}")
    if self.padding not in ("symmetric", "same"):
      raise ValueError(f"InvertedResidual: padding must be 'symmetric' or 'same', got {self.padding!r}")
    in_features = x.shape[-1]
    hidden = int(round(in_features * self.expand_ratio))
    conv = functools.partial(Conv, use_bias=False, kernel_init=self.kernel_init)
    norm = functools.partial(BatchNorm, use_running_average=not train, epsilon=self.bn_epsilon)
    y = x
    if self.expand_ratio != 1:
      y = conv(hidden, (1, 1), padding=0, name="expand_conv")(y)
      y = nn.relu6(norm(name="expand_bn")(y))
    y = conv(hidden, (3, 3), strides=self.strides, padding=1 if self.padding == "symmetric" else "SAME",
             feature_group_count=hidden, name="depthwise_conv")(y)
    y = nn.relu6(norm(name="depthwise_bn")(y))
    y = conv(self.features, (1, 1), padding=0, name="project_conv")(y)
    y = norm(name="project_bn")(y)
    if self.strides == 1 and in_features == self.features:
      y = y + x
    return y
