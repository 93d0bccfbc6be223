"""One-shot metric functions on the host, in scikit-learn's argument order (``y_true`` first)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from jdl.metrics._base import MetricWarning, _check_average, _check_int
from jdl.metrics.classification import _prf_from_matrix, _top_k_hits


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
