"""Learning curves of a run as a PNG."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_history(history: Sequence[dict[str, Any]], path: str | os.PathLike[str], title: str = ""):
  """Plots ``train_*`` and ``eval_*`` curves per epoch, one panel per metric.

  Returns:
    The matplotlib Figure (also saved to ``path``).
  """
  epochs = [h["epoch"] for h in history]
  names = sorted({k.split("_", 1)[1] for h in history for k in h if k.startswith(("train_", "eval_"))})
  fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4.5 * max(len(names), 1), 3.5), squeeze=False)
  for ax, name in zip(axes[0], names):
    for prefix, style in (("train_", "-o"), ("eval_", "--s")):
      ys = [h.get(prefix + name) for h in history]
      if any(y is not None for y in ys):
        ax.plot(epochs, ys, style, label=prefix.rstrip("_"), markersize=4)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    ax.legend()
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return fig


def plot_adversarial(x: Any, x_adv: Any, y: Any, clean_pred: Any, adv_pred: Any, path: str | os.PathLike[str],
                     class_names: Sequence[str] | None = None, title: str = "", columns: int = 8):
  """A grid of images: clean inputs (top row) over their adversarial versions, each with its prediction.

  Predictions that differ from the label are drawn in red. Images are
  ``(n, H, W, C)`` in [0, 1] (C = 1 or 3); 1-D inputs are drawn as curves.

  Returns:
    The matplotlib Figure (also saved to ``path``).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top

  n = min(columns, len(x))
  name = (lambda c: class_names[int(c)]) if class_names else (lambda c: str(int(c)))  # noqa: E731
  fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.8), squeeze=False)
  for j in range(n):
    for row, (images, preds, label) in enumerate(((x, clean_pred, "clean"), (x_adv, adv_pred, "adversarial"))):
      ax = axes[row][j]
      image = np.asarray(images[j])
      if image.ndim == 3:
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0.0, vmax=1.0)
      else:
        ax.plot(image.reshape(-1))
      wrong = int(preds[j]) != int(y[j])
      ax.set_title(name(preds[j]), fontsize=8, color="red" if wrong else "black")
      ax.set_xticks([])
      ax.set_yticks([])
      if j == 0:
        ax.set_ylabel(label, fontsize=8)
  return _save(fig, path, title)


def _show(ax, image: Any, *, cmap: str = "gray", vmin: float | None = 0.0, vmax: float | None = 1.0) -> None:
  """Draws one image ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` (or a 1-d input as a curve) without ticks."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim == 3 and image.shape[-1] == 3:
    ax.imshow(np.clip(image, 0.0, 1.0))
  elif image.ndim == 2:
    ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax)
  else:
    ax.plot(image.reshape(-1))
  ax.set_xticks([])
  ax.set_yticks([])


def _save(fig, path: str | os.PathLike[str], title: str = ""):
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return fig


def plot_image_rows(rows: Sequence[tuple[str, Any]], titles: Sequence[str], path: str | os.PathLike[str],
                    title: str = ""):
  """A grid: one row per ``(label, images [n, ...])``, one column per image, ``titles`` over the first row.

  Images are in [0, 1]; a row whose images are 2-d arrays (saliency maps) is
  drawn with its own colour scale per image.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top

  n = len(titles)
  fig, axes = plt.subplots(len(rows), n, figsize=(1.5 * n, 1.65 * len(rows) + 0.4), squeeze=False)
  for r, (label, images) in enumerate(rows):
    for j in range(n):
      image = np.asarray(images[j])
      heat = image.ndim == 2 and label != "input"
      _show(axes[r][j], image, cmap="inferno" if heat else "gray", vmin=None if heat else 0.0,
            vmax=None if heat else 1.0)
      if r == 0:
        axes[r][j].set_title(titles[j], fontsize=7)
      if j == 0:
        axes[r][j].set_ylabel(label, fontsize=7)
  return _save(fig, path, title)


def plot_filters(kernel: Any, path: str | os.PathLike[str], title: str = "", columns: int = 8):
  """A convolution kernel ``[kh, kw, in, out]``: one tile per output channel (RGB for 3 inputs, else input 0).

  Each tile is scaled to its own range (weights have no natural one).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top

  kernel = np.asarray(kernel)
  out = kernel.shape[-1]
  columns = min(columns, out)
  rows = -(-out // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(1.1 * columns, 1.1 * rows + 0.4), squeeze=False)
  for k in range(rows * columns):
    ax = axes[k // columns][k % columns]
    ax.axis("off")
    if k >= out:
      continue
    w = kernel[..., :3, k] if kernel.shape[2] == 3 else kernel[..., 0, k]
    w = (w - w.min()) / max(float(w.max() - w.min()), 1e-12)
    ax.imshow(w, cmap=None if w.ndim == 3 else "gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(str(k), fontsize=6)
  return _save(fig, path, title)


def plot_confusion(matrix: Any, path: str | os.PathLike[str], class_names: Sequence[str] | None = None,
                   title: str = ""):
  """A confusion matrix (rows: true class, columns: predicted), coloured by the row's fraction, with the counts."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  matrix = np.asarray(matrix)
  c = matrix.shape[0]
  names = list(class_names) if class_names else [str(i) for i in range(c)]
  fraction = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
  size = max(4.0, 0.55 * c + 1.5)
  fig, ax = plt.subplots(figsize=(size + 1.0, size))
  image = ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0)
  for i in range(c):
    for j in range(c):
      ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
              color="white" if fraction[i, j] > 0.5 else "black")
  ax.set_xticks(range(c), names, rotation=45, ha="right", fontsize=7)
  ax.set_yticks(range(c), names, fontsize=7)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
  return _save(fig, path, title)


def plot_errors(images: Any, labels: Any, predictions: Any, confidence: Any, path: str | os.PathLike[str],
                class_names: Sequence[str] | None = None, title: str = "", columns: int = 8):
  """Misclassified examples, each titled ``predicted (confidence) / true``."""
  n = len(images)
  name = (lambda c: class_names[int(c)]) if class_names else (lambda c: str(int(c)))  # noqa: E731
  columns = max(1, min(columns, n))
  rows = max(1, -(-n // columns))
  fig, axes = plt.subplots(rows, columns, figsize=(1.7 * columns, 1.9 * rows + 0.4), squeeze=False)
  for k in range(rows * columns):
    ax = axes[k // columns][k % columns]
    if k >= n:
      ax.axis("off")
      continue
    _show(ax, images[k])
    ax.set_title(f"{name(predictions[k])} ({float(confidence[k]):.2f})\ntrue: {name(labels[k])}", fontsize=6,
                 color="red")
  return _save(fig, path, title)
