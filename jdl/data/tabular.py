"""Small tabular datasets from scikit-learn's bundled data (no download), built in memory.

Each dataset is split once, deterministically: 20% of the examples (of each class,
for classification) go to ``test``, chosen with ``numpy.random.default_rng(0)``; the
rest are ``train``; both splits are shuffled with the same generator. ``inputs`` are
float32, standardized per feature with the *train* split's mean and standard
deviation (features constant on train become 0). Classification labels are int32;
the regression target (``diabetes``) is float32, standardized the same way with the
train split's mean and standard deviation (``target_stats`` gives them, to convert
predictions back to the original units).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

SEED = 0
TEST_FRACTION = 0.2


def _sklearn_loader(name: str) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
  def load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets  # Slow import; only when a tabular set is loaded.

    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return np.asarray(x, dtype=np.float64), np.asarray(y)

  return load


# name -> (loader, is_classification)
TABULAR: dict[str, tuple[Callable[[], tuple[np.ndarray, np.ndarray]], bool]] = {
    "digits": (_sklearn_loader("digits"), True),
    "breast_cancer": (_sklearn_loader("breast_cancer"), True),
    "diabetes": (_sklearn_loader("diabetes"), False),
    "iris": (_sklearn_loader("iris"), True),
    "wine": (_sklearn_loader("wine"), True),
}


def split_indices(y: np.ndarray, *, stratify: bool, seed: int = SEED, test_fraction: float = TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
  """Deterministic (train, test) index arrays; per class when ``stratify``; each shuffled."""
  rng = np.random.default_rng(seed)
  groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(len(y))]
  train, test = [], []
  for group in groups:
    group = rng.permutation(group)
    n_test = int(round(test_fraction * len(group)))
    test.append(group[:n_test])
    train.append(group[n_test:])
  return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _standardize(train: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  mean = train.mean(axis=0)
  std = train.std(axis=0)
  std = np.where(std > 0, std, 1.0)
  return (train - mean) / std, (other - mean) / std, mean, std


@functools.cache
def _build(name: str) -> tuple[dict[str, dict[str, np.ndarray]], tuple[float, float] | None]:
  loader, classification = TABULAR[name]
  x, y = loader()
  train_idx, test_idx = split_indices(y, stratify=classification)
  x_train, x_test, _, _ = _standardize(x[train_idx], x[test_idx])
  stats = None
  if classification:
    y_train, y_test = y[train_idx].astype(np.int32), y[test_idx].astype(np.int32)
  else:
    y_train, y_test, mean, std = _standardize(y[train_idx].astype(np.float64), y[test_idx].astype(np.float64))
    y_train, y_test = y_train.astype(np.float32), y_test.astype(np.float32)
    stats = (float(mean), float(std))
  splits = {
      "train": {"inputs": x_train.astype(np.float32), "label": y_train},
      "test": {"inputs": x_test.astype(np.float32), "label": y_test},
  }
  for arrays in splits.values():
    for a in arrays.values():
      a.flags.writeable = False  # Memoized: load() hands out copies.
  return splits, stats


def load_splits(name: str) -> dict[str, dict[str, np.ndarray]]:
  """``{"train": {"inputs", "label"}, "test": {...}}`` for tabular dataset ``name`` (fresh copies)."""
  splits, _ = _build(name)
  return {s: {k: v.copy() for k, v in arrays.items()} for s, arrays in splits.items()}


def target_stats(name: str) -> tuple[float, float]:
  """(mean, std) of a regression dataset's train targets, used to standardize its labels.

  ``original = label * std + mean``.

  Raises:
    ValueError: ``name`` is not a tabular regression dataset.
  """
  if name not in TABULAR or TABULAR[name][1]:
    regression = [n for n, (_, cls) in TABULAR.items() if not cls]
    raise ValueError(f"target_stats: {name!r} is not a tabular regression dataset; expected one of {regression}")
  _, stats = _build(name)
  assert stats is not None
  return stats
