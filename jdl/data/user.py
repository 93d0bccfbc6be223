"""Your own data: ``jdl.data.register`` for arrays in memory or a function returning them, and ``npz:PATH``.

    import numpy as np, jdl
    x, y = make_moons(...)                          # any arrays
    jdl.data.register("two_moons", {"train": (x[:800], y[:800]), "test": (x[800:], y[800:])},
                      class_names=("upper", "lower"))

Then ``config.data.name = "two_moons"`` trains on it through ``jdl train``
(``--import my_data.py``), with the splits you gave and slices of them
(``train[:90%]``). ``config.data.name = "npz:PATH"`` reads a ``.npz`` file
laid out as Keras' ``mnist.npz``: ``x_train``, ``y_train``, ``x_test``,
``y_test`` (any split names), with no Python at all.
"""

from __future__ import annotations

import os
import pathlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from jdl.data import catalog
from jdl.data.catalog import DatasetInfo

Arrays = dict[str, np.ndarray]
Source = Mapping[str, Any] | Callable[[], Mapping[str, Any]]

_LOADED: dict[str, dict[str, Arrays]] = {}
_LOCK = threading.Lock()
NPZ_PREFIX = "npz:"


def _as_split(where: str, split: str, value: Any, input_key: str | None, label_key: str) -> Arrays:
  """One split as ``{input_key: array, label_key: array}``, from a dict or an ``(x, y)`` pair."""
  if isinstance(value, tuple) and len(value) == 2:
    x, y = value
    value = {input_key or "inputs": x, label_key: y}
  if not isinstance(value, Mapping):
    raise TypeError(f"{where}: split {split!r}: expected a dict of arrays or an (inputs, labels) pair, "
                    f"got {type(value).__name__}")
  arrays = {str(k): np.asarray(v) for k, v in value.items()}
  if label_key not in arrays:
    raise ValueError(f"{where}: split {split!r} has no label key {label_key!r}; its keys: {', '.join(arrays)} "
                     "(name the targets' key with label_key=)")
  lengths = {k: len(a) if a.ndim else None for k, a in arrays.items()}
  if len(set(lengths.values())) != 1 or None in lengths.values():
    raise ValueError(f"{where}: split {split!r}: every array needs the same leading (example) axis, got lengths "
                     f"{lengths}")
  if not next(iter(lengths.values())):
    raise ValueError(f"{where}: split {split!r} has no examples")
  return arrays


def _input_key(where: str, arrays: Arrays, input_key: str | None, label_key: str) -> str:
  if input_key is not None:
    if input_key not in arrays:
      raise ValueError(f"{where}: input_key {input_key!r} is not among the arrays' keys {', '.join(arrays)}")
    return input_key
  others = [k for k in arrays if k != label_key]
  if len(others) != 1:
    raise ValueError(f"{where}: cannot tell the inputs' key among {', '.join(others)}; pass input_key=")
  return others[0]


def _standard(arrays: Arrays, input_key: str, label_key: str, classification: bool) -> Arrays:
  """jdl's dtypes: uint8 images stay uint8, other inputs float32; int32 class ids or float32 targets."""
  out = dict(arrays)
  x = arrays[input_key]
  out[input_key] = x if x.dtype == np.uint8 else x.astype(np.float32)
  if x.dtype == np.uint8 and x.ndim == 3:  # (N, H, W) grayscale: one channel
    out[input_key] = x[..., None]
  y = arrays[label_key]
  out[label_key] = y.astype(np.int32) if classification else y.astype(np.float32)
  return out


