"""Evaluation metrics: functional, mergeable states and scikit-learn-style one-shots.

**Metric states.** Each metric is an immutable pytree (a ``flax.struct``
dataclass; its configuration — ``num_classes``, ``k``, ``capacity`` ... — is
static, its statistics are arrays) with four methods:

* ``Metric.empty(**config)`` — the state before any data (also via
  ``get(name, **config)``);
* ``state.update(outputs, labels, mask=None)`` — pure, returns a new state;
  works inside ``jax.jit`` and ``lax.scan`` (fixed shapes and dtypes);
  ``mask`` is ``[B]`` with 0 marking padded examples, which are ignored;
* ``state.merge(other)`` — combines states of disjoint data (batches, hosts);
  ``state.merge_across(axis_name)`` does it across the devices of a
  ``shard_map``/``pmap`` axis (``psum``, or ``all_gather`` where a sum does not
  merge); ``merge_stacked`` folds a leading device axis;
* ``state.compute()`` — the value (jit-able; NaN when undefined, with a
  :class:`MetricWarning` when called outside a trace).

So for any split of a dataset into batches (of any sizes, padded or not) and
devices, updating and merging gives the value of the one-shot computation on
the whole dataset.

``outputs`` are what the model returns: ``[B, C]`` scores/logits (argmax for
class metrics), ``[B]``/``[B, 1]`` binary scores (class 1 when ``> threshold``,
default 0.0 for logits), or integer class ids. ``labels`` are integer ids or
one-hot rows (multi-hot for multi-label metrics).

**Curve metrics** (AUROC, PR curve, average precision, mAP) are exact: their
state is a preallocated buffer of ``capacity`` examples (scores, labels,
validity) that ``update`` fills in order; ``compute`` sorts it. Choose
``capacity >=`` the number of examples evaluated (e.g. the test-set size); past
it examples are counted in ``dropped`` and ``compute`` returns NaN (warning)
instead of a silently partial value. Merging concatenates buffers. Thresholds
/ bins (approximate, constant memory) are not implemented.

**One-shot functions** take ``(y_true, y_pred_or_scores)`` in scikit-learn's
order, compute exactly on the host in float64 NumPy (the jit-able states use
float32) and return Python floats / NumPy arrays: :func:`confusion_matrix`,
:func:`precision_recall_f1`, :func:`roc_auc`, :func:`roc_curve`,
:func:`average_precision`, :func:`precision_recall_curve`,
:func:`top_k_accuracy`, :func:`accuracy`, :func:`mean_absolute_error`,
:func:`mean_squared_error`, :func:`root_mean_squared_error`,
:func:`r2_score`, :func:`classification_report`, :func:`plot_confusion_matrix`.

Example:

  >>> import jax, jax.numpy as jnp
  >>> import jdl.metrics as M
  >>> metrics = M.collection(["accuracy", "f1"], num_classes=3, average="macro")
  >>> sorted(metrics)
  ['accuracy', 'f1_macro']
  >>> logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
  >>> metrics = jax.jit(M.update_all)(metrics, logits, jnp.array([0, 2, 2]), jnp.array([1, 1, 0]))
  >>> M.compute_all(metrics)
  {'accuracy': 0.5, 'f1_macro': 0.3333333432674408}
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jdl.registry import Registry

__all__ = [
    "AUROC", "Accuracy", "AveragePrecision", "ConfusionMatrix", "F1", "MeanAbsoluteError", "MeanSquaredError",
    "Metric", "MetricSpec", "MetricWarning", "Precision", "PrecisionAtK", "PrecisionRecallF1", "R2Score",
    "Recall", "RecallAtK", "RootMeanSquaredError", "TopKAccuracy", "accuracy", "average_precision",
    "classification_report", "collection", "compute_all", "confusion_matrix", "get", "list_metrics",
    "mean_absolute_error", "mean_squared_error", "merge_across", "merge_stacked", "parse_spec", "parse_specs",
    "plot_confusion_matrix", "precision_recall_curve", "precision_recall_f1", "r2_score", "register", "roc_auc",
    "roc_curve", "root_mean_squared_error", "top_k_accuracy", "update_all",
]

AVERAGES = (None, "macro", "micro", "weighted", "binary")


class MetricWarning(UserWarning):
  """A metric is undefined on the data seen (e.g. AUROC with one class) or lost data."""


# --------------------------------------------------------------------------- #
# Helpers.
# --------------------------------------------------------------------------- #


def _is_concrete(x: Any) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _warn_if(condition: Any, message: str) -> None:
  """Warns when ``condition`` is concretely true (silent under tracing)."""
  if _is_concrete(condition) and bool(np.any(np.asarray(condition))):
    warnings.warn(message, MetricWarning, stacklevel=3)


def _check_int(value: Any, name: str, fn: str, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{fn}: {name} must be an int, got {type(value).__name__} {value!r}")
  if value < minimum:
    raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value}")
  return int(value)


def _check_average(average: Any, fn: str, num_classes: int | None = None) -> None:
  if average not in AVERAGES:
    raise ValueError(f"{fn}: average must be one of {AVERAGES}, got {average!r}")
  if average == "binary" and num_classes is not None and num_classes != 2:
    raise ValueError(f"{fn}: average='binary' needs num_classes=2, got num_classes={num_classes}")


def _valid(mask: Any, batch_size: int, fn: str) -> jax.Array:
  """The ``[B]`` bool validity of a batch (True = real example)."""
  if mask is None:
    return jnp.ones((batch_size,), bool)
  mask = jnp.asarray(mask)
  if mask.shape != (batch_size,):
    raise ValueError(f"{fn}: mask must have shape ({batch_size},) (one entry per example), got {mask.shape}")
  return mask.astype(bool)


def _safe_div(num: Any, den: Any, xp: Any = jnp) -> Any:
  """``num / den``, 0 where ``den == 0`` (zero_division=0); ``xp`` is jnp or np."""
  return xp.where(den != 0, num / xp.where(den != 0, den, 1), 0.0)


def _class_predictions(outputs: Any, threshold: float, fn: str, num_classes: int | None = None) -> jax.Array:
  """Class ids ``[B]`` from ``[B, C]`` scores, ``[B]``/``[B, 1]`` binary scores or ids."""
  outputs = jnp.asarray(outputs)
  if outputs.ndim == 0:
    raise ValueError(f"{fn}: outputs must have a batch axis, got a scalar")
  if jnp.issubdtype(outputs.dtype, jnp.integer) or outputs.dtype == bool:
    if outputs.ndim != 1:
      raise ValueError(f"{fn}: integer outputs must be class ids of shape [B], got {outputs.shape}")
    return outputs.astype(jnp.int32)
  if outputs.ndim == 2 and outputs.shape[1] > 1:
    if num_classes is not None and outputs.shape[1] != num_classes:
      raise ValueError(
          f"{fn}: outputs have {outputs.shape[1]} classes (shape {outputs.shape}) but num_classes={num_classes}")
    return jnp.argmax(outputs, axis=-1).astype(jnp.int32)
  if outputs.ndim == 2:
    outputs = outputs[:, 0]
  if outputs.ndim != 1:
    raise ValueError(f"{fn}: outputs must be [B, C] scores, [B] or [B, 1] binary scores, got shape {outputs.shape}")
  if num_classes is not None and num_classes != 2:
    raise ValueError(f"{fn}: binary outputs of shape {outputs.shape} need num_classes=2, got num_classes={num_classes}")
  return (outputs > threshold).astype(jnp.int32)


def _class_labels(labels: Any, batch_size: int, fn: str) -> jax.Array:
  """Integer ids ``[B]`` from ids ``[B]``/``[B, 1]`` or one-hot ``[B, C]``."""
  labels = jnp.asarray(labels)
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  if labels.ndim == 2:
    labels = jnp.argmax(labels, axis=-1)
  if labels.shape != (batch_size,):
    raise ValueError(
        f"{fn}: labels must be class ids [B] or one-hot rows [B, C] with B={batch_size}, got shape {labels.shape}")
  return labels.astype(jnp.int32)


class Metric:
  """The protocol every metric state follows (see the module docstring).

  Subclasses are ``flax.struct`` dataclasses whose array fields are sums
  unless they override ``merge``/``merge_stacked``/``merge_across``.
  """

  @classmethod
  def empty(cls, **config: Any) -> Self:
    """The state before any data; ``config`` is the metric's static configuration."""
    raise NotImplementedError

  def update(self, outputs: Any, labels: Any, mask: Any = None) -> Self:
    """A new state that also counts this batch (``mask`` ``[B]``: 0 = padding, ignored)."""
    raise NotImplementedError

  def compute(self) -> Any:
    """The metric's value (an array, or a dict of arrays)."""
    raise NotImplementedError

  def _config(self) -> str:
    static = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
              if not f.metadata.get("pytree_node", True)]
    return f"{type(self).__name__}({', '.join(static)})"

  def _check_mergeable(self, other: Any) -> None:
    if type(other) is not type(self) or jax.tree.structure(other) != jax.tree.structure(self):
      other_config = other._config() if isinstance(other, Metric) else type(other).__name__
      raise ValueError(f"merge: cannot merge {self._config()} with a different metric or config: {other_config}")

  def merge(self, other: Self) -> Self:
    """The state of the union of both states' data."""
    self._check_mergeable(other)
    return jax.tree.map(jnp.add, self, other)

  def merge_stacked(self) -> Self:
    """Merges a state whose arrays carry a leading axis of per-device states."""
    return jax.tree.map(lambda x: jnp.sum(x, axis=0), self)

  def merge_across(self, axis_name: Any) -> Self:
    """Merges the per-device states of a ``shard_map``/``pmap`` axis (same result on every device)."""
    return jax.tree.map(lambda x: jax.lax.psum(x, axis_name), self)

  def _gather_and_fold(self, axis_name: Any) -> Self:
    return jax.lax.all_gather(self, axis_name, to="invarying").merge_stacked()


