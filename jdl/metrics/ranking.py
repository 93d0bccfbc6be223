"""Ranking and curve metrics, exact over a buffer: AUROC, average precision, mAP, precision and recall at k."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jdl.metrics._base import Metric, _check_int, _safe_div, _valid, _warn_if
from jdl.metrics.oneshot import precision_recall_curve, roc_curve


def _threshold_counts(scores_N: jax.Array, labels_N: jax.Array, weights_N: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
  """Cumulative weighted true/false positives, as step sequences over decreasing scores.

  After sorting by decreasing score, entry i holds the counts at the threshold
  of the last *complete* group of tied scores at or before i: tied scores form
  one ROC/PR point, so inside a group the counts stay at the previous
  threshold's and jump at the group's last entry. Consecutive equal entries
  thus add nothing to trapezoid or step sums. (Static shapes, no scatter.)
  """
  neg_scores, labels, weights = jax.lax.sort((-scores_N, labels_N, weights_N), num_keys=1, is_stable=True)
  last_of_group = jnp.concatenate([neg_scores[1:] != neg_scores[:-1], jnp.ones((1,), bool)])
  tps = jnp.cumsum(weights * labels)
  fps = jnp.cumsum(weights * (1 - labels))
  # counts only grow, so a running max of the group-end values carries the last threshold forward
  return (jax.lax.cummax(jnp.where(last_of_group, tps, 0.0)),
          jax.lax.cummax(jnp.where(last_of_group, fps, 0.0)))


def _binary_auroc(scores_N: jax.Array, labels_N: jax.Array, weights_N: jax.Array) -> jax.Array:
  """Area under the ROC curve (trapezoids between distinct thresholds); NaN if one class."""
  tps, fps = _threshold_counts(scores_N, labels_N, weights_N)
  p, n = tps[-1], fps[-1]
  tpr = jnp.concatenate([jnp.zeros((1,)), tps]) / jnp.where(p > 0, p, 1)
  fpr = jnp.concatenate([jnp.zeros((1,)), fps]) / jnp.where(n > 0, n, 1)
  area = jnp.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2)
  return jnp.where((p > 0) & (n > 0), area, jnp.nan)


def _binary_average_precision(scores_N: jax.Array, labels_N: jax.Array, weights_N: jax.Array) -> jax.Array:
  r"""``AP = Σ_t (R_t - R_{t-1}) P_t`` over distinct thresholds; 0 with no positives (scikit-learn)."""
  tps, fps = _threshold_counts(scores_N, labels_N, weights_N)
  p = tps[-1]
  new_positives = tps - jnp.concatenate([jnp.zeros((1,)), tps[:-1]])
  precision = _safe_div(tps, tps + fps)
  return jnp.where(p > 0, jnp.sum(new_positives * precision) / jnp.where(p > 0, p, 1), 0.0)


@struct.dataclass
class _ScoreBuffer(Metric):
  """A fixed-capacity buffer of (score, label) pairs for exact curve metrics.

  Binary (``num_labels=None``): outputs ``[B]``/``[B, 1]`` scores (logits or
  probabilities — any monotone score), labels {0, 1}. Multi-label
  (``num_labels=L``): outputs ``[B, L]``, labels multi-hot ``[B, L]`` or, for
  one-vs-rest multi-class, integer ids ``[B]``; ``average="macro"`` means over
  the L labels, ``None`` gives ``[L]``.
  """

  scores: jax.Array
  labels: jax.Array
  valid: jax.Array
  count: jax.Array
  dropped: jax.Array
  capacity: int = struct.field(pytree_node=False)
  num_labels: int | None = struct.field(pytree_node=False)
  average: str | None = struct.field(pytree_node=False)

  @classmethod
  def empty(cls, *, capacity: int, num_labels: int | None = None, average: str | None = "macro") -> Self:
    name = cls.__name__
    capacity = _check_int(capacity, "capacity", name)
    if num_labels is not None:
      num_labels = _check_int(num_labels, "num_labels", name)
    if average not in (None, "macro"):
      raise ValueError(f"{name}: average must be 'macro' or None, got {average!r}")
    shape = (capacity,) if num_labels is None else (capacity, num_labels)
    return cls(scores=jnp.zeros(shape, jnp.float32), labels=jnp.zeros(shape, jnp.float32),
               valid=jnp.zeros((capacity,), bool), count=jnp.zeros((), jnp.int32),
               dropped=jnp.zeros((), jnp.int32), capacity=capacity, num_labels=num_labels, average=average)

  def update(self, outputs: Any, labels: Any, mask: Any = None) -> Self:
    fn = f"{type(self).__name__}.update"
    scores = jnp.asarray(outputs)
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(scores.dtype, jnp.floating):
      raise TypeError(f"{fn}: outputs must be float scores, got dtype {scores.dtype}")
    if self.num_labels is None:
      if scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
      if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
      if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(
            f"{fn}: binary outputs and labels must both be [B] (or [B, 1]); got outputs {scores.shape} and "
            f"labels {labels.shape} (for [B, L] scores pass num_labels=L)")
    else:
      if scores.ndim != 2 or scores.shape[1] != self.num_labels:
        raise ValueError(f"{fn}: outputs must be [B, num_labels={self.num_labels}], got {scores.shape}")
      if labels.ndim == 1 and jnp.issubdtype(labels.dtype, jnp.integer):
        labels = jax.nn.one_hot(labels, self.num_labels)
      if labels.shape != scores.shape:
        raise ValueError(
            f"{fn}: labels must be multi-hot [B, {self.num_labels}] or integer ids [B], got {labels.shape}")
    b = scores.shape[0]
    valid = _valid(mask, b, fn)
    position = self.count + jnp.cumsum(valid.astype(jnp.int32)) - 1
    fits = valid & (position < self.capacity)
    index = jnp.where(fits, position, self.capacity)  # out of range -> dropped by the scatter
    return self.replace(
        scores=self.scores.at[index].set(scores.astype(jnp.float32), mode="drop"),
        labels=self.labels.at[index].set((labels > 0).astype(jnp.float32), mode="drop"),
        valid=self.valid.at[index].set(True, mode="drop"),
        count=self.count + jnp.sum(fits, dtype=jnp.int32),
        dropped=self.dropped + jnp.sum(valid & ~fits, dtype=jnp.int32))

  def _check_mergeable(self, other: Any) -> None:
    if (type(other) is not type(self) or other.num_labels != self.num_labels
        or other.average != self.average):
      other_config = other._config() if isinstance(other, Metric) else type(other).__name__
      raise ValueError(f"merge: cannot merge {self._config()} with a different metric or config: {other_config}")

  def _compact(self, scores: jax.Array, labels: jax.Array, valid: jax.Array, count: jax.Array,
               dropped: jax.Array) -> Self:
    order = jnp.argsort(~valid, stable=True)  # valid entries first, in order
    return type(self)(scores=scores[order], labels=labels[order], valid=valid[order], count=count,
                      dropped=dropped, capacity=int(valid.shape[0]), num_labels=self.num_labels,
                      average=self.average)

  def merge(self, other: Self) -> Self:
    """Concatenates the buffers: the capacity of the result is the sum."""
    self._check_mergeable(other)
    return self._compact(jnp.concatenate([self.scores, other.scores]),
                         jnp.concatenate([self.labels, other.labels]),
                         jnp.concatenate([self.valid, other.valid]),
                         self.count + other.count, self.dropped + other.dropped)

  def merge_stacked(self) -> Self:
    def flat(x: jax.Array) -> jax.Array:
      return x.reshape((-1,) + x.shape[2:])
    return self._compact(flat(self.scores), flat(self.labels), flat(self.valid), jnp.sum(self.count),
                         jnp.sum(self.dropped))

  def merge_across(self, axis_name: Any) -> Self:
    return self._gather_and_fold(axis_name)

  def _per_label(self, binary_fn: Callable[..., jax.Array]) -> jax.Array:
    weights = self.valid.astype(jnp.float32)
    if self.num_labels is None:
      return binary_fn(self.scores, self.labels, weights)
    values = jax.vmap(binary_fn, in_axes=(1, 1, None))(self.scores, self.labels, weights)
    return values if self.average is None else jnp.mean(values)

  def _check_dropped(self, value: jax.Array) -> jax.Array:
    _warn_if(self.dropped > 0, f"{type(self).__name__}: {self.dropped} examples did not fit the buffer "
             f"(capacity={self.capacity}); the value is NaN. Use a larger capacity.")
    return jnp.where(self.dropped > 0, jnp.nan, value)

  def _host_arrays(self, label: int | None) -> tuple[np.ndarray, np.ndarray]:
    valid = np.asarray(self.valid)
    scores, labels = np.asarray(self.scores)[valid], np.asarray(self.labels)[valid]
    if self.num_labels is not None:
      if label is None:
        raise ValueError(f"{type(self).__name__}: pass label=<index> to pick one of the {self.num_labels} labels")
      scores, labels = scores[:, label], labels[:, label]
    return labels, scores

  def roc_curve(self, label: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` of the buffered data (host-side, see :func:`roc_curve`)."""
    return roc_curve(*self._host_arrays(label))

  def precision_recall_curve(self, label: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)`` of the buffered data (see :func:`precision_recall_curve`)."""
    return precision_recall_curve(*self._host_arrays(label))


@struct.dataclass
class AUROC(_ScoreBuffer):
  r"""Exact area under the ROC curve (ties handled as scikit-learn's ``roc_auc_score``).

  With ``num_labels`` it is the macro average of one-vs-rest AUROCs
  (multi-label, or multi-class with integer labels). NaN — with a
  :class:`MetricWarning` outside a trace — when a label has one class only.

  Example:
    >>> state = AUROC.empty(capacity=8)
    >>> state.update(jnp.array([0.1, 0.4, 0.35, 0.8]), jnp.array([0, 0, 1, 1])).compute()
    Array(0.75, dtype=float32)
  """

  def compute(self) -> jax.Array:
    values = self._per_label(_binary_auroc)
    _warn_if(jnp.isnan(values) & (self.dropped == 0),
             "AUROC: only one class is present in the labels; ROC AUC is undefined (NaN)")
    return self._check_dropped(values)


@struct.dataclass
class AveragePrecision(_ScoreBuffer):
  r"""Exact average precision :math:`\sum_t (R_t - R_{t-1}) P_t` (scikit-learn's).

  With ``num_labels`` and ``average="macro"`` it is the mean average precision
  (mAP) over labels. A label without positives gets AP 0 (as scikit-learn),
  with a :class:`MetricWarning` outside a trace.

  Example:
    >>> state = AveragePrecision.empty(capacity=8)
    >>> state.update(jnp.array([0.1, 0.4, 0.35, 0.8]), jnp.array([0, 0, 1, 1])).compute()
    Array(0.8333334, dtype=float32)
  """

  def compute(self) -> jax.Array:
    per_label_positives = jnp.sum(self.labels * self.valid.reshape((-1,) + (1,) * (self.labels.ndim - 1)), axis=0)
    _warn_if(per_label_positives == 0, "AveragePrecision: a label has no positive example; its AP is 0")
    return self._check_dropped(self._per_label(_binary_average_precision))


@struct.dataclass
class _AtK(Metric):
  total: jax.Array
  count: jax.Array
  k: int = struct.field(pytree_node=False)

  @classmethod
  def empty(cls, *, k: int) -> Self:
    k = _check_int(k, "k", cls.__name__)
    return cls(total=jnp.zeros((), jnp.float32), count=jnp.zeros((), jnp.float32), k=k)

  def _hits(self, outputs: Any, labels: Any, mask: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    fn = f"{type(self).__name__}.update"
    scores = jnp.asarray(outputs)
    labels = jnp.asarray(labels)
    if scores.ndim != 2 or labels.shape != scores.shape:
      raise ValueError(
          f"{fn}: outputs and labels must be [B, L] scores and multi-hot labels of the same shape; got "
          f"outputs {scores.shape} and labels {labels.shape}")
    if self.k > scores.shape[1]:
      raise ValueError(f"{fn}: k={self.k} exceeds the number of labels {scores.shape[1]}")
    relevant = labels > 0
    _, top = jax.lax.top_k(scores, self.k)  # ties: lower index first
    hits = jnp.sum(jnp.take_along_axis(relevant, top, axis=1), axis=1).astype(jnp.float32)
    return hits, jnp.sum(relevant, axis=1).astype(jnp.float32), _valid(mask, scores.shape[0], fn)

  def compute(self) -> jax.Array:
    _warn_if(self.count == 0, f"{type(self).__name__}: no (eligible) examples; the value is NaN")
    return jnp.where(self.count > 0, self.total / jnp.maximum(self.count, 1), jnp.nan)


@struct.dataclass
class PrecisionAtK(_AtK):
  r"""Ranking precision@k: mean over examples of :math:`|\mathrm{top}_k \cap \mathrm{relevant}| / k`.

  Outputs are ``[B, L]`` scores, labels multi-hot ``[B, L]``; ties in the
  top k go to the lower label index (``lax.top_k``).

  Example:
    >>> PrecisionAtK.empty(k=2).update(jnp.array([[0.9, 0.8, 0.1]]), jnp.array([[1, 0, 1]])).compute()
    Array(0.5, dtype=float32)
  """

  def update(self, outputs: Any, labels: Any, mask: Any = None) -> PrecisionAtK:
    hits, _, valid = self._hits(outputs, labels, mask)
    return self.replace(total=self.total + jnp.sum(jnp.where(valid, hits / self.k, 0.0)),
                        count=self.count + jnp.sum(valid, dtype=jnp.float32))


@struct.dataclass
class RecallAtK(_AtK):
  r"""Ranking recall@k: mean of :math:`|\mathrm{top}_k \cap \mathrm{relevant}| / |\mathrm{relevant}|`.

  Examples with no relevant label are skipped (recall is undefined there).

  Example:
    >>> RecallAtK.empty(k=2).update(jnp.array([[0.9, 0.8, 0.1]]), jnp.array([[1, 0, 1]])).compute()
    Array(0.5, dtype=float32)
  """

  def update(self, outputs: Any, labels: Any, mask: Any = None) -> RecallAtK:
    hits, relevant, valid = self._hits(outputs, labels, mask)
    eligible = valid & (relevant > 0)
    return self.replace(total=self.total + jnp.sum(jnp.where(eligible, hits / jnp.maximum(relevant, 1), 0.0)),
                        count=self.count + jnp.sum(eligible, dtype=jnp.float32))
