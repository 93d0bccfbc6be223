"""Multi-layer perceptron (the course's first network) and logistic regression."""

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
from jdl.nn.layers import BatchNorm, Dense


@register("mlp", input_shape=(28, 28, 1))
class MLP(nn.Module):
  """Flatten → [Dense(h) (→ BatchNorm) → activation (→ Dropout)]* → Dense(num_classes).

  Parameters are ``Dense_0 … Dense_{len(hidden)}`` (plus ``BatchNorm_i`` with
  ``batch_norm``, ``PReLU_i`` slopes when ``activation="prelu"``). Each hidden
  layer's output after its activation is recorded as ``hidden_i``
  (``jdl.nn.record_activation``: training diagnostics read it).

  Attributes:
    num_classes: output width (logits).
    hidden: widths of the hidden layers.
    activation: a ``jdl.nn.get_activation`` name (``"relu"``, ``"leaky_relu"``,
      ``"prelu"``, ...) or a function.
    dropout: dropout rate after each hidden layer (0 disables it).
    batch_norm: BatchNorm between each hidden Dense layer and its activation
      (Ioffe & Szegedy 2015; the Dense layers then have no bias).
    kernel_init: ``jdl.nn.get_initializer`` name or function for every kernel
      (default Flax's ``lecun_normal``; ``"he_normal"`` suits ReLU).
  """

  num_classes: int
  hidden: Sequence[int] = (512,)
  activation: str | Callable[..., Any] = "relu"
  dropout: float = 0.0
  kernel_init: str | Initializer = "lecun_normal"
  batch_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if x.ndim < 2:
      raise ValueError(f"mlp: expected an input of shape (batch, ...features), got shape {tuple(x.shape)}")
    x_BxD = jnp.asarray(x, jnp.float32).reshape((x.shape[0], -1))
    _checks.features("mlp", self, x_BxD, ("Dense_0",), x.shape, "input features",
                     "expected an input of shape (batch, {0}), or (batch, ...) with {0} values per example")
    for i, width in enumerate(self.hidden):
      x_BxD = Dense(width, kernel_init=self.kernel_init, use_bias=not self.batch_norm)(x_BxD)
      if self.batch_norm:
        x_BxD = BatchNorm(use_running_average=not train)(x_BxD)
      x_BxD = record_activation(self, f"hidden_{i}", get_activation(self.activation)(x_BxD))
      if self.dropout:
        x_BxD = nn.Dropout(self.dropout, deterministic=not train)(x_BxD)
    return Dense(self.num_classes, kernel_init=self.kernel_init)(x_BxD).astype(jnp.float32)


@register("logreg", input_shape=(28, 28, 1))
class LogReg(nn.Module):
  """Multinomial logistic regression: Flatten → Dense(num_classes).

  Attributes:
    num_classes: output width (logits).
    kernel_init: initializer name or function (default ``"zeros"``: the loss is
      convex, so no symmetry needs breaking).
  """

  num_classes: int
  kernel_init: str | Initializer = "zeros"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # no dropout or batch statistics
    if x.ndim < 2:
      raise ValueError(f"logreg: expected an input of shape (batch, ...features), got shape {tuple(x.shape)}")
    x_BxD = jnp.asarray(x, jnp.float32).reshape((x.shape[0], -1))
    _checks.features("logreg", self, x_BxD, ("Dense_0",), x.shape, "input features",
                     "expected an input of shape (batch, {0}), or (batch, ...) with {0} values per example")
    return Dense(self.num_classes, kernel_init=self.kernel_init)(x_BxD).astype(jnp.float32)
