"""AlexNet, torchvision's single-tower variant (64-192-384-256-256 channels)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jdl.models import _checks
from jdl.models._registry import register
from jdl.nn.initializers import Initializer
from jdl.nn.preprocessing import check_preprocess, preprocess_images
from jdl.nn.layers import Conv, Dense, adaptive_avg_pool, max_pool

# Smallest input side for which the three 3×3/2 max-pools still see a 3×3 map.
_MIN_SIZE = 63


@register("alexnet", input_shape=(224, 224, 3))
class AlexNet(nn.Module):
  """AlexNet (Krizhevsky et al. 2012) as in torchvision ("One weird trick" layout).

  conv 11×11/4 (64) → pool → conv 5×5 (192) → pool → conv 3×3 (384) → conv 3×3
  (256) → conv 3×3 (256) → pool (max 3×3/2 each) → adaptive avg-pool to
  ``pool_size``² → Dropout → fc ``hidden`` → ReLU → Dropout → fc ``hidden`` → ReLU
  → fc num_classes. 61,100,840 parameters at 224×224×3 / 1000 classes. Inputs
  must be at least 63×63.

  Attributes:
    num_classes: output width (logits).
    hidden: width of the two hidden fully connected layers (4096).
    pool_size: side of the adaptive average pool before the classifier (6).
    dropout: dropout rate before each hidden fully connected layer (0.5).
    kernel_init: initializer name or function for every kernel.
    preprocess: the input normalisation applied first to images in [0, 1]
      (``jdl.nn.preprocessing``: ``"torchvision"``, ``"caffe"``, ``"tf"``), or None.
  """

  num_classes: int
  hidden: int = 4096
  pool_size: int = 6
  dropout: float = 0.5
  kernel_init: str | Initializer = "he_normal"
  preprocess: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    y = _checks.images("alexnet", x)
    _checks.channels("alexnet", self, y, ("features_0",))
    y = preprocess_images(y, check_preprocess(self.preprocess, "alexnet: preprocess"))
    _checks.min_spatial("alexnet", y, _MIN_SIZE)

    def conv(features: int, k: int, i: int, **kwargs: int) -> Conv:
      return Conv(features, (k, k), kernel_init=self.kernel_init, name=f"features_{i}", **kwargs)

    y = nn.relu(conv(64, 11, 0, strides=4, padding=2)(y))
    y = max_pool(y, 3, strides=2)
    y = nn.relu(conv(192, 5, 1, padding=2)(y))
    y = max_pool(y, 3, strides=2)
    y = nn.relu(conv(384, 3, 2, padding=1)(y))
    y = nn.relu(conv(256, 3, 3, padding=1)(y))
    y = nn.relu(conv(256, 3, 4, padding=1)(y))
    y = max_pool(y, 3, strides=2)
    y = adaptive_avg_pool(y, self.pool_size)
    y = y.reshape((y.shape[0], -1))
    for i in range(2):
      y = nn.Dropout(self.dropout, deterministic=not train)(y)
      y = nn.relu(Dense(self.hidden, kernel_init=self.kernel_init, name=f"classifier_{i}")(y))
    return Dense(self.num_classes, kernel_init=self.kernel_init, name="classifier_2")(y).astype(jnp.float32)
