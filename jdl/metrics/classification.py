"""Classification metrics: accuracy, top-k accuracy, the confusion matrix, precision, recall, F1."""

from __future__ import annotations

from typing import Any, Self

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jdl.metrics._base import Metric, _check_average, _check_int, _class_labels, _class_predictions, _safe_div, _valid, _warn_if


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
