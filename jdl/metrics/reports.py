"""Reports and plots: the classification report and the confusion-matrix figure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jdl.metrics._base import _check_int
from jdl.metrics.classification import _prf_from_matrix
from jdl.metrics.oneshot import _pair, confusion_matrix


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