def _fold(stacked: Metric) -> Metric:
  n = jax.tree.leaves(stacked)[0].shape[0]
  parts = [jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(n)]
  result = parts[0]
  for part in parts[1:]:
    result = result.merge(part)
  return result


def _is_metric(x: Any) -> bool:
  return isinstance(x, Metric)


def merge_across(states: Any, axis_name: Any) -> Any:
  """``merge_across`` on every metric state in a pytree (e.g. a dict of states).

  Call it inside ``jax.shard_map`` / ``jax.pmap`` over the data axis after the
  per-device ``update``; every device then holds the global state.

  Example:
    >>> from jax.sharding import PartitionSpec as P
    >>> mesh = jax.make_mesh((jax.device_count(),), ("data",))
    >>> @jax.jit
    ... @jax.shard_map(mesh=mesh, in_specs=(P("data"), P("data")), out_specs=P())
    ... def evaluate(logits, labels):
    ...   return merge_across({"acc": Accuracy.empty().update(logits, labels)}, "data")
  """
  return jax.tree.map(lambda s: s.merge_across(axis_name), states, is_leaf=_is_metric)


def merge_stacked(states: Any) -> Any:
  """``merge_stacked`` on every metric state in a pytree (e.g. ``pmap`` outputs)."""
  return jax.tree.map(lambda s: s.merge_stacked(), states, is_leaf=_is_metric)


def update_all(states: Mapping[str, Metric], outputs: Any, labels: Any, mask: Any = None) -> dict[str, Metric]:
  """Updates every state of a dict with the same batch."""
  return {name: state.update(outputs, labels, mask) for name, state in states.items()}


# --------------------------------------------------------------------------- #
# Classification.
# --------------------------------------------------------------------------- #


@struct.dataclass
class Accuracy(Metric):
  """Fraction of (unmasked) examples whose predicted class is the label.

  Attributes:
    correct: int32 count of correct predictions.
    count: int32 count of examples.
    threshold: binary outputs ``[B]`` predict class 1 when ``> threshold``
      (0.0 for logits, 0.5 for probabilities).

  Example:
    >>> Accuracy.empty().update(jnp.array([[1.0, 0.0], [1.0, 0.0]]), jnp.array([0, 1])).compute()
    Array(0.5, dtype=float32)
  """

  correct: jax.Array
  count: jax.Array
  threshold: float = struct.field(pytree_node=False, default=0.0)

  @classmethod
  def empty(cls, *, threshold: float = 0.0) -> Accuracy:
    return cls(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), threshold=float(threshold))

  def update(self, outputs: Any, labels: Any, mask: Any = None) -> Accuracy:
    preds = _class_predictions(outputs, self.threshold, "Accuracy.update")
    labels = _class_labels(labels, preds.shape[0], "Accuracy.update")
    valid = _valid(mask, preds.shape[0], "Accuracy.update")
    return self.replace(correct=self.correct + jnp.sum((preds == labels) & valid, dtype=jnp.int32),
                        count=self.count + jnp.sum(valid, dtype=jnp.int32))

  def compute(self) -> jax.Array:
    _warn_if(self.count == 0, "Accuracy: no examples; the value is NaN")
    return jnp.where(self.count > 0, self.correct / jnp.maximum(self.count, 1), jnp.nan).astype(jnp.float32)


def _top_k_hits(scores: Any, labels: Any, k: int, xp: Any) -> Any:
  """Whether each label ranks among the k best scores; ties: higher class index first (scikit-learn)."""
  num_classes = scores.shape[1]
  label_score = xp.take_along_axis(scores, xp.clip(labels, 0, num_classes - 1)[:, None], axis=1)
  classes = xp.arange(num_classes)[None, :]
  ahead = xp.sum((scores > label_score) | ((scores == label_score) & (classes > labels[:, None])), axis=1)
  return (ahead < k) & (labels >= 0) & (labels < num_classes)