def _build_info(where: str, name: str, by_split: Mapping[str, Any], *, input_key: str | None, label_key: str,
                task: str | None, num_classes: int | None, class_names: Any, description: str
                ) -> tuple[DatasetInfo, dict[str, Arrays]]:
  if not isinstance(by_split, Mapping) or not by_split:
    raise TypeError(f"{where}: expected a dict of splits such as {{'train': (x, y), 'test': (x, y)}}, got "
                    f"{type(by_split).__name__} {by_split!r}"[:300])
  raw = {str(s): _as_split(where, str(s), v, input_key, label_key) for s, v in by_split.items()}
  first = next(iter(raw.values()))
  key = _input_key(where, first, input_key, label_key)
  y_all = np.concatenate([a[label_key].reshape(len(a[label_key]), -1)[:, 0] if a[label_key].ndim > 1
                          else a[label_key] for a in raw.values()])
  integral = np.issubdtype(y_all.dtype, np.integer) or y_all.dtype == bool
  if task is None:
    task = "classification" if integral else "regression"
  if task not in ("classification", "regression"):
    raise ValueError(f"{where}: task must be 'classification' or 'regression', got {task!r}")
  if task == "classification":
    if not integral and not np.all(np.mod(y_all, 1) == 0):
      raise ValueError(f"{where}: a classification dataset needs integer class ids in {label_key!r}, got dtype "
                       f"{y_all.dtype} with fractional values")
    if y_all.size and y_all.min() < 0:
      raise ValueError(f"{where}: class ids must be >= 0, got {int(y_all.min())}")
    seen = int(y_all.max()) + 1 if y_all.size else 0
    if class_names is not None:
      class_names = tuple(str(c) for c in class_names)
    if num_classes is None:
      num_classes = len(class_names) if class_names else seen
    if seen > num_classes:
      raise ValueError(f"{where}: labels reach class {seen - 1} but num_classes is {num_classes}")
    if class_names is not None and len(class_names) != num_classes:
      raise ValueError(f"{where}: {len(class_names)} class_names for {num_classes} classes")
  else:
    num_classes = None
  arrays = {s: _standard(a, key, label_key, task == "classification") for s, a in raw.items()}
  for s, a in arrays.items():
    if a[key].shape[1:] != arrays[next(iter(arrays))][key].shape[1:]:
      raise ValueError(f"{where}: split {s!r}'s inputs have shape {a[key].shape[1:]}, the first split's "
                       f"{arrays[next(iter(arrays))][key].shape[1:]}")
    if label_key != "label":  # jdl's losses and metrics read the targets under "label"
      a["label"] = a.pop(label_key)
  info = DatasetInfo(name=name, input_key=key, input_shape=tuple(next(iter(arrays.values()))[key].shape[1:]),
                     num_classes=num_classes, task=task, splits={s: len(a["label"]) for s, a in arrays.items()},
                     class_names=class_names, description=description or "registered with jdl.data.register")
  for a in arrays.values():
    for v in a.values():
      v.flags.writeable = False  # kept: load() hands out copies
  return info, arrays


