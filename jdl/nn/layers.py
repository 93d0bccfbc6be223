"""Layers: Flax's Dense/Conv/BatchNorm with name-based init, pooling, Flatten.

``Dense`` and ``Conv`` are Flax's ``nn.Dense`` / ``nn.Conv`` (same parameters,
same auto-names ``Dense_0``, ``Conv_0``) whose ``kernel_init`` / ``bias_init``
also take an initializer name::

  Conv(64, (3, 3), padding=1, kernel_init="he_normal")

``BatchNorm`` is ``nn.BatchNorm`` with PyTorch's defaults (running-average
momentum 0.9, i.e. PyTorch's ``momentum=0.1``; epsilon 1e-5). Its running mean
and variance live in the ``'batch_stats'`` collection: pass
``use_running_average=not train``, and ``mutable=['batch_stats']`` to ``apply``
when training. ``Dropout`` (rng stream ``'dropout'``) and ``LayerNorm`` are
Flax's.

Pooling functions take NHWC (or N, L, C / N, D, H, W, C) arrays and PyTorch-style
integer sizes, strides and paddings.
"""

from __future__ import annotations

import functools

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jdl.nn import conv as conv_lib
from jdl.nn.initializers import Initializer, get_initializer

Dropout = nn.Dropout
LayerNorm = nn.LayerNorm


class Dense(nn.Dense):
  """``nn.Dense`` whose ``kernel_init`` / ``bias_init`` may be initializer names.

  Attributes:
    features: output width.
    kernel_init: initializer name (see ``jdl.nn.get_initializer``) or function;
      default ``"lecun_normal"`` (Flax's default).
    bias_init: initializer name or function; default ``"zeros"``.

  The other attributes are ``flax.linen.Dense``'s.
  """

  kernel_init: str | Initializer = "lecun_normal"
  bias_init: str | Initializer = "zeros"

  def __post_init__(self) -> None:
    self.kernel_init = get_initializer(self.kernel_init)
    self.bias_init = get_initializer(self.bias_init)
    super().__post_init__()


class Conv(nn.Conv):
  """``nn.Conv`` whose ``kernel_init`` / ``bias_init`` may be initializer names.

  ``padding`` is Flax's: ``'SAME'``, ``'VALID'``, an int (PyTorch's symmetric
  padding) or ``(low, high)`` pairs.

  The convolution is ``jdl.nn.conv.conv_general_dilated``: on a CPU its
  gradients are written in the form XLA's fast kernels take, so a model trains
  as fast inside the epoch's ``lax.scan`` as in a step of its own (values and
  gradients equal ``lax.conv_general_dilated``'s); elsewhere it is
  ``lax.conv_general_dilated`` itself.

  Attributes:
    features: output channels.
    kernel_size: e.g. ``(3, 3)``.
    kernel_init: initializer name or function; default ``"lecun_normal"``.
    bias_init: initializer name or function; default ``"zeros"``.

  The other attributes are ``flax.linen.Conv``'s.
  """

  kernel_init: str | Initializer = "lecun_normal"
  bias_init: str | Initializer = "zeros"
  conv_general_dilated: Callable[..., jax.Array] | None = conv_lib.conv_general_dilated

  def __post_init__(self) -> None:
    self.kernel_init = get_initializer(self.kernel_init)
    self.bias_init = get_initializer(self.bias_init)
    super().__post_init__()


class BatchNorm(nn.BatchNorm):
  """``nn.BatchNorm`` with PyTorch's defaults: momentum 0.9, epsilon 1e-5.

  In training (``use_running_average=False``) it normalizes with the batch's mean
  and (biased) variance and updates ``batch_stats`` (``mean``, ``var``) as
  ``stat <- momentum * stat + (1 - momentum) * batch_stat``; in evaluation it
  normalizes with the stored running statistics. Parameters: ``scale`` and
  ``bias`` (PyTorch's ``weight`` and ``bias``).
  """

  momentum: float = 0.9
  epsilon: float = 1e-5