@struct.dataclass
class TopKAccuracy(Metric):
  """Fraction of examples whose label is among the k highest scores.

  Ties are broken as scikit-learn's ``top_k_accuracy_score`` does: among equal
  scores the higher class index ranks first.

  Attributes:
    correct: int32 count of hits.
    count: int32 count of examples.
    k: how many top classes count.

  Example:
    >>> scores = jnp.array([[0.1, 0.5, 0.4], [0.8, 0.15, 0.05]])
    >>> TopKAccuracy.empty(k=2).update(scores, jnp.array([2, 2])).compute()
    Array(0.5, dtype=float32)
  """

  correct: jax.Array
  count: jax.Array
  k: int = struct.field(pytree_node=False, default=5)

  @classmethod
  def empty(cls, *, k: int = 5) -> TopKAccuracy:
    k = _check_int(k, "k", "TopKAccuracy")
    return cls(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), k=k)

  def update(self, outputs: Any, labels: Any, mask: Any = None) -> TopKAccuracy:
    fn = "TopKAccuracy.update"
    scores = jnp.asarray(outputs)
    if scores.ndim != 2 or not jnp.issubdtype(scores.dtype, jnp.floating):
      raise ValueError(f"{fn}: outputs must be float scores [B, C], got shape {scores.shape} dtype {scores.dtype}")
    if self.k > scores.shape[1]:
      raise ValueError(f"{fn}: k={self.k} exceeds the number of classes {scores.shape[1]}")
    labels = _class_labels(labels, scores.shape[0], fn)
    valid = _valid(mask, scores.shape[0], fn)
    hit = _top_k_hits(scores, labels, self.k, jnp)
    return self.replace(correct=self.correct + jnp.sum(hit & valid, dtype=jnp.int32),
                        count=self.count + jnp.sum(valid, dtype=jnp.int32))

  def compute(self) -> jax.Array:
    _warn_if(self.count == 0, "TopKAccuracy: no examples; the value is NaN")
    return jnp.where(self.count > 0, self.correct / jnp.maximum(self.count, 1), jnp.nan).astype(jnp.float32)


@struct.dataclass
class ConfusionMatrix(Metric):
  """Counts ``matrix[true, predicted]`` (scikit-learn's layout: rows = labels).

  Labels or predictions outside ``[0, num_classes)`` cannot be checked under
  ``jit`` and are not counted (the one-shot :func:`confusion_matrix` raises).

  Attributes:
    matrix: int32 ``[C, C]``.
    num_classes: C.
    threshold: for binary ``[B]`` outputs, as :class:`Accuracy`.

  Example:
    >>> ConfusionMatrix.empty(num_classes=2).update(jnp.array([1, 1, 0]), jnp.array([0, 1, 0])).compute()
    Array([[1, 1],
           [0, 1]], dtype=int32)
  """

  matrix: jax.Array
  num_classes: int = struct.field(pytree_node=False)
  threshold: float = struct.field(pytree_node=False)

  @classmethod
  def empty(cls, *, num_classes: int, threshold: float = 0.0) -> Self:
    num_classes = _check_int(num_classes, "num_classes", cls.__name__)
    return cls(matrix=jnp.zeros((num_classes, num_classes), jnp.int32), num_classes=num_classes,
               threshold=float(threshold))

  def update(self, outputs: Any, labels: Any, mask: Any = None) -> Self:
    fn = f"{type(self).__name__}.update"
    c = self.num_classes
    preds = _class_predictions(outputs, self.threshold, fn, num_classes=c)
    labels = _class_labels(labels, preds.shape[0], fn)
    valid = _valid(mask, preds.shape[0], fn)
    ok = valid & (labels >= 0) & (labels < c) & (preds >= 0) & (preds < c)
    flat = jnp.where(ok, labels * c + preds, c * c)
    counts = jnp.zeros((c * c,), jnp.int32).at[flat].add(1, mode="drop")
    return self.replace(matrix=self.matrix + counts.reshape(c, c))

  def compute(self) -> jax.Array:
    return self.matrix


def _prf_from_matrix(matrix: Any, average: str | None, xp: Any = jnp) -> dict[str, Any]:
  """Precision, recall, F1 (zero_division=0) from a ``[C, C]`` confusion matrix.

  ``xp=jnp`` (float32, jit-able) for states; ``xp=np`` (float64) for one-shots.
  """
  matrix = xp.asarray(matrix, xp.float32 if xp is jnp else np.float64)
  tp = xp.diagonal(matrix)
  predicted = xp.sum(matrix, axis=0)
  support = xp.sum(matrix, axis=1)
  if average == "micro":
    return {"precision": _safe_div(xp.sum(tp), xp.sum(predicted), xp),
            "recall": _safe_div(xp.sum(tp), xp.sum(support), xp),
            "f1": _safe_div(2 * xp.sum(tp), xp.sum(predicted) + xp.sum(support), xp)}
  per_class = {"precision": _safe_div(tp, predicted, xp), "recall": _safe_div(tp, support, xp),
               "f1": _safe_div(2 * tp, predicted + support, xp)}
  if average is None:
    return per_class
  if average == "binary":
    return {key: value[1] for key, value in per_class.items()}
  if average == "macro":
    return {key: xp.mean(value) for key, value in per_class.items()}
  # weighted by support
  return {key: _safe_div(xp.sum(value * support), xp.sum(support), xp) for key, value in per_class.items()}


@struct.dataclass
class PrecisionRecallF1(ConfusionMatrix):
  r"""Precision, recall and F1 from a streamed confusion matrix.

  Per class c, with TP/FP/FN counts: :math:`P_c = TP/(TP+FP)`,
  :math:`R_c = TP/(TP+FN)`, :math:`F1_c = 2TP/(2TP+FP+FN)`, each 0 when its
  denominator is 0 (scikit-learn's ``zero_division=0``). Averages: ``None``
  (per class, ``[C]``), ``"macro"`` (mean over all C classes), ``"weighted"``
  (by support), ``"micro"`` (from pooled counts; equals accuracy here),
  ``"binary"`` (class 1, needs C = 2).

  ``compute()`` returns ``{"precision", "recall", "f1"}``; the subclasses
  :class:`Precision`, :class:`Recall`, :class:`F1` return one of them.

  Example:
    >>> state = PrecisionRecallF1.empty(num_classes=3, average="macro")
    >>> state.update(jnp.array([0, 1, 1]), jnp.array([0, 1, 2])).compute()["precision"]
    Array(0.5, dtype=float32)
  """

  average: str | None = struct.field(pytree_node=False)

  @classmethod
  def empty(cls, *, num_classes: int, average: str | None = "macro", threshold: float = 0.0) -> Self:
    num_classes = _check_int(num_classes, "num_classes", cls.__name__)
    _check_average(average, cls.__name__, num_classes)
    return cls(matrix=jnp.zeros((num_classes, num_classes), jnp.int32), num_classes=num_classes,
               threshold=float(threshold), average=average)

  def compute(self) -> Any:
    return _prf_from_matrix(self.matrix, self.average)


@struct.dataclass
class Precision(PrecisionRecallF1):
  """Precision (see :class:`PrecisionRecallF1`)."""

  def compute(self) -> jax.Array:
    return _prf_from_matrix(self.matrix, self.average)["precision"]


@struct.dataclass
class Recall(PrecisionRecallF1):
  """Recall (see :class:`PrecisionRecallF1`)."""

  def compute(self) -> jax.Array:
    return _prf_from_matrix(self.matrix, self.average)["recall"]


