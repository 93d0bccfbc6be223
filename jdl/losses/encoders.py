"""Label encoders: one-hot, label smoothing, multi-hot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jdl.losses._helpers import _is_concrete


def _check_num_classes(num_classes: Any, fn: str) -> int:
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
    raise TypeError(f"{fn}: num_classes must be an int, got {type(num_classes).__name__} {num_classes!r}")
  if num_classes < 1:
    raise ValueError(f"{fn}: num_classes must be >= 1, got {num_classes}")
  return int(num_classes)


def one_hot(labels: Any, num_classes: int, *, dtype: Any = jnp.float32) -> jax.Array:
  """Encodes integer class ids as one-hot rows.

  Args:
    labels: integer class ids, shape ``[...]``.
    num_classes: C.
    dtype: the output dtype.

  Returns:
    ``[..., C]`` with a single 1 per row. Concrete labels outside ``[0, C)``
    raise; under ``jit`` they cannot be checked and encode as all-zero rows.

  Raises:
    ValueError: bad ``num_classes`` or (concrete) out-of-range labels.

  Example:
    >>> one_hot(jnp.array([2, 0]), 3)
    Array([[0., 0., 1.],
           [1., 0., 0.]], dtype=float32)
  """
  num_classes = _check_num_classes(num_classes, "one_hot")
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"one_hot: labels must be integer class ids, got dtype {labels.dtype}")
  if _is_concrete(labels) and labels.size:
    lo, hi = int(np.min(np.asarray(labels))), int(np.max(np.asarray(labels)))
    if lo < 0 or hi >= num_classes:
      raise ValueError(
          f"one_hot: labels must lie in [0, num_classes={num_classes}), got values in [{lo}, {hi}]")
  return jax.nn.one_hot(labels, num_classes, dtype=dtype)


def multi_hot(labels: Any, num_classes: int, *, dtype: Any = jnp.float32) -> jax.Array:
  """Encodes sets of class ids (multi-label targets) as multi-hot rows.

  Args:
    labels: either a padded integer array ``[B, K]`` whose entries ``-1`` are
      padding, or a Python sequence of ``B`` sequences of class ids (ragged;
      padded here). Repeated ids count once.
    num_classes: C.
    dtype: the output dtype.

  Returns:
    ``[B, C]`` with a 1 at every listed class.

  Raises:
    ValueError: bad ``num_classes`` or (concrete) ids outside ``[-1, C)``.

  Example:
    >>> multi_hot([[0, 2], [], [1, 1]], 3)
    Array([[1., 0., 1.],
           [0., 0., 0.],
           [0., 1., 0.]], dtype=float32)
  """
  num_classes = _check_num_classes(num_classes, "multi_hot")
  if isinstance(labels, Sequence) and not isinstance(labels, (str, bytes)):
    rows = [list(row) for row in labels]
    width = max([len(row) for row in rows] + [1])
    padded = np.full((len(rows), width), -1, dtype=np.int32)
    for i, row in enumerate(rows):
      padded[i, :len(row)] = row
    labels = padded
  labels = jnp.asarray(labels)
  if labels.ndim != 2 or not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(
        f"multi_hot: labels must be a padded integer array [B, K] (-1 = padding) or a list "
        f"of lists of ints; got shape {labels.shape} dtype {labels.dtype}")
  if _is_concrete(labels) and labels.size:
    lo, hi = int(np.min(np.asarray(labels))), int(np.max(np.asarray(labels)))
    if lo < -1 or hi >= num_classes:
      raise ValueError(
          f"multi_hot: class ids must lie in [0, num_classes={num_classes}) (-1 = padding), "
          f"got values in [{lo}, {hi}]")
  # one_hot(-1) is an all-zero row, so padding drops out of the max.
  return jnp.max(jax.nn.one_hot(labels, num_classes, dtype=dtype), axis=-2, initial=0)
