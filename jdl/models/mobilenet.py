"""MobileNetV2 (Sandler et al. 2018), torchvision layout."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jdl.models import _checks
from jdl.models._registry import register
from jdl.nn.blocks import InvertedResidual
from jdl.nn.initializers import Initializer
from jdl.nn.layers import BatchNorm, Conv, Dense, global_avg_pool
from jdl.nn.preprocessing import check_preprocess, preprocess_images

# (expand ratio t, output channels c, repeats n, stride of the first repeat s).
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def round_channels(channels: float, divisor: int = 8) -> int:
  """Rounds a scaled channel count to the nearest multiple of ``divisor``.

  Never below ``divisor``, and bumped up by one ``divisor`` if rounding lost more
  than 10% (the rule the MobileNet papers' reference code uses).
  """
  rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * channels:
    rounded += divisor
  return rounded


@register("mobilenet_v2", input_shape=(224, 224, 3))
class MobileNetV2(nn.Module):
  """MobileNetV2: 3×3/2 conv → 17 inverted residual blocks → 1×1 conv → pool → fc.

  Every channel count is scaled by ``width_multiplier`` and rounded to a multiple
  of ``round_nearest``; the last convolution has ``last_channels ×
  max(1, width_multiplier)`` channels. Activations: ReLU6. 3,504,872 parameters
  at 224×224×3 / 1000 classes and width 1.0.

  Attributes:
    num_classes: output width (logits).
    width_multiplier: channel multiplier α (e.g. 0.5, 0.75, 1.0, 1.4).
    dropout: dropout rate before the classifier (0.2).
    last_channels: channels of the final 1×1 convolution at α <= 1 (1280).
    round_nearest: channel counts are multiples of this (8).
    stem: ``"imagenet"`` (stride-2 stem conv) or ``"small"`` (stride 1, for
      32×32 images).
    setting: the (t, c, n, s) table of inverted residual stages.
    kernel_init: initializer name or function for every kernel.
    padding: strided 3×3 convolutions' padding: ``"symmetric"`` (torchvision) or
      ``"same"`` (TensorFlow's SAME, as Keras' MobileNetV2 pads).
    bn_epsilon: BatchNorm epsilon (1e-5; Keras' MobileNetV2 1e-3).
    preprocess: the input normalisation applied first to images in [0, 1]
      (``jdl.nn.preprocessing``), or None.
  """

  num_classes: int
  width_multiplier: float = 1.0
  dropout: float = 0.2
  last_channels: int = 1280
  round_nearest: int = 8
  stem: str = "imagenet"
  setting: Sequence[tuple[int, int, int, int]] = INVERTED_RESIDUAL_SETTING
  kernel_init: str | Initializer = "he_normal"
  padding: str = "symmetric"
  bn_epsilon: float = 1e-5
  preprocess: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if not self.width_multiplier > 0:
      raise ValueError(f"mobilenet_v2: width_multiplier must be > 0, got {self.width_multiplier!r}")
    if self.stem not in ("imagenet", "small"):
      raise ValueError(f"mobilenet_v2: stem must be 'imagenet' or 'small', got {self.stem!r}")
    if self.padding not in ("symmetric", "same"):
      raise ValueError(f"mobilenet_v2: padding must be 'symmetric' or 'same', got {self.padding!r}")
    y = _checks.images("mobilenet_v2", x)
    _checks.channels("mobilenet_v2", self, y, ("stem_conv",))
    y = preprocess_images(y, check_preprocess(self.preprocess, "mobilenet_v2: preprocess"))
    norm = functools.partial(BatchNorm, use_running_average=not train, epsilon=self.bn_epsilon)

    def scale(channels: int) -> int:
      return round_channels(channels * self.width_multiplier, self.round_nearest)

    y = Conv(scale(32), (3, 3), strides=2 if self.stem == "imagenet" else 1,
             padding=1 if self.padding == "symmetric" else "SAME", use_bias=False, kernel_init=self.kernel_init,
             name="stem_conv")(y)
    y = nn.relu6(norm(name="stem_bn")(y))
    index = 0
    for t, c, n, s in self.setting:
      for j in range(n):
        y = InvertedResidual(scale(c), strides=s if j == 0 else 1, expand_ratio=t, kernel_init=self.kernel_init,
                             padding=self.padding, bn_epsilon=self.bn_epsilon, name=f"block_{index}")(y, train=train)
        index += 1
    last = round_channels(self.last_channels * max(1.0, self.width_multiplier), self.round_nearest)
    y = Conv(last, (1, 1), padding=0, use_bias=False, kernel_init=self.kernel_init,
             name="last_conv")(y)
    y = nn.relu6(norm(name="last_bn")(y))
    y = global_avg_pool(y)
    y = nn.Dropout(self.dropout, deterministic=not train)(y)
    return Dense(self.num_classes, kernel_init=self.kernel_init, name="classifier")(y).astype(jnp.float32)
