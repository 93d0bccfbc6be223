"""Learning curves of a run as a PNG."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return fig
