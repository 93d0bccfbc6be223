"""Multi-layer perceptron: the course's first network."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jdl.models._registry import register


@register("mlp")
class MLP(nn.Module):
  """Flatten → [Dense(h) → activation]* → Dense(num_classes).

  Attributes:
    num_classes: output width (logits).
    hidden: widths of the hidden layers.
    activation: a function or the name of one in ``jax.nn``.
    dropout: dropout rate after each hidden layer (0 disables it).
  """

  num_classes: int
  hidden: Sequence[int] = (512,)
  activation: str = "relu"
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    act = getattr(jax.nn, self.activation) if isinstance(self.activation, str) else self.activation
    x_BxD = x.reshape((x.shape[0], -1)).astype(jnp.float32)
    for width in self.hidden:
      x_BxD = act(nn.Dense(width)(x_BxD))
      if self.dropout:
        x_BxD = nn.Dropout(self.dropout, deterministic=not train)(x_BxD)
    return nn.Dense(self.num_classes)(x_BxD)