@struct.dataclass
class F1(PrecisionRecallF1):
  """F1 score (see :class:`PrecisionRecallF1`)."""

  def compute(self) -> jax.Array:
    return _prf_from_matrix(self.matrix, self.average)["f1"]


# --------------------------------------------------------------------------- #
# Ranking / curve metrics (exact, buffered).
# --------------------------------------------------------------------------- #


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


# --------------------------------------------------------------------------- #
# Regression.
# --------------------------------------------------------------------------- #


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


# --------------------------------------------------------------------------- #
# Registry and logging.
# --------------------------------------------------------------------------- #

def _mean_average_precision(*, capacity: int, num_labels: int) -> AveragePrecision:
  """Mean average precision over ``num_labels`` labels (macro :class:`AveragePrecision`)."""
  return AveragePrecision.empty(capacity=capacity, num_labels=num_labels, average="macro")


def _check_metric(name: str, factory: Any, meta: Any) -> None:
  del meta
  if not callable(factory):
    raise TypeError(f"register: factory must be callable (options) -> an empty metric state, got {factory!r}")
  if name in _ALIASES or any(p.fullmatch(name) for p, _ in _PATTERNS):
    raise ValueError(f"register: {name!r} is a built-in metric's other name; choose another name")


_ALIASES = {"roc_auc": "auroc", "ap": "average_precision", "mean_average_precision": "map"}
_PATTERNS = ((re.compile(r"top(\d+)_accuracy"), "top_k_accuracy"),
             (re.compile(r"precision_at_(\d+)"), "precision_at_k"),
             (re.compile(r"recall_at_(\d+)"), "recall_at_k"))
METRICS: Registry[Callable[..., Metric]] = Registry("metric", check=_check_metric)
for _name, _factory in {
    "accuracy": Accuracy.empty,
    "top_k_accuracy": TopKAccuracy.empty,
    "confusion_matrix": ConfusionMatrix.empty,
    "precision": Precision.empty,
    "recall": Recall.empty,
    "f1": F1.empty,
    "precision_recall_f1": PrecisionRecallF1.empty,
    "auroc": AUROC.empty,
    "average_precision": AveragePrecision.empty,
    "map": _mean_average_precision,
    "precision_at_k": PrecisionAtK.empty,
    "recall_at_k": RecallAtK.empty,
    "mae": MeanAbsoluteError.empty,
    "mse": MeanSquaredError.empty,
    "rmse": RootMeanSquaredError.empty,
    "r2": R2Score.empty,
}.items():
  METRICS.register(_name, _factory)
METRICS.seal()


def register(name: str, factory: Callable[..., Metric] | None = None, *, overwrite: bool = False) -> Any:
  """Registers ``factory(**options) -> empty metric state`` under ``name``.

  The factory is usually the ``empty`` classmethod of your :class:`Metric`
  subclass (docs/extending.md writes expected calibration error this way)::

    jdl.metrics.register("ece", ExpectedCalibrationError.empty)

  or, as a decorator, on a function returning the empty state.

  Args:
    name: the name metric specs use (``config.metrics = ("ece:num_bins=10",)``).
    factory: the factory; omitted, ``register`` returns a decorator.
    overwrite: allow replacing an existing metric (a built-in one such as
      ``accuracy`` too); without it, a taken name is an error.

  Returns:
    ``factory`` (or a decorator that registers and returns it).
  """
  return METRICS.register(name, overwrite=overwrite) if factory is None else METRICS.register(
      name, factory, overwrite=overwrite)


def list_metrics() -> list[str]:
  """The registered metric names (plus the ``topK_accuracy``, ``precision_at_K``, ``recall_at_K`` forms)."""
  return sorted([*METRICS, *_ALIASES, "top<K>_accuracy", "precision_at_<K>", "recall_at_<K>"])


def _resolve(name: str) -> tuple[Callable[..., Metric], dict[str, Any]]:
  if not isinstance(name, str):
    raise TypeError(f"get: name must be a string, got {type(name).__name__} {name!r}")
  name = _ALIASES.get(name, name)
  if name in METRICS:
    return METRICS[name], {}
  for pattern, base in _PATTERNS:
    match = pattern.fullmatch(name)
    if match:
      return METRICS[base], {"k": int(match.group(1))}
  raise ValueError(f"get: unknown metric {name!r}; known metrics: {', '.join(list_metrics())}. A metric defined "
                   "in your own file is found once the file is imported (--import FILE, or config.imports)")