class Flatten(nn.Module):
  """Reshapes ``(batch, *dims)`` to ``(batch, prod(dims))``."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return x.reshape((x.shape[0], -1))


def _tuple(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
  if isinstance(value, int):
    return (value,) * n
  value = tuple(value)
  if len(value) != n or not all(isinstance(v, int) for v in value):
    raise ValueError(f"{name} must be an int or a sequence of {n} ints, got {value!r}")
  return value


def _pool_args(x: jax.Array, window: int | Sequence[int], strides: int | Sequence[int] | None,
               padding: int | Sequence[int] | str, fn: str) -> tuple[Any, Any, Any]:
  n = x.ndim - 2
  if n < 1:
    raise ValueError(f"{fn}: expected an input of shape (batch, *spatial, channels), got shape {x.shape}")
  window_t = _tuple(window, n, f"{fn}: window")
  strides_t = window_t if strides is None else _tuple(strides, n, f"{fn}: strides")
  if isinstance(padding, str):
    pad = padding
  else:
    pad = tuple((p, p) for p in _tuple(padding, n, f"{fn}: padding"))
  return window_t, strides_t, pad


def max_pool(x: jax.Array, window: int | Sequence[int], strides: int | Sequence[int] | None = None,
             padding: int | Sequence[int] | str = 0) -> jax.Array:
  """Max pooling over the spatial axes (PyTorch's ``MaxPool2d``; pads with -inf).

  Args:
    x: ``(batch, *spatial, channels)``.
    window: window size (int or one per spatial axis).
    strides: defaults to ``window`` (PyTorch's default).
    padding: int(s) of symmetric padding, or ``'SAME'`` / ``'VALID'``.
  """
  window_t, strides_t, pad = _pool_args(x, window, strides, padding, "max_pool")
  if _tiles(window_t, strides_t, pad):
    return _tile_max(x, window_t)
  return nn.max_pool(x, window_t, strides=strides_t, padding=pad)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tile_max(x: jax.Array, window: tuple[int, ...]) -> jax.Array:
  """``_tile_reduce(x, window, jnp.max)`` with its gradient in one fused pass.

  The same gradient as JAX's rule for ``max`` (a window's tied maxima share
  it evenly), written as one comparison with the pooled output instead of
  the several passes JAX's rule makes (2× faster on a CPU for a 28×28×24 map).
  """
  return _tile_reduce(x, window, jnp.max)


def _tile_max_fwd(x, window):
  y = _tile_max(x, window)
  return y, (x, y)


def _tile_max_bwd(window, residuals, g):
  x, y = residuals
  tiles = _tiles_of(x, window)
  spread = tuple(range(2, 2 * len(window) + 1, 2))
  hit = tiles == jnp.expand_dims(y, spread)
  share = jnp.expand_dims(g / hit.sum(axis=spread, dtype=g.dtype), spread)
  dx = jnp.where(hit, share, jnp.zeros((), g.dtype)).reshape(tiles.shape[:1] + _untiled(tiles.shape, window)
                                                            + tiles.shape[-1:])
  pads = [(0, 0)] + [(0, n - m) for n, m in zip(x.shape[1:-1], dx.shape[1:-1])] + [(0, 0)]
  return (jnp.pad(dx, pads).astype(x.dtype),)  # the cropped remainder gets no gradient


_tile_max.defvjp(_tile_max_fwd, _tile_max_bwd)


def _untiled(shape: tuple[int, ...], window: tuple[int, ...]) -> tuple[int, ...]:
  return tuple(shape[1 + 2 * i] * w for i, w in enumerate(window))


def _tiles(window: tuple[int, ...], strides: tuple[int, ...], pad: Any) -> bool:
  """Non-overlapping, unpadded windows (the common ``pool(x, 2)``): a reshape does them."""
  unpadded = pad == "VALID" or (not isinstance(pad, str) and all(p == (0, 0) for p in pad))
  return unpadded and tuple(window) == tuple(strides)


def _tile_reduce(x: jax.Array, window: tuple[int, ...], reduce: Callable[..., jax.Array]) -> jax.Array:
  """Pools non-overlapping windows by cropping the remainder (as 'VALID') and reshaping.

  The forward values equal ``reduce_window``'s. It is the fast path on every
  backend, and several times faster on XLA's CPU backend for training: the
  gradient is elementwise instead of a ``select_and_scatter``. For max pooling
  the gradient of a window with tied maxima is split evenly between them (JAX's
  rule for ``max``) rather than sent to the first one; after a ReLU the only
  common ties are zeros, whose gradient the ReLU zeroes anyway.
  """
  return reduce(_tiles_of(x, window), axis=tuple(range(2, 2 * len(window) + 1, 2)))


def _tiles_of(x: jax.Array, window: tuple[int, ...]) -> jax.Array:
  """``(N, o1, w1, o2, w2, ..., C)``: ``x`` cropped to whole windows and reshaped into them."""
  spatial = x.shape[1:-1]
  out = tuple(n // w for n, w in zip(spatial, window))
  x = x[(slice(None),) + tuple(slice(0, o * w) for o, w in zip(out, window))]
  shape = [x.shape[0]]
  for o, w in zip(out, window):
    shape += [o, w]
  return x.reshape(shape + [x.shape[-1]])


def avg_pool(x: jax.Array, window: int | Sequence[int], strides: int | Sequence[int] | None = None,
             padding: int | Sequence[int] | str = 0, count_include_pad: bool = True) -> jax.Array:
  """Average pooling over the spatial axes (PyTorch's ``AvgPool2d``)."""
  window_t, strides_t, pad = _pool_args(x, window, strides, padding, "avg_pool")
  if _tiles(window_t, strides_t, pad):
    return _tile_reduce(x, window_t, jnp.mean)
  return nn.avg_pool(x, window_t, strides=strides_t, padding=pad, count_include_pad=count_include_pad)


def global_avg_pool(x: jax.Array) -> jax.Array:
  """Mean over the spatial axes: ``(batch, *spatial, C) -> (batch, C)``."""
  if x.ndim < 3:
    raise ValueError(f"global_avg_pool: expected (batch, *spatial, channels), got shape {x.shape}")
  return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))


