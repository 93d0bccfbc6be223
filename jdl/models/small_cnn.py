"""Small convolutional classifiers: LeNet-5, a Fashion-MNIST CNN, the MNIST-1D CNN."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jdl.models import _checks
from jdl.models._registry import register
from jdl.nn.activations import get_activation
from jdl.nn.initializers import Initializer
from jdl.nn.diagnostics import record_activation
from jdl.nn.layers import BatchNorm, Conv, Dense, avg_pool, max_pool


def _pool(kind: str, model: str) -> Callable[..., jax.Array]:
  if kind == "max":
    return max_pool
  if kind == "avg":
    return avg_pool
  raise ValueError(f"{model}: pooling must be 'max' or 'avg', got {kind!r}")


@register("lenet5", input_shape=(32, 32, 1))
class LeNet5(nn.Module):
  """LeNet-5 (LeCun et al. 1998) in its common modern form.

  conv1 5×5×6 → act → pool 2 → conv2 5×5×16 → act → pool 2 → fc1 120 → act →
  fc2 84 → act → fc3 num_classes. On 32×32×1 inputs with 10 classes it has
  61,706 parameters. For 28×28 inputs (MNIST, Fashion-MNIST) pass ``padding=2``
  to keep the 5×5×16 feature map (and the parameter count); without it the
  classifier sees 4×4×16 features.

  Attributes:
    num_classes: output width (logits).
    padding: zero padding of conv1 (conv2 is unpadded).
    activation: activation name or function (the 1998 paper used a scaled tanh).
    pooling: ``"max"`` or ``"avg"`` (the paper's subsampling was an average).
    kernel_init: initializer name or function for every kernel.
  """

  num_classes: int
  padding: int = 0
  activation: str | Callable[..., Any] = "relu"
  pooling: str = "max"
  kernel_init: str | Initializer = "he_normal"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # no dropout or batch statistics
    pool = _pool(self.pooling, "lenet5")
    x_in = _checks.images("lenet5", x)
    _checks.channels("lenet5", self, x_in, ("conv1",))
    # conv2's 5×5 output must survive the second 2×2 pool: H + 2·padding - 4 >= 12
    _checks.min_spatial("lenet5", x_in, max(1, 16 - 2 * self.padding))

    def act() -> Callable[..., Any]:  # called per layer: a "prelu" gets one module per layer
      return get_activation(self.activation)

    y = Conv(6, (5, 5), padding=self.padding, kernel_init=self.kernel_init, name="conv1")(x_in)
    y = pool(act()(y), 2)
    y = Conv(16, (5, 5), padding=0, kernel_init=self.kernel_init, name="conv2")(y)
    y = pool(act()(y), 2)
    y = y.reshape((y.shape[0], -1))
    _checks.features("lenet5", self, y, ("fc1",), x.shape, "features after the convolutions")
    y = act()(Dense(120, kernel_init=self.kernel_init, name="fc1")(y))
    y = act()(Dense(84, kernel_init=self.kernel_init, name="fc2")(y))
    return Dense(self.num_classes, kernel_init=self.kernel_init, name="fc3")(y).astype(jnp.float32)


@register("cnn_small", input_shape=(28, 28, 1))
class CNNSmall(nn.Module):
  """A two-convolution network for 28×28 images, under 100K parameters.

  [conv k×k (same padding) → BatchNorm → act → max-pool 2] × 2 → Dropout →
  Dense(num_classes). With the defaults on 28×28×1 and 10 classes: 83,562
  parameters (+192 BatchNorm statistics). Two-layer convnets of this size are
  listed at 0.925 test accuracy on Fashion-MNIST's benchmark table.

  Attributes:
    num_classes: output width (logits).
    features: channels of the convolutions.
    kernel_size: square kernel size (odd).
    batch_norm: BatchNorm after each convolution (the convolutions then have no
      bias).
    dropout: dropout rate before the classifier.
    activation: activation name or function.
    kernel_init: initializer name or function for every kernel.
  """

  num_classes: int
  features: Sequence[int] = (32, 64)
  kernel_size: int = 5
  batch_norm: bool = True
  dropout: float = 0.5
  activation: str | Callable[..., Any] = "relu"
  kernel_init: str | Initializer = "he_normal"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.kernel_size < 1 or self.kernel_size % 2 != 1:
      raise ValueError(f"cnn_small: kernel_size must be a positive odd int, got {self.kernel_size!r}")
    y = _checks.images("cnn_small", x)
    _checks.channels("cnn_small", self, y, ("conv_0",))
    _checks.min_spatial("cnn_small", y, 2 ** len(self.features))
    for i, width in enumerate(self.features):
      y = Conv(width, (self.kernel_size, self.kernel_size), padding=self.kernel_size // 2,
               use_bias=not self.batch_norm, kernel_init=self.kernel_init, name=f"conv_{i}")(y)
      if self.batch_norm:
        y = BatchNorm(use_running_average=not train, name=f"bn_{i}")(y)
      y = max_pool(record_activation(self, f"conv_{i}_act", get_activation(self.activation)(y)), 2)
    y = y.reshape((y.shape[0], -1))
    if self.dropout:
      y = nn.Dropout(self.dropout, deterministic=not train)(y)
    _checks.features("cnn_small", self, y, ("fc",), x.shape, "features after the convolutions")
    return Dense(self.num_classes, kernel_init=self.kernel_init, name="fc")(y).astype(jnp.float32)


@register("cnn1d", input_shape=(40,))
class CNN1D(nn.Module):
  """The MNIST-1D paper's convolutional baseline (Greydanus 2020).

  Three 1-D convolutions of ``channels`` channels (kernels 5, 3, 3; stride 2;
  padding 1) with ReLU, then a linear layer on the flattened features. A length-40
  MNIST-1D signal gives 5 positions × 25 channels = 125 features; 5,210
  parameters for 10 classes.

  Inputs: ``(batch, length)`` or ``(batch, length, channels)``.

  Attributes:
    num_classes: output width (logits).
    channels: channels of every convolution.
    kernel_sizes: one kernel size per convolution.
    strides: stride of every convolution.
    padding: zero padding of every convolution.
    activation: activation name or function.
    kernel_init: initializer name or function for every kernel.
  """

  num_classes: int
  channels: int = 25
  kernel_sizes: Sequence[int] = (5, 3, 3)
  strides: int = 2
  padding: int = 1
  activation: str | Callable[..., Any] = "relu"
  kernel_init: str | Initializer = "he_normal"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # no dropout or batch statistics
    if x.ndim == 2:
      x = x[..., None]
    if x.ndim != 3:
      raise ValueError(
          "cnn1d: expected signals of shape (batch, length) or (batch, length, channels), "
          f"got an input of shape {tuple(x.shape)}")
    y = jnp.asarray(x, jnp.float32)
    _checks.channels("cnn1d", self, y, ("conv1",), layout="(batch, length, {})")
    for i, k in enumerate(self.kernel_sizes, start=1):
      if y.shape[1] + 2 * self.padding < k:
        raise ValueError(
            f"cnn1d: the signal is too short for conv{i} (kernel {k}): input shape {tuple(x.shape)}")
      y = Conv(self.channels, (k,), strides=self.strides, padding=self.padding,
               kernel_init=self.kernel_init, name=f"conv{i}")(y)
      y = get_activation(self.activation)(y)
    y = y.reshape((y.shape[0], -1))
    _checks.features("cnn1d", self, y, ("linear",), x.shape, "features after the convolutions")
    return Dense(self.num_classes, kernel_init=self.kernel_init, name="linear")(y).astype(jnp.float32)
