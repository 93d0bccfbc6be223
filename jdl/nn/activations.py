"""Activation functions by name, and the learnable PReLU.

``get_activation("leaky_relu", negative_slope=0.1)`` returns a function
``x -> y``; ``get_activation("prelu")`` returns a new :class:`PReLU` module (call
it inside a ``@nn.compact`` method, one call per layer, so that every layer
learns its own slope).

=============  ==========================================  =====================
name           definition                                  options
=============  ==========================================  =====================
sigmoid        1 / (1 + exp(-x))
tanh           tanh(x)
relu           max(0, x)
relu6          min(max(0, x), 6) (MobileNet)
leaky_relu     x if x >= 0 else α·x                        negative_slope=0.01
prelu          x if x >= 0 else a·x, ``a`` learned         init_slope=0.25,
                                                           per_channel=False
elu            x if x > 0 else α·(exp(x) - 1)              alpha=1.0
gelu           x·Φ(x)                                      approximate=False
silu / swish   x·sigmoid(x)
softplus       log(1 + exp(x))
softmax        exp(x) / Σ exp(x) over ``axis``             axis=-1
log_softmax    x - logsumexp(x) over ``axis``              axis=-1
identity       x (alias ``linear``)
=============  ==========================================  =====================

Note that ``gelu`` defaults to the exact erf form (PyTorch's default), unlike
``jax.nn.gelu`` whose default is the tanh approximation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class PReLU(nn.Module):
  """Parametric ReLU: ``x`` for ``x >= 0``, ``a * x`` otherwise, ``a`` learned.

  He et al. (2015), "Delving deep into rectifiers". With ``a`` fixed this is the
  Leaky ReLU; with ``a = 0`` the ReLU.

  Attributes:
    init_slope: initial value of the negative-side slope ``a`` (PyTorch: 0.25).
    per_channel: learn one slope per feature (last axis) instead of one shared
      scalar.
    param_dtype: dtype of the slope parameter.
  """

  init_slope: float = 0.25
  per_channel: bool = False
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = (x.shape[-1],) if self.per_channel else ()
    slope = self.param("slope", nn.initializers.constant(self.init_slope), shape,
                       self.param_dtype)
    if self.per_channel:
      slope = slope.reshape((1,) * (x.ndim - 1) + (-1,))
    slope = slope.astype(x.dtype)
    return jnp.where(x >= 0, x, slope * x)


def _identity(x: jax.Array) -> jax.Array:
  return x


def _gelu(x: jax.Array, approximate: bool = False) -> jax.Array:
  return jax.nn.gelu(x, approximate=approximate)


_FUNCTIONS: dict[str, Callable[..., jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "leaky_relu": jax.nn.leaky_relu,
    "elu": jax.nn.elu,
    "gelu": _gelu,
    "silu": jax.nn.silu,
    "softplus": jax.nn.softplus,
    "softmax": jax.nn.softmax,
    "log_softmax": jax.nn.log_softmax,
    "identity": _identity,
}

# name -> the keyword options that function takes.
_OPTIONS: dict[str, tuple[str, ...]] = {
    "leaky_relu": ("negative_slope",),
    "elu": ("alpha",),
    "gelu": ("approximate",),
    "softmax": ("axis",),
    "log_softmax": ("axis",),
    "prelu": ("init_slope", "per_channel", "param_dtype"),
}

_ALIASES: dict[str, str] = {"swish": "silu", "linear": "identity"}


def list_activations() -> list[str]:
  """The activation names ``get_activation`` accepts (aliases included), sorted."""
  return sorted([*_FUNCTIONS, "prelu", *_ALIASES])


def get_activation(name: str | Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
  """Returns the activation called ``name`` (a function or module is returned as is).

  Args:
    name: one of ``list_activations()`` (case-insensitive; ``-`` and ``_`` are the
      same), or a callable.
    **kwargs: the activation's options (see the module docstring), e.g.
      ``negative_slope`` for ``leaky_relu``, ``alpha`` for ``elu``.

  Returns:
    A function ``x -> y``, or for ``prelu`` a new (unbound) :class:`PReLU`.

  Raises:
    ValueError: unknown name (the message lists the known ones).
    TypeError: an option the activation does not take, or a ``name`` that is
      neither a string nor callable.
  """
  if callable(name):
    if kwargs:
      raise TypeError(
          f"get_activation: options {sorted(kwargs)} apply to activation names only, "
          f"got a callable {name!r}")
    return name
  if not isinstance(name, str):
    raise TypeError(f"get_activation: name must be an activation name (str) or callable, got {name!r}")
  key = name.strip().lower().replace("-", "_")
  key = _ALIASES.get(key, key)
  if key not in _FUNCTIONS and key != "prelu":
    raise ValueError(
        f"get_activation: unknown activation {name!r}; known activations: "
        f"{', '.join(list_activations())}")
  unknown = set(kwargs) - set(_OPTIONS.get(key, ()))
  if unknown:
    raise TypeError(
        f"get_activation: {name!r} takes options {list(_OPTIONS.get(key, ())) or 'none'}, "
        f"got unexpected option(s) {sorted(unknown)}")
  if key == "prelu":
    return PReLU(**kwargs)
  fn = _FUNCTIONS[key]
  return functools.partial(fn, **kwargs) if kwargs else fn