def register(name: str, data: Source, *, input_key: str | None = None, label_key: str = "label",
             task: str | None = None, num_classes: int | None = None, class_names: Any = None,
             description: str = "", image_size: Any = None, overwrite: bool = False) -> DatasetInfo:
  """Registers a dataset of your own under ``name``; ``jdl.data.load``, ``jdl train`` and every command find it.

  Args:
    name: the name ``config.data.name`` uses.
    data: ``{split: (inputs, labels)}`` or ``{split: {key: array}}`` (any split
      names: ``train``, ``test``, ``validation``...), or a function returning
      that, called once, here; or a TFDS ``DatasetBuilder`` (prepared as
      array_record if it is not, then read without TensorFlow: its supervised
      input, or its one image, and its ClassLabel; ``jdl.data.external``).
    input_key: the key of the inputs (default: the one key besides
      ``label_key``; ``"inputs"`` for ``(x, y)`` pairs).
    label_key: the key of the targets (loaded as ``"label"``).
    task: ``"classification"`` or ``"regression"`` (default: classification
      for integer labels).
    num_classes: default: ``len(class_names)``, else the largest label + 1.
    class_names: the classes' names in label order (shown in reports).
    description: a sentence for ``jdl list datasets`` and reports.
    image_size: a builder's images resized to this side or ``(height, width)``
      (needed when their sizes vary).
    overwrite: replace a dataset of that name (a built-in one too).

  Returns:
    the dataset's ``DatasetInfo``.

  Raises:
    TypeError, ValueError: malformed arrays, a missing label key, labels out
      of range, a name already taken (without ``overwrite``).

  Inputs are kept as given when uint8 (images; ``(N, H, W)`` gains a channel
  axis) and as float32 otherwise; the splits are not shuffled, split or
  standardised for you: slices such as ``train[:90%]`` apply to them as given.
  """
  where = f"jdl.data.register({name!r})"
  if not isinstance(name, str) or not name or name.startswith(NPZ_PREFIX):
    raise TypeError(f"jdl.data.register: name must be a non-empty string not starting with {NPZ_PREFIX!r}, "
                    f"got {name!r}")
  options = dict(input_key=input_key, label_key=label_key, task=task, num_classes=num_classes,
                 class_names=class_names, description=description)
  from jdl.data import external  # pylint: disable=g-import-not-at-top

  external.check_image_size(image_size, where)
  if external.is_builder(data):
    data, names = external.builder_splits(data, image_size=image_size, where=where)
    options["class_names"] = class_names if class_names is not None else names
    options["input_key"] = input_key or next(k for k in next(iter(data.values())) if k != "label")
  elif image_size is not None:
    raise ValueError(f"{where}: image_size applies to a TFDS builder's images; resize arrays yourself")
  elif callable(data) and not isinstance(data, Mapping):
    try:
      data = data()
    except Exception as e:
      raise type(e)(f"{where}: the data function raised: {e}") from e
  info, arrays = _build_info(where, name, data, **options)
  catalog._register("memory", info, overwrite=overwrite)  # pylint: disable=protected-access
  with _LOCK:
    _LOADED[name] = arrays
  return info


def load_splits(name: str) -> dict[str, Arrays]:
  """The registered splits of ``name`` (fresh copies)."""
  with _LOCK:
    if name.startswith(NPZ_PREFIX):
      ensure_npz(name)
    arrays = _LOADED[name]
  return {s: {k: v.copy() for k, v in a.items()} for s, a in arrays.items()}


def ensure_npz(name: str) -> None:
  """Registers ``npz:PATH`` the first time it is named (``x_SPLIT``/``y_SPLIT`` arrays, as Keras' mnist.npz)."""
  if name in catalog.CATALOG and name in _LOADED:
    return
  path = pathlib.Path(os.path.expanduser(name[len(NPZ_PREFIX):]))
  where = f"data.name={name!r}"
  if not path.is_file():
    raise FileNotFoundError(f"{where}: no such file {str(path)!r}")
  try:
    with np.load(path, allow_pickle=False) as f:
      stored = {k: f[k] for k in f.files}
  except (OSError, ValueError) as e:
    raise ValueError(f"{where}: {str(path)!r} is not a readable .npz file ({e})") from None
  by_split: dict[str, dict[str, np.ndarray]] = {}
  for key, array in stored.items():
    head, sep, split = key.partition("_")
    if not sep or head not in ("x", "y") or not split:
      raise ValueError(f"{where}: array {key!r} is not named x_SPLIT or y_SPLIT (as x_train, y_train, x_test, "
                       f"y_test); the file holds: {', '.join(stored)}")
    by_split.setdefault(split, {})["inputs" if head == "x" else "label"] = array
  for split, arrays in by_split.items():
    if len(arrays) != 2:
      raise ValueError(f"{where}: split {split!r} needs both x_{split} and y_{split}; the file holds: "
                       f"{', '.join(stored)}")
  images = all(a["inputs"].dtype == np.uint8 and a["inputs"].ndim in (3, 4) for a in by_split.values())
  if images:
    by_split = {s: {"image": a["inputs"], "label": a["label"]} for s, a in by_split.items()}
  info, arrays = _build_info(where, name, by_split, input_key=None, label_key="label", task=None, num_classes=None,
                             class_names=None, description=f"the arrays of {path.name}")
  catalog._register("memory", info)  # pylint: disable=protected-access
  _LOADED[name] = arrays
