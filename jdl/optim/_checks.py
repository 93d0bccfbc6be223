"""Argument checks of optimizers and schedules, made when they are built (before any tracing)."""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import optax


Factory = Callable[..., optax.GradientTransformation]


ScheduleFactory = Callable[..., optax.Schedule]


SearchSpace = dict[str, dict[str, Any]]


_DISTRIBUTIONS = ("log_uniform", "uniform", "one_minus_log_uniform", "choice")


def _is_real(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_traced(value: Any) -> bool:
  """Whether ``value`` is an abstract array (under ``jit``/``vmap``), whose value cannot be checked.

  Hyperparameters may be traced: trials that differ only in them then share
  one compiled program (``jdl.bench``'s vmapped runs). They are checked when
  they are concrete, here or where they were drawn.
  """
  return isinstance(value, jax.core.Tracer)


def _scalar(value: Any) -> Any:
  """A concrete 0-d array becomes its Python number (so it is checked); others pass unchanged."""
  if isinstance(value, (jax.Array, np.ndarray, np.generic)) and not _is_traced(value) and np.ndim(value) == 0:
    item = np.asarray(value).item()
    return item if not isinstance(item, bool) else value
  return value


def _nonzero(value: Any) -> bool:
  """``value != 0`` for a concrete number; a traced value counts as non-zero (its term is kept)."""
  return True if _is_traced(value) else bool(value)


def _check_real(
    where: str,
    arg: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
  """Checks that ``value`` is a finite real number in the given interval (a traced array passes)."""
  value = _scalar(value)
  if _is_traced(value):
    return value
  if not _is_real(value):
    raise TypeError(f"{where}: {arg} must be a real number, got {value!r} ({type(value).__name__})")
  value = float(value)
  lo = "-inf" if low is None else f"{low:g}"
  hi = "inf" if high is None else f"{high:g}"
  interval = f"{'(' if low is None or low_open else '['}{lo}, {hi}{')' if high is None or high_open else ']'}"
  bad = not math.isfinite(value)
  if low is not None:
    bad |= value <= low if low_open else value < low
  if high is not None:
    bad |= value >= high if high_open else value > high
  if bad:
    raise ValueError(f"{where}: {arg} must be in {interval}, got {value!r}")
  return value


def _check_unit(where: str, arg: str, value: Any) -> float:
  """A decay rate: ``0 <= value < 1``."""
  return _check_real(where, arg, value, low=0.0, high=1.0, high_open=True)


def _check_nonneg(where: str, arg: str, value: Any) -> float:
  return _check_real(where, arg, value, low=0.0)


def _check_int(where: str, arg: str, value: Any, *, low: int) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(f"{where}: {arg} must be an integer, got {value!r} ({type(value).__name__})")
  if value < low:
    raise ValueError(f"{where}: {arg} must be >= {low}, got {value!r}")
  return int(value)


def _check_learning_rate(where: str, learning_rate: Any) -> float | optax.Schedule:
  learning_rate = _scalar(learning_rate)
  if callable(learning_rate) or _is_traced(learning_rate):
    return learning_rate
  if not _is_real(learning_rate):
    raise TypeError(
        f"{where}: learning_rate must be a real number >= 0 or an optax schedule, got "
        f"{learning_rate!r} ({type(learning_rate).__name__})")
  return _check_nonneg(where, "learning_rate", learning_rate)


def _bind(where: str, fn: Callable[..., Any], args: Mapping[str, Any]) -> None:
  """Checks that ``fn`` accepts ``args``; names the accepted arguments otherwise."""
  sig = inspect.signature(fn)
  try:
    sig.bind(**args)
  except TypeError as e:
    accepted = [
        p.name for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    raise TypeError(f"{where}: {e}; accepted arguments: {', '.join(accepted)}") from None


def _unknown(kind: str, name: Any, known: Mapping[str, Any]) -> ValueError:
  return ValueError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(known))}")
