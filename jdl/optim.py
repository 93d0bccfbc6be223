"""Optimizers by name, as optax ``GradientTransformation`` chains."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

_OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": optax.sgd,
    "adam": optax.adam,
    "rmsprop": optax.rmsprop,
}


def create(name: str, *, learning_rate: float | optax.Schedule, **hyperparams: Any) -> optax.GradientTransformation:
  """Builds the optimizer ``name`` with its hyperparameters."""
  if name not in _OPTIMIZERS:
    raise ValueError(f"create: unknown optimizer {name!r}; known optimizers: {', '.join(sorted(_OPTIMIZERS))}")
  return _OPTIMIZERS[name](learning_rate=learning_rate, **hyperparams)
