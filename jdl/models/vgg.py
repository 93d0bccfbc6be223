"""VGG-11/13/16/19 (Simonyan & Zisserman 2014), with and without BatchNorm."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jdl.models import _checks
from jdl.models._registry import register
from jdl.nn.initializers import Initializer
from jdl.nn.preprocessing import check_preprocess, preprocess_images
from jdl.nn.layers import BatchNorm, Conv, Dense, adaptive_avg_pool, max_pool

# Channels of the 3×3 convolutions; 0 marks a 2×2 max-pool (torchvision's "M").
CONFIGS: dict[str, tuple[int, ...]] = {
    "vgg11": (64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0),
    "vgg13": (64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0),
    "vgg16": (64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0),
    "vgg19": (64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0,
              512, 512, 512, 512, 0),
}


class VGG(nn.Module):
  """VGG as in torchvision.

  Convolutions 3×3 (padding 1, with bias; + BatchNorm when ``batch_norm``) and
  ReLU, 2×2 max-pools where ``config`` has a 0, adaptive average pool to
  ``pool_size``², then Dense ``hidden`` → ReLU → Dropout → Dense ``hidden`` → ReLU
  → Dropout → Dense num_classes. At 224×224×3 / 1000 classes: vgg11 132,863,336,
  vgg16 138,357,544, vgg16_bn 138,365,992 parameters. Inputs must be at least
  2^(number of pools) pixels on a side (32 for the standard configs).

  Attributes:
    num_classes: output width (logits).
    config: conv channels with 0 for max-pools (see ``CONFIGS``).
    batch_norm: BatchNorm after each convolution.
    hidden: width of the two hidden fully connected layers (4096).
    pool_size: side of the adaptive average pool before the classifier (7).
    dropout: dropout rate after each hidden fully connected layer (0.5).
    kernel_init: initializer name or function for every kernel.
    preprocess: the input normalisation applied first to images in [0, 1]
      (``jdl.nn.preprocessing``: ``"torchvision"``, ``"caffe"``, ``"tf"``), or None.
  """

  num_classes: int
  config: Sequence[int] = CONFIGS["vgg16"]
  batch_norm: bool = False
  hidden: int = 4096
  pool_size: int = 7
  dropout: float = 0.5
  kernel_init: str | Initializer = "he_normal"
  preprocess: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    y = _checks.images("vgg", x)
    _checks.channels("vgg", self, y, ("conv_0",))
    y = preprocess_images(y, check_preprocess(self.preprocess, "vgg: preprocess"))
    _checks.min_spatial("vgg", y, 2 ** sum(1 for c in self.config if c == 0))
    i = 0
    for channels in self.config:
      if channels == 0:
        y = max_pool(y, 2)
        continue
      y = Conv(channels, (3, 3), padding=1, kernel_init=self.kernel_init, name=f"conv_{i}")(y)
      if self.batch_norm:
        y = BatchNorm(use_running_average=not train, name=f"bn_{i}")(y)
      y = nn.relu(y)
      i += 1
    y = adaptive_avg_pool(y, self.pool_size)
    y = y.reshape((y.shape[0], -1))
    for j in range(2):
      y = nn.relu(Dense(self.hidden, kernel_init=self.kernel_init, name=f"fc_{j}")(y))
      y = nn.Dropout(self.dropout, deterministic=not train)(y)
    return Dense(self.num_classes, kernel_init=self.kernel_init, name="fc_2")(y).astype(jnp.float32)


_VGG_INPUT = (224, 224, 3)
VGG11 = register("vgg11", input_shape=_VGG_INPUT)(functools.partial(VGG, config=CONFIGS["vgg11"]))
VGG13 = register("vgg13", input_shape=_VGG_INPUT)(functools.partial(VGG, config=CONFIGS["vgg13"]))
VGG16 = register("vgg16", input_shape=_VGG_INPUT)(functools.partial(VGG, config=CONFIGS["vgg16"]))
VGG19 = register("vgg19", input_shape=_VGG_INPUT)(functools.partial(VGG, config=CONFIGS["vgg19"]))
VGG11_BN = register("vgg11_bn", input_shape=_VGG_INPUT)(
    functools.partial(VGG, config=CONFIGS["vgg11"], batch_norm=True))
VGG13_BN = register("vgg13_bn", input_shape=_VGG_INPUT)(
    functools.partial(VGG, config=CONFIGS["vgg13"], batch_norm=True))
VGG16_BN = register("vgg16_bn", input_shape=_VGG_INPUT)(
    functools.partial(VGG, config=CONFIGS["vgg16"], batch_norm=True))
VGG19_BN = register("vgg19_bn", input_shape=_VGG_INPUT)(
    functools.partial(VGG, config=CONFIGS["vgg19"], batch_norm=True))
