"""Hyperparameter search spaces as plain data (``log_uniform``, ``uniform``, ``choice``)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from jdl.optim._checks import SearchSpace, _DISTRIBUTIONS, _is_real


def log_uniform(low: float, high: float) -> dict[str, Any]:
  """A search dimension: ``exp(uniform(log low, log high))``, ``0 < low < high``."""
  return {"distribution": "log_uniform", "low": low, "high": high}


def uniform(low: float, high: float) -> dict[str, Any]:
  """A search dimension: ``uniform(low, high)``."""
  return {"distribution": "uniform", "low": low, "high": high}


def one_minus_log_uniform(low: float, high: float) -> dict[str, Any]:
  """A search dimension for decay rates near 1: ``1 - x`` is log-uniform in ``[1 - high, 1 - low]``."""
  return {"distribution": "one_minus_log_uniform", "low": low, "high": high}


def choice(*values: Any) -> dict[str, Any]:
  """A search dimension: one of ``values``."""
  return {"distribution": "choice", "values": list(values)}


def check_search_space(where: str, space: Any) -> SearchSpace:
  """Checks a search space (``{hyperparameter: dimension}``, see ``log_uniform`` and friends); returns a copy.

  Used by ``register`` and by the benchmark's ``register_optimizer``, so a
  space means the same everywhere: every dimension a known distribution with
  valid bounds, a ``learning_rate`` dimension, log-uniform.

  Raises:
    TypeError: ``space`` is not a dict.
    ValueError: a bad dimension, named with ``where``.
  """
  if not isinstance(space, Mapping):
    raise TypeError(f"{where}: search_space must be a dict, got {type(space).__name__} {space!r}")
  for arg, dim in space.items():
    if not isinstance(dim, Mapping) or dim.get("distribution") not in _DISTRIBUTIONS:
      raise ValueError(
          f"{where}: search_space[{arg!r}] must be a dict with 'distribution' in {_DISTRIBUTIONS}, got {dim!r}")
    kind = dim["distribution"]
    if kind == "choice":
      if not isinstance(dim.get("values"), Sequence) or not dim["values"]:
        raise ValueError(f"{where}: search_space[{arg!r}] needs a non-empty 'values' list, got {dim!r}")
      continue
    low, high = dim.get("low"), dim.get("high")
    if not (_is_real(low) and _is_real(high) and low < high):
      raise ValueError(f"{where}: search_space[{arg!r}] needs real low < high, got {dim!r}")
    if kind == "log_uniform" and low <= 0:
      raise ValueError(f"{where}: search_space[{arg!r}] is log_uniform and needs low > 0, got {dim!r}")
    if kind == "one_minus_log_uniform" and not 0 <= low < high < 1:
      raise ValueError(f"{where}: search_space[{arg!r}] is one_minus_log_uniform and needs 0 <= low < high < 1, "
                       f"got {dim!r}")
  if "learning_rate" not in space:
    raise ValueError(f"{where}: search_space must include 'learning_rate', got keys {sorted(space)}")
  if space["learning_rate"]["distribution"] != "log_uniform":
    raise ValueError(f"{where}: the learning rate's dimension must be log_uniform, got {space['learning_rate']!r}")
  return copy.deepcopy(dict(space))