def _accepted(factory: Callable[..., Any]) -> list[str]:
  return [p.name for p in inspect.signature(factory).parameters.values()
          if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def get(name: str, **config: Any) -> Metric:
  """An empty metric state by name: ``get("f1", num_classes=10, average="macro")``.

  Names: ``accuracy``, ``top_k_accuracy`` (``k``) or ``top5_accuracy``,
  ``confusion_matrix``, ``precision``/``recall``/``f1``/``precision_recall_f1``
  (``num_classes``, ``average``), ``auroc``/``roc_auc``, ``average_precision``,
  ``map`` (``capacity``, ``num_labels``), ``precision_at_k``/``recall_at_k``
  (``k``) or ``precision_at_5``, ``mae``, ``mse``, ``rmse``, ``r2``
  (``num_outputs``).

  Raises:
    ValueError: unknown name (the message lists the known ones).
    TypeError: a missing or unknown option (the message lists the accepted ones).

  Example:
    >>> get("top5_accuracy").k
    5
  """
  factory, implied = _resolve(name)
  clash = sorted(set(implied) & set(config))
  if clash:
    raise TypeError(f"get: metric {name!r} fixes {clash[0]} by its name; do not also pass it")
  accepted = _accepted(factory)
  try:
    inspect.signature(factory).bind(**implied, **config)
  except TypeError as e:
    raise TypeError(f"get: bad options for metric {name!r} ({e}); it takes: {', '.join(accepted)}") from None
  return factory(**implied, **config)


def collection(names: Sequence[str], **config: Any) -> dict[str, Metric]:
  """Empty states for several metrics sharing a config, keyed by logging name.

  Each metric receives the options of ``config`` it accepts. Keys are the
  names, with ``_{average}`` appended for averaged precision/recall/F1 —
  ``collection(["accuracy", "f1"], num_classes=10, average="macro")`` gives
  ``{"accuracy": ..., "f1_macro": ...}``.

  Raises:
    TypeError: an option none of the metrics takes.

  Example:
    >>> sorted(collection(["precision", "recall"], num_classes=4, average="weighted"))
    ['precision_weighted', 'recall_weighted']
  """
  states: dict[str, Metric] = {}
  used: set[str] = set()
  for name in names:
    factory, implied = _resolve(name)
    accepted = set(_accepted(factory)) - set(implied)
    options = {key: value for key, value in config.items() if key in accepted}
    used |= set(options)
    state = get(name, **options)
    key = name
    if isinstance(state, PrecisionRecallF1) and state.average is not None:
      key = f"{name}_{state.average}"
    states[key] = state
  unused = sorted(set(config) - used)
  if unused:
    raise TypeError(f"collection: no metric among {list(names)} takes option(s) {', '.join(unused)}")
  return states


def _flatten(name: str, value: Any, out: dict[str, float], class_names: Sequence[str] | None) -> None:
  if isinstance(value, Mapping):
    for key, sub in value.items():
      _flatten(f"{name}_{key}", sub, out, class_names)
    return
  array = np.asarray(value, dtype=np.float64)
  if array.ndim == 0:
    out[name] = float(array)
    return
  for index in np.ndindex(*array.shape):
    parts = [class_names[i] if class_names is not None and array.ndim == 1 and len(class_names) == array.shape[0]
             else str(i) for i in index]
    out[f"{name}_{'_'.join(parts)}"] = float(array[index])


def compute_all(states: Mapping[str, Metric], *, class_names: Sequence[str] | None = None) -> dict[str, float]:
  """Computes every state into one flat ``{name: float}`` dict for logging.

  Scalars keep their key; dict results become ``{key}_{field}``; per-class
  arrays ``{key}_{class}`` (``class_names`` or the index); matrices
  ``{key}_{i}_{j}``.

  Example:
    >>> states = {"acc": Accuracy.empty().update(jnp.array([1, 0]), jnp.array([1, 1]))}
    >>> compute_all(states)
    {'acc': 0.5}
  """
  out: dict[str, float] = {}
  for name, state in states.items():
    if not isinstance(state, Metric):
      raise TypeError(f"compute_all: {name!r} is not a metric state, got {type(state).__name__}")
    _flatten(name, state.compute(), out, class_names)
  return out


# --------------------------------------------------------------------------- #
# Metric specs: metrics named in a config.
# --------------------------------------------------------------------------- #

# Options the evaluation fills in from the batch when a spec leaves them out.
_INFERRED = ("num_classes", "capacity", "num_labels", "num_outputs")
_AVERAGE_WORDS = {"macro": "macro", "micro": "micro", "weighted": "weighted", "binary": "binary", "none": None}


def _spec_value(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare word such as macro


@dataclasses.dataclass(frozen=True)
class MetricSpec:
  """A metric named in a config: ``"[output/]name[:option,...]"``, parsed by :func:`parse_spec`.

  Attributes:
    text: the spec as written.
    name: the registry name (``f1``, ``auroc``, ``top5_accuracy``, ...).
    output: the model output it reads when the model returns a dict
      (``"alcohol/mae"``), else None.
    options: the options given, as ``(key, value)`` pairs.
    key: the name it is logged under: ``name``, ``name_{average}`` for
      averaged precision/recall/F1 (as :func:`collection`), then
      ``_{option}_{value}`` for each other option given with a value other
      than its default (``ece:num_bins=10`` → ``ece_num_bins_10``;
      ``accuracy:threshold=0.5`` → ``accuracy_threshold_0.5``), prefixed with
      ``output/``.
  """

  text: str
  name: str
  output: str | None
  options: tuple[tuple[str, Any], ...]
  key: str

  def create(self, outputs: Any, batch_size: int) -> Metric:
    """The empty state for a batch of ``outputs`` (``[B]``, ``[B, 1]`` or ``[B, K]``).

    Options the spec leaves out are read from the outputs: ``num_classes``
    (K, or 2 for one binary score), ``num_labels`` and ``num_outputs`` (K when
    K > 1), and a curve metric's ``capacity`` (``batch_size``: one state per
    batch, merged by concatenation).
    """
    factory, implied = _resolve(self.name)
    accepted = set(_accepted(factory)) - set(implied)
    options = dict(self.options)
    shape = tuple(np.shape(outputs))
    width = shape[1] if len(shape) == 2 else 1
    inferred = {"num_classes": width if width > 1 else 2, "capacity": int(batch_size)}
    if width > 1:
      inferred.update(num_labels=width, num_outputs=width)
    for key, value in inferred.items():
      if key in accepted and key not in options:
        options[key] = value
    return get(self.name, **options)


def parse_spec(text: str) -> MetricSpec:
  """Parses one metric spec: ``"[output/]name[:option,...]"``.

  ``name`` is any name :func:`get` takes. Options are ``key=value`` (a Python
  literal or a bare word: ``f1:average=weighted``, ``accuracy:threshold=0.5``)
  or one of the bare words ``macro``, ``micro``, ``weighted``, ``binary``,
  ``none``, short for ``average=...`` (``f1:macro``). ``output/`` picks one
  output of a model returning a dict (``alcohol/mae``); its targets are the
  batch's ``label[output]`` or, for flat batches, the array under ``output``.
  ``num_classes``, ``num_labels``, ``num_outputs`` and ``capacity`` are read
  from the data when left out (:meth:`MetricSpec.create`); ``capacity`` may
  not be given.

  Raises:
    ValueError: an unknown metric (the message lists the known ones), an
      option the metric does not take (it lists those it does), or a bad
      value — all before anything is traced.

  Example:
    >>> spec = parse_spec("cls/f1:macro")
    >>> spec.name, spec.output, spec.options, spec.key
    ('f1', 'cls', (('average', 'macro'),), 'cls/f1_macro')
  """
  if not isinstance(text, str) or not text.strip():
    raise ValueError(f"metrics: each metric must be a non-empty string such as 'f1:macro', got {text!r}")
  head, _, option_text = text.strip().partition(":")
  output, _, name = head.rpartition("/")
  output = output or None
  try:
    factory, implied = _resolve(name)
  except (TypeError, ValueError):
    raise ValueError(f"metrics: unknown metric {name!r} in {text!r}; known metrics: "
                     f"{', '.join(list_metrics())}") from None
  accepted = [k for k in _accepted(factory) if k not in implied]
  options: dict[str, Any] = {}
  for item in filter(None, (part.strip() for part in option_text.split(","))):
    key, eq, value = item.partition("=")
    if not eq:
      if item.lower() not in _AVERAGE_WORDS:
        raise ValueError(f"metrics: {text!r}: option {item!r} is neither key=value nor an average "
                         f"({', '.join(_AVERAGE_WORDS)})")
      key, parsed = "average", _AVERAGE_WORDS[item.lower()]
    else:
      key = key.strip()
      parsed = _spec_value(value.strip())
      if key == "average" and isinstance(parsed, str) and parsed.lower() in _AVERAGE_WORDS:
        parsed = _AVERAGE_WORDS[parsed.lower()]
    if key == "capacity":
      raise ValueError(f"metrics: {text!r}: capacity is set by the evaluation (one buffer per batch); "
                       "do not give it")
    if key not in accepted:
      raise ValueError(f"metrics: {text!r}: metric {name!r} takes no option {key!r}; it takes: "
                       f"{', '.join(k for k in accepted if k != 'capacity') or 'no options'}")
    options[key] = parsed
  # Build a state with stand-in values for what the data fills in: bad values fail now, not in a trace.
  stand_ins = {"num_classes": 2, "capacity": 1, "num_labels": 2}
  try:
    probe = get(name, **{k: v for k, v in stand_ins.items() if k in accepted and k not in options}, **options)
  except (TypeError, ValueError) as e:
    raise ValueError(f"metrics: {text!r}: {e}") from None
  key = name
  if isinstance(probe, PrecisionRecallF1) and probe.average is not None:
    key = f"{name}_{probe.average}"
  key += _option_suffix(factory, options)
  if output:
    key = f"{output}/{key}"
  return MetricSpec(text=text, name=name, output=output, options=tuple(options.items()), key=key)


# Options that never change a metric's log key: what the data fills in, and the average (precision, recall and
# F1 carry it in their key already; a per-label average=None is logged as name_0, name_1, ...).
_KEYLESS_OPTIONS = ("num_classes", "num_labels", "num_outputs", "capacity", "average")


def _option_suffix(factory: Callable[..., Any], options: Mapping[str, Any]) -> str:
  """``_key_value`` for each option given with a value other than the metric's default (``ece_num_bins_10``)."""
  params = inspect.signature(factory).parameters
  parts = []
  for key, value in options.items():
    default = params[key].default if key in params else inspect.Parameter.empty
    if key in _KEYLESS_OPTIONS or (default is not inspect.Parameter.empty and _same_value(value, default)):
      continue
    parts.append(f"_{key}_{value}")
  return "".join(parts)


def _same_value(a: Any, b: Any) -> bool:
  try:
    return bool(a == b) and type(a) is not bool and type(b) is not bool or a is b
  except (TypeError, ValueError):
    return False


def parse_specs(specs: str | Sequence[str | MetricSpec] | None) -> tuple[MetricSpec, ...]:
  """Parses a config's list of metric specs (:func:`parse_spec`); None or empty gives ``()``.

  Raises:
    ValueError: a bad spec, or two specs logged under the same key.
  """
  if specs is None:
    return ()
  if isinstance(specs, (str, MetricSpec)):
    specs = [specs]
  parsed = tuple(s if isinstance(s, MetricSpec) else parse_spec(s) for s in specs)
  seen: dict[str, str] = {}
  for spec in parsed:
    if spec.key in seen:
      raise ValueError(f"metrics: {seen[spec.key]!r} and {spec.text!r} are both logged as {spec.key!r}")
    seen[spec.key] = spec.text
  return parsed


# --------------------------------------------------------------------------- #
# One-shot functions (scikit-learn order: y_true first).
# --------------------------------------------------------------------------- #


def _host_labels(y: Any, name: str, fn: str, num_classes: int | None = None) -> np.ndarray:
  y = np.asarray(y)
  if y.ndim != 1:
    raise ValueError(f"{fn}: {name} must be a 1-D array of class ids, got shape {y.shape}")
  if y.size and not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
    if not np.all(np.mod(y, 1) == 0):
      raise ValueError(f"{fn}: {name} must hold integer class ids, got dtype {y.dtype}")
  y = y.astype(np.int64)
  if num_classes is not None and y.size and (y.min() < 0 or y.max() >= num_classes):
    raise ValueError(f"{fn}: {name} must lie in [0, num_classes={num_classes}), got values in "
                     f"[{y.min()}, {y.max()}]")
  return y


def _pair(y_true: Any, y_pred: Any, fn: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
  num_classes = _check_int(num_classes, "num_classes", fn)
  y_true = _host_labels(y_true, "y_true", fn, num_classes)
  y_pred = _host_labels(y_pred, "y_pred", fn, num_classes)
  if y_true.shape != y_pred.shape:
    raise ValueError(f"{fn}: y_true and y_pred must have the same length, got {y_true.shape} and {y_pred.shape}")
  return y_true, y_pred


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
  """``[C, C]`` int64 counts, rows = true class, columns = predicted (as scikit-learn).

  Example:
    >>> confusion_matrix([0, 1, 1], [0, 0, 1], num_classes=2)
    array([[1, 0],
           [1, 1]])
  """
  y_true, y_pred = _pair(y_true, y_pred, "confusion_matrix", num_classes)
  return np.bincount(y_true * num_classes + y_pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def precision_recall_f1(y_true: Any, y_pred: Any, num_classes: int, average: str | None = None
                        ) -> tuple[Any, Any, Any]:
  """Precision, recall and F1 as scikit-learn's ``precision_recall_fscore_support``.

  Uses ``labels=range(num_classes)`` and ``zero_division=0``. ``average``:
  ``None`` (per-class ``[C]`` arrays), ``"macro"``, ``"micro"``,
  ``"weighted"`` or ``"binary"`` (class 1).

  Returns:
    ``(precision, recall, f1)``: floats, or NumPy arrays for ``average=None``.

  Example:
    >>> precision_recall_f1([0, 1, 2, 2], [0, 2, 2, 2], num_classes=3, average="macro")
    (0.5555555555555555, 0.6666666666666666, 0.6)
  """
  y_true, y_pred = _pair(y_true, y_pred, "precision_recall_f1", num_classes)
  _check_average(average, "precision_recall_f1", num_classes)
  matrix = confusion_matrix(y_true, y_pred, num_classes)
  values = _prf_from_matrix(matrix, average, np)
  convert = (lambda v: np.asarray(v, np.float64)) if average is None else (lambda v: float(v))
  return convert(values["precision"]), convert(values["recall"]), convert(values["f1"])


def accuracy(y_true: Any, y_pred: Any) -> float:
  """Fraction of equal entries (scikit-learn's ``accuracy_score``)."""
  y_true = _host_labels(y_true, "y_true", "accuracy")
  y_pred = _host_labels(y_pred, "y_pred", "accuracy")
  if y_true.shape != y_pred.shape or not y_true.size:
    raise ValueError(f"accuracy: y_true and y_pred must be non-empty and of equal length, got {y_true.shape} "
                     f"and {y_pred.shape}")
  return float(np.mean(y_true == y_pred))


def top_k_accuracy(y_true: Any, scores: Any, k: int) -> float:
  """Fraction of examples whose label is among the k best scores (scikit-learn's ties).

  Example:
    >>> top_k_accuracy([2, 2], [[0.1, 0.5, 0.4], [0.8, 0.15, 0.05]], k=2)
    0.5
  """
  scores = np.asarray(scores, dtype=np.float64)
  if scores.ndim != 2:
    raise ValueError(f"top_k_accuracy: scores must be [N, C], got shape {scores.shape}")
  k = _check_int(k, "k", "top_k_accuracy")
  if k > scores.shape[1]:
    raise ValueError(f"top_k_accuracy: k={k} exceeds the number of classes {scores.shape[1]}")
  y_true = _host_labels(y_true, "y_true", "top_k_accuracy", scores.shape[1])
  if y_true.shape[0] != scores.shape[0] or not y_true.size:
    raise ValueError(f"top_k_accuracy: y_true has {y_true.shape[0]} entries but scores has {scores.shape[0]} rows "
                     f"(both must be non-empty and equal)")
  return float(np.mean(_top_k_hits(scores, y_true, k, np)))


def _host_binary(y_true: Any, scores: Any, fn: str) -> tuple[np.ndarray, np.ndarray]:
  y_true = np.asarray(y_true)
  scores = np.asarray(scores, dtype=np.float64)
  if y_true.shape != scores.shape or y_true.ndim not in (1, 2):
    raise ValueError(f"{fn}: y_true and scores must have the same shape, [N] (binary) or [N, L] "
                     f"(multi-label); got {y_true.shape} and {scores.shape}")
  if y_true.size and not np.all(np.isin(y_true, (0, 1))):
    raise ValueError(f"{fn}: y_true must be binary (0/1), got values {np.unique(y_true)[:10]}")
  if np.isnan(scores).any():
    raise ValueError(f"{fn}: scores contain NaN")
  return y_true.astype(np.float64), scores


def _curve_counts(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Thresholds (distinct scores, decreasing) with cumulative TP and FP counts."""
  order = np.argsort(-scores, kind="stable")
  s, y = scores[order], y_true[order]
  last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
  tps = np.cumsum(y)[last]
  return s[last], tps, (last + 1) - tps


def roc_curve(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(fpr, tpr, thresholds)`` at every distinct score (scikit-learn with ``drop_intermediate=False``).

  The first point is (0, 0) at threshold ``inf``.

  Example:
    >>> roc_curve([0, 1, 1, 0], [0.1, 0.4, 0.4, 0.8])[1]
    array([0., 0., 1., 1.])
  """
  y_true, scores = _host_binary(y_true, scores, "roc_curve")
  if y_true.ndim != 1:
    raise ValueError(f"roc_curve: y_true must be 1-D (binary), got shape {y_true.shape}")
  thresholds, tps, fps = _curve_counts(y_true, scores)
  tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
  with np.errstate(invalid="ignore", divide="ignore"):
    if fps[-1] == 0 or tps[-1] == 0:
      warnings.warn("roc_curve: only one class is present in y_true; the curve has NaNs", MetricWarning,
                    stacklevel=2)
    return fps / fps[-1], tps / tps[-1], np.r_[np.inf, thresholds]


def precision_recall_curve(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(precision, recall, thresholds)`` as scikit-learn's ``precision_recall_curve``.

  Thresholds are the distinct scores, increasing; precision/recall have one
  more entry, the final point (1, 0).

  Example:
    >>> precision_recall_curve([0, 1, 1, 0], [0.1, 0.4, 0.4, 0.8])[1]
    array([1., 1., 0., 0.])
  """
  y_true, scores = _host_binary(y_true, scores, "precision_recall_curve")
  if y_true.ndim != 1:
    raise ValueError(f"precision_recall_curve: y_true must be 1-D (binary), got shape {y_true.shape}")
  thresholds, tps, fps = _curve_counts(y_true, scores)
  precision = tps / (tps + fps)
  if tps[-1] == 0:
    warnings.warn("precision_recall_curve: no positive example; recall is set to 1", MetricWarning, stacklevel=2)
    recall = np.ones_like(tps)
  else:
    recall = tps / tps[-1]
  return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def _roc_auc_1d(y_true: np.ndarray, scores: np.ndarray) -> float:
  _, tps, fps = _curve_counts(y_true, scores)
  if tps[-1] == 0 or fps[-1] == 0:
    return math.nan
  tpr, fpr = np.r_[0.0, tps] / tps[-1], np.r_[0.0, fps] / fps[-1]
  return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def _average_precision_1d(y_true: np.ndarray, scores: np.ndarray) -> float:
  _, tps, fps = _curve_counts(y_true, scores)
  if tps[-1] == 0:
    return 0.0
  return float(np.sum(np.diff(np.r_[0.0, tps]) / tps[-1] * tps / (tps + fps)))


def _per_label_host(fn: Callable[[np.ndarray, np.ndarray], float], y_true: np.ndarray, scores: np.ndarray,
                    average: str | None) -> Any:
  if y_true.ndim == 1:
    return fn(y_true, scores)
  values = np.array([fn(y_true[:, j], scores[:, j]) for j in range(y_true.shape[1])])
  return values if average is None else float(np.mean(values))


def roc_auc(y_true: Any, scores: Any, *, average: str | None = "macro") -> float | np.ndarray:
  """Exact area under the ROC curve, as scikit-learn's ``roc_auc_score``.

  Binary ``[N]`` inputs, or multi-label ``[N, L]`` (macro average, or per
  label with ``average=None``). Undefined (one class present): NaN with a
  :class:`MetricWarning`.

  Example:
    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
  """
  if average not in (None, "macro"):
    raise ValueError(f"roc_auc: average must be 'macro' or None, got {average!r}")
  y_true, scores = _host_binary(y_true, scores, "roc_auc")
  value = _per_label_host(_roc_auc_1d, y_true, scores, average)
  if np.isnan(value).any():
    warnings.warn("roc_auc: only one class is present in y_true (for some label); ROC AUC is undefined (NaN)",
                  MetricWarning, stacklevel=2)
  return value


def average_precision(y_true: Any, scores: Any, *, average: str | None = "macro") -> float | np.ndarray:
  r"""Exact average precision :math:`\sum_t (R_t - R_{t-1}) P_t`, as scikit-learn's.

  Binary ``[N]``, or multi-label ``[N, L]`` (macro = mAP, or per label with
  ``average=None``). A label without positives scores 0 (warning).

  Example:
    >>> round(average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 6)
    0.833333
  """
  if average not in (None, "macro"):
    raise ValueError(f"average_precision: average must be 'macro' or None, got {average!r}")
  y_true, scores = _host_binary(y_true, scores, "average_precision")
  if y_true.size and (y_true.sum(axis=0) == 0).any():
    warnings.warn("average_precision: no positive example (for some label); its AP is 0", MetricWarning,
                  stacklevel=2)
  return _per_label_host(_average_precision_1d, y_true, scores, average)


def _regression_pair(y_true: Any, y_pred: Any, fn: str) -> tuple[np.ndarray, np.ndarray]:
  """Both as float64 ``[N, D]`` (D = 1 for 1-D inputs)."""
  y_true = np.asarray(y_true, np.float64)
  y_pred = np.asarray(y_pred, np.float64)
  if y_true.shape != y_pred.shape or y_true.ndim not in (1, 2) or not y_true.shape[0]:
    raise ValueError(f"{fn}: y_true and y_pred must be non-empty [N] or [N, D] arrays of the same shape, got "
                     f"{y_true.shape} and {y_pred.shape}")
  return y_true.reshape(y_true.shape[0], -1), y_pred.reshape(y_pred.shape[0], -1)


def mean_absolute_error(y_true: Any, y_pred: Any) -> float:
  r"""MAE :math:`\frac1n\sum|y - \hat y|`, as scikit-learn (multi-output: uniform average).

  Example:
    >>> mean_absolute_error([0.0, 0.0], [1.0, -2.0])
    1.5
  """
  y_true, y_pred = _regression_pair(y_true, y_pred, "mean_absolute_error")
  return float(np.mean(np.abs(y_pred - y_true)))


def mean_squared_error(y_true: Any, y_pred: Any) -> float:
  r"""MSE :math:`\frac1n\sum(y - \hat y)^2`, as scikit-learn (multi-output: uniform average).

  Example:
    >>> mean_squared_error([0.0, 0.0], [1.0, -2.0])
    2.5
  """
  y_true, y_pred = _regression_pair(y_true, y_pred, "mean_squared_error")
  return float(np.mean(np.square(y_pred - y_true)))


def root_mean_squared_error(y_true: Any, y_pred: Any) -> float:
  r"""RMSE :math:`\sqrt{\mathrm{MSE}}` per output, then averaged (as scikit-learn).

  Example:
    >>> root_mean_squared_error([0.0, 0.0], [3.0, 4.0])
    3.5355339059327378
  """
  y_true, y_pred = _regression_pair(y_true, y_pred, "root_mean_squared_error")
  return float(np.mean(np.sqrt(np.mean(np.square(y_pred - y_true), axis=0))))


def r2_score(y_true: Any, y_pred: Any) -> float:
  r"""R² :math:`= 1 - SS_{res}/SS_{tot}`, as scikit-learn (``force_finite=True``; outputs averaged uniformly).

  A constant target gives 1.0 for a perfect prediction and 0.0 otherwise.

  Example:
    >>> r2_score([1.0, 2.0, 4.0], [1.0, 2.0, 3.0])
    0.7857142857142857
  """
  y_true, y_pred = _regression_pair(y_true, y_pred, "r2_score")
  ss_res = np.sum(np.square(y_true - y_pred), axis=0)
  ss_tot = np.sum(np.square(y_true - y_true.mean(axis=0)), axis=0)
  safe = np.where(ss_tot > 0, ss_tot, 1.0)
  r2 = np.where(ss_tot > 0, 1 - ss_res / safe, np.where(ss_res == 0, 1.0, 0.0))
  return float(np.mean(r2))


# --------------------------------------------------------------------------- #
# Reports and plots.
# --------------------------------------------------------------------------- #


def _class_names(class_names: Sequence[str] | None, num_classes: int, fn: str) -> list[str]:
  if class_names is None:
    return [str(i) for i in range(num_classes)]
  names = [str(name) for name in class_names]
  if len(names) != num_classes:
    raise ValueError(f"{fn}: class_names must have num_classes={num_classes} entries, got {len(names)}")
  return names


def classification_report(y_true: Any, y_pred: Any, num_classes: int, class_names: Sequence[str] | None = None,
                          *, digits: int = 2) -> str:
  """A text table: per-class precision, recall, F1 and support, then accuracy and macro/weighted averages.

  Same layout and numbers as scikit-learn's ``classification_report`` with
  ``labels=range(num_classes)``, ``zero_division=0``.

  Example:
    >>> print(classification_report([0, 1, 1], [0, 1, 0], num_classes=2, class_names=["cat", "dog"]))
                  precision    recall  f1-score   support
    <BLANKLINE>
             cat       0.50      1.00      0.67         1
             dog       1.00      0.50      0.67         2
    <BLANKLINE>
        accuracy                           0.67         3
       macro avg       0.75      0.75      0.67         3
    weighted avg       0.83      0.67      0.67         3
    <BLANKLINE>
  """
  fn = "classification_report"
  y_true, y_pred = _pair(y_true, y_pred, fn, num_classes)
  names = _class_names(class_names, num_classes, fn)
  digits = _check_int(digits, "digits", fn, minimum=0)
  matrix = confusion_matrix(y_true, y_pred, num_classes)
  support = matrix.sum(axis=1)
  total = int(support.sum())
  per_class = _prf_from_matrix(matrix, None, np)
  width = max([len(name) for name in names] + [len("weighted avg"), digits])

  def row(name: str, values: Sequence[float | str], count: int) -> str:
    cells = "".join(f" {v:>9.{digits}f}" if not isinstance(v, str) else f" {v:>9}" for v in values)
    return f"{name:>{width}} {cells} {count:>9}\n"

  lines = f"{'':>{width}} " + "".join(f" {h:>9}" for h in ("precision", "recall", "f1-score", "support")) + "\n\n"
  for c, name in enumerate(names):
    lines += row(name, [per_class["precision"][c], per_class["recall"][c], per_class["f1"][c]], int(support[c]))
  lines += "\n"
  acc = float(np.trace(matrix) / total) if total else 0.0
  lines += row("accuracy", ["", "", acc], total)
  for label, average in (("macro avg", "macro"), ("weighted avg", "weighted")):
    values = _prf_from_matrix(matrix, average, np)
    lines += row(label, [float(values["precision"]), float(values["recall"]), float(values["f1"])], total)
  return lines


def plot_confusion_matrix(cm: Any, class_names: Sequence[str] | None = None, normalize: str | None = None,
                          path: str | None = None, *, title: str | None = None, cmap: str = "Blues") -> Any:
  """Draws a confusion matrix as an annotated heat map (matplotlib, Agg canvas).

  Args:
    cm: ``[C, C]`` counts, rows = true class (e.g. :func:`confusion_matrix`).
    class_names: tick labels; default the class indices.
    normalize: ``None`` (counts), ``"true"`` (rows sum to 1: recall per
      class on the diagonal), ``"pred"`` (columns sum to 1: precision) or
      ``"all"``. Empty rows/columns stay 0.
    path: if given, the figure is saved there (format from the extension).
    title: the axes title.
    cmap: a matplotlib colormap name.

  Returns:
    the ``matplotlib.figure.Figure`` (not registered with pyplot; nothing is
    shown).

  Example:
    >>> fig = plot_confusion_matrix(np.array([[5, 1], [2, 7]]), ["neg", "pos"], normalize="true")
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fn = "plot_confusion_matrix"
  cm = np.asarray(cm, dtype=np.float64)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    raise ValueError(f"{fn}: cm must be a square [C, C] matrix, got shape {cm.shape}")
  if normalize not in (None, "true", "pred", "all"):
    raise ValueError(f"{fn}: normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
  names = _class_names(class_names, cm.shape[0], fn)
  if normalize is not None:
    axis = {"true": 1, "pred": 0, "all": None}[normalize]
    totals = cm.sum(axis=axis, keepdims=axis is not None)
    cm = np.divide(cm, totals, out=np.zeros_like(cm), where=np.asarray(totals) != 0)

  size = max(4.0, 0.6 * cm.shape[0] + 2.0)
  fig = Figure(figsize=(size + 1.0, size))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  image = ax.imshow(cm, interpolation="nearest", cmap=cmap)
  fig.colorbar(image, ax=ax)
  ticks = np.arange(cm.shape[0])
  ax.set_xticks(ticks, labels=names, rotation=45, ha="right")
  ax.set_yticks(ticks, labels=names)
  ax.set_xlabel("Predicted label")
  ax.set_ylabel("True label")
  if title:
    ax.set_title(title)
  midpoint = (cm.max() + cm.min()) / 2 if cm.size else 0
  for i, j in np.ndindex(*cm.shape):
    text = f"{cm[i, j]:.2f}" if normalize is not None else f"{int(round(cm[i, j]))}"
    ax.text(j, i, text, ha="center", va="center", color="white" if cm[i, j] > midpoint else "black")
  fig.tight_layout()
  if path is not None:
    fig.savefig(path)
  return fig
