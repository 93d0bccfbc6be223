"""Trace-time input checks shared by the zoo (static shapes, clear messages)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def param_shape(module: nn.Module, path: Sequence[str]) -> tuple[int, ...] | None:
  """Shape of ``params[path...]`` in a bound module's variables, or None if absent."""
  node = module.variables.get("params")
  for key in path:
    if node is None or not hasattr(node, "get"):
      return None
    node = node.get(key)
  return None if node is None or hasattr(node, "get") else tuple(node.shape)


def images(model: str, x: jax.Array) -> jax.Array:
  """Checks an image batch: NHWC, or (batch, height, width) taken as one channel."""
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4:
    raise ValueError(
        f"{model}: expected images of shape (batch, height, width, channels) (NHWC), or "
        f"(batch, height, width) for one channel; got an input of shape {tuple(x.shape)}")
  return jnp.asarray(x, jnp.float32)


def channels(model: str, module: nn.Module, x: jax.Array, kernel_path: Sequence[str],
             layout: str = "(batch, height, width, {})") -> None:
  """Checks that ``x``'s last axis matches the first layer's kernel (when params exist).

  Args:
    model: the model's name, for the message.
    module: the bound model.
    x: its input.
    kernel_path: path in ``params`` of the first layer (its ``kernel`` leaf's
      second-to-last axis is the expected input width).
    layout: the expected shape, with ``{}`` for the channel count.
  """
  shape = param_shape(module, (*kernel_path, "kernel"))
  if shape is None:
    return
  expected = shape[-2]
  if x.shape[-1] != expected:
    raise ValueError(
        f"{model}: expected an input of shape {layout.format(expected)} (the parameters "
        f"were built for {expected} input channels/features), got shape {tuple(x.shape)}")


def features(model: str, module: nn.Module, x_flat: jax.Array, kernel_path: Sequence[str],
             input_shape: Sequence[int], what: str, hint: str = "") -> None:
  """Checks a flattened activation's width against the Dense kernel that consumes it.

  Args:
    model: the model's name, for the message.
    module: the bound model.
    x_flat: the ``(batch, n)`` activation about to enter the Dense layer.
    kernel_path: path in ``params`` of that Dense layer.
    input_shape: the model's input shape, for the message.
    what: what the width counts, e.g. ``"input features"``.
    hint: the expected input shape in words, with ``{}`` for the built width.
  """
  shape = param_shape(module, (*kernel_path, "kernel"))
  if shape is None:
    return
  if x_flat.shape[-1] != shape[0]:
    expected = f" ({hint.format(shape[0])})" if hint else ""
    raise ValueError(
        f"{model}: the parameters were built for {shape[0]} {what}{expected}, but an input "
        f"of shape {tuple(input_shape)} gives {x_flat.shape[-1]}")


def min_spatial(model: str, x: jax.Array, minimum: int) -> None:
  """Checks that every spatial axis of an NHWC batch is at least ``minimum``."""
  if any(d < minimum for d in x.shape[1:-1]):
    raise ValueError(
        f"{model}: expected images of at least {minimum}×{minimum} pixels, shape "
        f"(batch, >={minimum}, >={minimum}, channels); got shape {tuple(x.shape)}")
