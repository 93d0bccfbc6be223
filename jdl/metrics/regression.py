"""Regression metrics: MAE, MSE, RMSE, R²."""

from __future__ import annotations

from typing import Any, Self

import jax
import jax.numpy as jnp
from flax import struct

from jdl.metrics._base import Metric, _check_int, _fold, _valid, _warn_if


def _regression_batch(self: Any, outputs: Any, labels: Any, mask: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Predictions and targets as float32 ``[B]`` or ``[B, D]``, and the float validity ``[B]``."""
  fn = f"{type(self).__name__}.update"
  preds = jnp.asarray(outputs, jnp.float32)
  targets = jnp.asarray(labels, jnp.float32)
  if self.num_outputs is None:
    if preds.ndim == 2 and preds.shape[1] == 1:
      preds = preds[:, 0]
    if targets.ndim == 2 and targets.shape[1] == 1:
      targets = targets[:, 0]
    expected = "[B] (or [B, 1])"
    ok = preds.ndim == 1
  else:
    expected = f"[B, num_outputs={self.num_outputs}]"
    ok = preds.ndim == 2 and preds.shape[1] == self.num_outputs
  if not ok or targets.shape != preds.shape:
    raise ValueError(f"{fn}: outputs and labels must both be {expected}; got outputs {preds.shape} and "
                     f"labels {targets.shape}")
  valid = _valid(mask, preds.shape[0], fn).astype(jnp.float32)
  return preds, targets, valid if preds.ndim == 1 else valid[:, None]


@struct.dataclass
class _ErrorSums(Metric):
  """Sums of absolute and squared errors per output, and the example count."""

  sum_abs: jax.Array
  sum_sq: jax.Array
  count: jax.Array
  num_outputs: int | None = struct.field(pytree_node=False)

  @classmethod
  def empty(cls, *, num_outputs: int | None = None) -> Self:
    if num_outputs is not None:
      num_outputs = _check_int(num_outputs, "num_outputs", cls.__name__)
    shape = () if num_outputs is None else (num_outputs,)
    return cls(sum_abs=jnp.zeros(shape, jnp.float32), sum_sq=jnp.zeros(shape, jnp.float32),
               count=jnp.zeros((), jnp.float32), num_outputs=num_outputs)

  def update(self, outputs: Any, labels: Any, mask: Any = None) -> Self:
    preds, targets, valid = _regression_batch(self, outputs, labels, mask)
    errors = preds - targets
    return self.replace(sum_abs=self.sum_abs + jnp.sum(valid * jnp.abs(errors), axis=0),
                        sum_sq=self.sum_sq + jnp.sum(valid * jnp.square(errors), axis=0),
                        count=self.count + jnp.sum(valid[..., 0] if valid.ndim == 2 else valid))

  def _mean(self, sums: jax.Array) -> jax.Array:
    _warn_if(self.count == 0, f"{type(self).__name__}: no examples; the value is NaN")
    return jnp.where(self.count > 0, sums / jnp.maximum(self.count, 1), jnp.nan)


@struct.dataclass
class MeanAbsoluteError(_ErrorSums):
  r"""MAE :math:`\frac1n\sum|\hat y - y|` (averaged uniformly over outputs, as scikit-learn).

  Example:
    >>> MeanAbsoluteError.empty().update(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])).compute()
    Array(1.5, dtype=float32)
  """

  def compute(self) -> jax.Array:
    return jnp.mean(self._mean(self.sum_abs))


@struct.dataclass
class MeanSquaredError(_ErrorSums):
  r"""MSE :math:`\frac1n\sum(\hat y - y)^2` (averaged uniformly over outputs).

  Example:
    >>> MeanSquaredError.empty().update(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])).compute()
    Array(2.5, dtype=float32)
  """

  def compute(self) -> jax.Array:
    return jnp.mean(self._mean(self.sum_sq))


@struct.dataclass
class RootMeanSquaredError(_ErrorSums):
  r"""RMSE :math:`\sqrt{\mathrm{MSE}}` of the whole data (per output, then averaged, as scikit-learn).

  Not the mean of per-batch or per-example RMSEs.

  Example:
    >>> RootMeanSquaredError.empty().update(jnp.array([3.0, 4.0]), jnp.array([0.0, 0.0])).compute()
    Array(3.535534, dtype=float32)
  """

  def compute(self) -> jax.Array:
    return jnp.mean(jnp.sqrt(self._mean(self.sum_sq)))


@struct.dataclass
class R2Score(Metric):
  r"""Coefficient of determination :math:`R^2 = 1 - SS_{res} / SS_{tot}`.

  Streams :math:`SS_{tot}` as count, mean and sum of squared deviations
  (Chan et al.'s parallel update — no :math:`\sum y^2 - n\bar y^2`
  cancellation), so merging is not a plain sum. Constant targets give 1 for a
  perfect fit and 0 otherwise (scikit-learn's ``force_finite``); multiple
  outputs are averaged uniformly.

  Example:
    >>> R2Score.empty().update(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 2.0, 4.0])).compute()
    Array(0.78571427, dtype=float32)
  """

  count: jax.Array
  mean: jax.Array
  m2: jax.Array
  sum_sq: jax.Array
  num_outputs: int | None = struct.field(pytree_node=False)

  @classmethod
  def empty(cls, *, num_outputs: int | None = None) -> R2Score:
    if num_outputs is not None:
      num_outputs = _check_int(num_outputs, "num_outputs", "R2Score")
    shape = () if num_outputs is None else (num_outputs,)
    zeros = jnp.zeros(shape, jnp.float32)
    return cls(count=jnp.zeros((), jnp.float32), mean=zeros, m2=zeros, sum_sq=zeros, num_outputs=num_outputs)

  def update(self, outputs: Any, labels: Any, mask: Any = None) -> R2Score:
    preds, targets, valid = _regression_batch(self, outputs, labels, mask)
    n = jnp.sum(valid[..., 0] if valid.ndim == 2 else valid)
    mean = jnp.sum(valid * targets, axis=0) / jnp.maximum(n, 1)
    m2 = jnp.sum(valid * jnp.square(targets - mean[None]), axis=0)
    batch = self.replace(count=n, mean=mean, m2=m2,
                         sum_sq=jnp.sum(valid * jnp.square(preds - targets), axis=0))
    return self.merge(batch)

  def merge(self, other: R2Score) -> R2Score:
    self._check_mergeable(other)
    n = self.count + other.count
    delta = other.mean - self.mean
    share = jnp.where(n > 0, other.count / jnp.maximum(n, 1), 0.0)
    return self.replace(count=n, mean=self.mean + delta * share,
                        m2=self.m2 + other.m2 + jnp.square(delta) * self.count * share,
                        sum_sq=self.sum_sq + other.sum_sq)

  def merge_stacked(self) -> R2Score:
    return _fold(self)

  def merge_across(self, axis_name: Any) -> R2Score:
    return self._gather_and_fold(axis_name)

  def compute(self) -> jax.Array:
    _warn_if(self.count == 0, "R2Score: no examples; the value is NaN")
    r2 = jnp.where(self.m2 > 0, 1 - self.sum_sq / jnp.where(self.m2 > 0, self.m2, 1),
                   jnp.where(self.sum_sq == 0, 1.0, 0.0))
    return jnp.where(self.count > 0, jnp.mean(r2), jnp.nan)
