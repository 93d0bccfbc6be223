"""Shared checks and reductions of the losses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


LossFn = Callable[[Any, dict[str, Any]], jax.Array]


"""``loss_fn(outputs, batch) -> per-example loss`` (the registry's form)."""


Regularizer = Callable[[Any], jax.Array]


"""``regularizer(params) -> scalar`` (see :mod:`jdl.regularizers`)."""


_EPSILON = 1e-7


def _is_concrete(x: Any) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _as_float(x: Any, name: str, fn: str) -> jax.Array:
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{fn}: {name} must be a floating-point array, got dtype {x.dtype}")
  return x


def _check_label_smoothing(label_smoothing: float, fn: str) -> None:
  if not 0.0 <= float(label_smoothing) <= 1.0:
    raise ValueError(f"{fn}: label_smoothing must be in [0, 1], got {label_smoothing!r}")


def _squeeze_binary(outputs: jax.Array, labels: jax.Array, fn: str) -> tuple[jax.Array, jax.Array]:
  """Accepts ``[B]`` or ``[B, 1]`` for either; returns both as ``[B]``."""
  if outputs.ndim == 2 and outputs.shape[1] == 1:
    outputs = outputs[:, 0]
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  if outputs.ndim != 1 or outputs.shape != labels.shape:
    raise ValueError(
        f"{fn}: outputs and labels must hold one score/target per example, [B] or [B, 1]; got outputs "
        f"{outputs.shape} and labels {labels.shape} (several labels per example: use "
        f"multilabel_binary_crossentropy)")
  return outputs, labels


def _match_regression(predictions: Any, targets: Any, fn: str) -> tuple[jax.Array, jax.Array]:
  """Shapes must agree; a ``[B, 1]`` head against ``[B]`` targets is squeezed.

  Refusing other shape pairs avoids the silent ``[B, 1] - [B] -> [B, B]``
  broadcast.
  """
  predictions = _as_float(predictions, "predictions", fn)
  targets = jnp.asarray(targets, dtype=predictions.dtype)
  if predictions.ndim == targets.ndim + 1 and predictions.shape[-1] == 1:
    predictions = predictions[..., 0]
  if predictions.shape != targets.shape:
    raise ValueError(
        f"{fn}: predictions and targets must have the same shape; got predictions "
        f"{predictions.shape} and targets {targets.shape}")
  return predictions, targets


def _mean_over_features(x: jax.Array) -> jax.Array:
  """Per-example mean over every axis after the first (identity for ``[B]``)."""
  return x if x.ndim <= 1 else jnp.mean(x, axis=tuple(range(1, x.ndim)))


def masked_mean(values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  r"""Mean of per-example values over the real (unpadded) examples.

  .. math:: \bar\ell = \frac{\sum_i m_i \ell_i}{\max(\sum_i m_i, \epsilon)}

  An all-padding batch gives 0 rather than NaN.

  Args:
    values: per-example values, ``[B, ...]``.
    mask: ``[B]`` (or any prefix of ``values.shape``); 1 = real example,
      0 = padding. ``None`` means every example is real.

  Returns:
    a scalar.

  Example:
    >>> float(masked_mean(jnp.array([1.0, 3.0, 100.0]), jnp.array([1, 1, 0])))
    2.0
  """
  values = jnp.asarray(values)
  if mask is None:
    return jnp.mean(values)
  mask = jnp.asarray(mask)
  if mask.shape != values.shape[:mask.ndim]:
    raise ValueError(
        f"masked_mean: mask shape must be a prefix of the values' shape {values.shape}, "
        f"got mask {mask.shape}")
  mask = mask.astype(values.dtype).reshape(mask.shape + (1,) * (values.ndim - mask.ndim))
  weights = jnp.broadcast_to(mask, values.shape)
  total = jnp.sum(weights)
  return jnp.sum(values * weights) / jnp.where(total > 0, total, 1.0)