def global_max_pool(x: jax.Array) -> jax.Array:
  """Max over the spatial axes: ``(batch, *spatial, C) -> (batch, C)``."""
  if x.ndim < 3:
    raise ValueError(f"global_max_pool: expected (batch, *spatial, channels), got shape {x.shape}")
  return jnp.max(x, axis=tuple(range(1, x.ndim - 1)))


def _adaptive_matrix(size_in: int, size_out: int) -> np.ndarray:
  """Row i averages input cells [floor(i*n/m), ceil((i+1)*n/m)) (PyTorch's rule)."""
  m = np.zeros((size_out, size_in), np.float32)
  for i in range(size_out):
    start = (i * size_in) // size_out
    end = -((-(i + 1) * size_in) // size_out)
    m[i, start:end] = 1.0 / (end - start)
  return m


def adaptive_avg_pool(x: jax.Array, output_size: int | Sequence[int]) -> jax.Array:
  """PyTorch's ``AdaptiveAvgPool``: average-pools each spatial axis to ``output_size``.

  Output cell ``i`` of an axis of length ``n`` pooled to ``m`` averages input
  cells ``floor(i*n/m) .. ceil((i+1)*n/m) - 1``; when ``n < m`` cells repeat
  (a 1×1 map pooled to 7×7 is copied 49 times, as in torchvision's VGG on small
  images).

  Args:
    x: ``(batch, *spatial, channels)`` with non-empty spatial axes.
    output_size: int or one int per spatial axis.
  """
  n = x.ndim - 2
  if n < 1:
    raise ValueError(f"adaptive_avg_pool: expected (batch, *spatial, channels), got shape {x.shape}")
  sizes = _tuple(output_size, n, "adaptive_avg_pool: output_size")
  if any(s < 1 for s in sizes) or any(d < 1 for d in x.shape[1:-1]):
    raise ValueError(
        f"adaptive_avg_pool: sizes must be positive, got output_size={sizes} for input shape {x.shape}")
  for axis, size_out in enumerate(sizes, start=1):
    size_in = x.shape[axis]
    if size_in == size_out:
      continue
    m = jnp.asarray(_adaptive_matrix(size_in, size_out), x.dtype)
    x = jnp.moveaxis(jnp.tensordot(x, m, axes=((axis,), (1,))), -1, axis)
  return x
