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
