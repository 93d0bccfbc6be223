"""jdl: a JAX deep-learning research framework.

Pure Flax linen modules and Optax chains, composed into train steps compiled once
with ``jax.jit``. Submodules are imported lazily so that ``import jdl`` (and the
``jdl`` command) start fast; ``jdl.models``, ``jdl.losses`` and the rest load on
first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "attacks",
    "bench",
    "checkpoint",
    "cli",
    "config",
    "data",
    "ensemble",
    "losses",
    "metrics",
    "models",
    "nn",
    "optim",
    "quantize",
    "regularizers",
    "registry",
    "train",
    "tune",
    "visualize",
)


def __getattr__(name: str) -> Any:
  if name in _SUBMODULES:
    return importlib.import_module(f"jdl.{name}")
  raise AttributeError(f"module 'jdl' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted([*globals(), *_SUBMODULES])
