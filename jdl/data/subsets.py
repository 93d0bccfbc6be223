"""Subsets of a classification dataset: some of its classes, and a few labelled examples per class.

``config.data.classes = (5, 6, 7, 8, 9)`` keeps those classes in every split,
renumbered 0..k-1 in the order given (their names follow);
``config.data.train_per_class = 10`` keeps 10 training examples of each class,
drawn with the run's seed (the eval and test splits stay whole). Together they
make the few-label transfer tasks of docs/transfer.md from one dataset.

>>> import numpy as np
>>> arrays = {"image": np.arange(6), "label": np.array([0, 1, 2, 1, 0, 2])}
>>> select_classes(arrays, (2, 0))["label"].tolist()
[1, 0, 1, 0]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jdl.data.catalog import DatasetInfo


def check_classes(classes: Any, info: DatasetInfo, where: str = "data.classes") -> tuple[int, ...]:
  """``classes`` as a tuple of distinct class ids of ``info``'s dataset (empty: all classes)."""
  if classes is None or (isinstance(classes, (tuple, list)) and not classes):
    return ()
  if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
    raise TypeError(f"{where}: expected a list of class ids, got {classes!r}")
  if info.task != "classification" or info.num_classes is None:
    raise ValueError(f"{where}: dataset {info.name!r} is a {info.task} dataset; only classes can be selected")
  names = info.class_names or ()
  out = []
  for c in classes:
    if isinstance(c, str) and c in names:
      c = names.index(c)
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= int(c) < info.num_classes:
      raise ValueError(f"{where}: expected class ids in [0, {info.num_classes}) or class names of {info.name!r}, "
                       f"got {c!r}")
    out.append(int(c))
  if len(set(out)) != len(out):
    raise ValueError(f"{where}: each class once, got {tuple(classes)!r}")
  return tuple(out)


def subset_info(info: DatasetInfo, classes: Sequence[int]) -> DatasetInfo:
  """``info`` of the dataset reduced to ``classes`` (renumbered in that order)."""
  if not classes:
    return info
  names = tuple(info.class_names[c] for c in classes) if info.class_names else None
  return dataclasses.replace(info, num_classes=len(classes), class_names=names)


def select_classes(arrays: Mapping[str, np.ndarray], classes: Sequence[int]) -> dict[str, np.ndarray]:
  """The examples of ``classes``, in their order in the split, labels renumbered to positions in ``classes``."""
  if not classes:
    return dict(arrays)
  labels = np.asarray(arrays["label"])
  lookup = np.full(max(int(labels.max(initial=0)), max(classes)) + 1, -1, np.int64)
  lookup[list(classes)] = np.arange(len(classes))
  keep = lookup[labels] >= 0
  out = {k: np.asarray(v)[keep] for k, v in arrays.items()}
  out["label"] = lookup[labels[keep]].astype(labels.dtype)
  return out


def per_class(arrays: Mapping[str, np.ndarray], count: int, seed: int, where: str = "data.train_per_class"
              ) -> dict[str, np.ndarray]:
  """``count`` examples of each class, drawn with ``seed``, kept in the split's order.

  Raises:
    ValueError: a class has fewer than ``count`` examples.
  """
  if not count:
    return dict(arrays)
  labels = np.asarray(arrays["label"])
  rng = np.random.default_rng(seed)
  chosen = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    if len(members) < count:
      raise ValueError(f"{where}: class {int(c)} has {len(members)} training examples, fewer than {count}")
    chosen.append(rng.choice(members, size=count, replace=False))
  keep = np.sort(np.concatenate(chosen))
  return {k: np.asarray(v)[keep] for k, v in arrays.items()}
