"""Per-example losses and their registry.

A loss, as the train step sees it, is ``loss_fn(outputs, batch) -> per-example
array``; the caller reduces it (with the batch's ``mask`` when there is one).
The plain functions (``sparse_categorical_crossentropy(logits, labels)``) are
the building blocks; ``get(name)`` turns a name into the ``(outputs, batch)``
form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

LossFn = Callable[[Any, dict[str, jax.Array]], jax.Array]


def sparse_categorical_crossentropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Softmax cross-entropy against integer labels, one value per example.

  Args:
    logits_BxC: unnormalised scores.
    labels_B: integer class ids.

  Returns:
    per-example loss, shape ``labels.shape``.
  """
  return optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)


_LOSSES: dict[str, LossFn] = {
    "sparse_categorical_crossentropy":
        lambda outputs, batch: sparse_categorical_crossentropy(outputs, batch["label"]),
}


def register(name: str, fn: LossFn) -> LossFn:
  """Registers ``fn(outputs, batch) -> per-example loss`` under ``name``."""
  _LOSSES[name] = fn
  return fn


def get(loss: str | LossFn) -> LossFn:
  """The ``(outputs, batch) -> per-example`` loss for a name, or ``loss`` itself."""
  if callable(loss):
    return loss
  if loss not in _LOSSES:
    raise ValueError(f"get: unknown loss {loss!r}; known losses: {', '.join(sorted(_LOSSES))}")
  return _LOSSES[loss]
