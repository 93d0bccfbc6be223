"""Signal propagation through a deep MLP at initialization (docs/initialization.md), and recorded activations."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jdl.nn.activations import get_activation
from jdl.nn.initializers import Initializer, get_initializer


def signal_propagation(kernel_init: str | Initializer, *, depth: int = 20, width: int = 256,
                       batch: int = 512, activation: str | Callable[..., jax.Array] = "relu",
                       bias: float = 0.0, key: jax.Array | None = None) -> dict[str, np.ndarray]:
  """Statistics of a random ``depth``-layer MLP's activations, layer by layer.

  The input is a ``(batch, width)`` standard normal sample; layer ``l`` computes
  ``z_l = h_{l-1} @ W_l + bias`` and ``h_l = activation(z_l)`` with ``W_l`` drawn
  by ``kernel_init`` (square ``width × width`` weights, so fan_in = fan_out).

  Args:
    kernel_init: initializer name or function.
    depth: number of layers (>= 1).
    width: units per layer (>= 1).
    batch: number of input samples (>= 2).
    activation: activation name or function.
    bias: constant bias added to every pre-activation.
    key: PRNG key for the inputs and weights; default ``jax.random.key(0)``.

  Returns:
    ``{"variance": (depth,), "preactivation_variance": (depth,),
    "dead_fraction": (depth,)}`` as numpy arrays: the variance over all entries
    of ``h_l`` and of ``z_l``, and the fraction of units whose pre-activation is
    ``<= 0`` for every input of the batch (a ReLU there outputs 0 on the whole
    batch and passes no gradient).
  """
  for name, value, minimum in (("depth", depth, 1), ("width", width, 1), ("batch", batch, 2)):
    if not isinstance(value, int) or value < minimum:
      raise ValueError(f"signal_propagation: {name} must be an int >= {minimum}, got {value!r}")
  init = get_initializer(kernel_init)
  act = get_activation(activation)
  key = jax.random.key(0) if key is None else key
  key, key_x = jax.random.split(key)
  h_BxD = jax.random.normal(key_x, (batch, width), jnp.float32)
  variance, pre_variance, dead = [], [], []
  for k in jax.random.split(key, depth):
    z_BxD = h_BxD @ init(k, (width, width), jnp.float32) + bias
    h_BxD = act(z_BxD)
    variance.append(jnp.var(h_BxD))
    pre_variance.append(jnp.var(z_BxD))
    dead.append(jnp.mean(jnp.all(z_BxD <= 0, axis=0)))
  return {
      "variance": np.asarray(jnp.stack(variance)),
      "preactivation_variance": np.asarray(jnp.stack(pre_variance)),
      "dead_fraction": np.asarray(jnp.stack(dead)),
  }


ACTIVATIONS = "activations"


def record_activation(module: nn.Module, name: str, value: jax.Array) -> jax.Array:
  """Records a hidden layer's output for training diagnostics; returns ``value`` unchanged.

  Call it inside a module's ``__call__`` after a nonlinearity (jdl's MLP and
  small CNN do, for each hidden layer). It costs nothing unless the caller
  asks for the ``"activations"`` collection (``apply(..., mutable=["activations"])``),
  as ``jdl.train.diagnostics`` does on its probe batch, where each recorded
  output's mean, standard deviation and dead-unit fraction are logged under
  ``name``.
  """
  if not module.is_initializing():  # init would return them as a variable collection
    module.sow(ACTIVATIONS, name, value)
  return value
