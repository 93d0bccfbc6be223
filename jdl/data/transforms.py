"""Named transforms of loaded splits: derived targets for a dataset (``config.data.transform``).

A transform is ``fn(arrays) -> arrays`` on one split's dict of numpy arrays
(``{"inputs", "label"}`` ...), applied by ``jdl train`` to every split after
loading; it must treat every split alike (no statistics of its own). Register
one from an experiment file, as models are registered, and name it in the
config::

    @jdl.data.transforms.register("digits_parity")
    def digits_parity(arrays):
      return {**arrays, "label": (arrays["label"] % 2).astype(np.int32)}

    config.data.transform = "digits_parity"
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

Transform = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]

TASKS = ("classification", "regression", "multilabel")
_TRANSFORMS: dict[str, Transform] = {}
_TASKS: dict[str, str] = {}


def register(name: str, *, task: str | None = None) -> Callable[[Transform], Transform]:
  """Registers ``fn(arrays) -> arrays`` under ``name`` (re-registering replaces it).

  Args:
    name: the name ``config.data.transform`` takes.
    task: what the transformed targets are, when not the dataset's own task
      (``jdl.data.DatasetInfo.task``): ``"classification"`` (integer labels),
      ``"regression"`` or ``"multilabel"`` (multi-hot rows). It decides the
      metric logged at every training step.
  """
  if not isinstance(name, str) or not name:
    raise TypeError(f"register: name must be a non-empty string, got {name!r}")
  if task is not None and task not in TASKS:
    raise ValueError(f"register({name!r}): task must be one of {', '.join(TASKS)} or None, got {task!r}")

  def decorator(fn: Transform) -> Transform:
    if not callable(fn):
      raise TypeError(f"register({name!r}): expected a function arrays -> arrays, got {fn!r}")
    _TRANSFORMS[name] = fn
    if task is None:
      _TASKS.pop(name, None)
    else:
      _TASKS[name] = task
    return fn

  return decorator


def task(name: str) -> str | None:
  """The task a registered transform declares (None: the dataset's own)."""
  get(name)
  return _TASKS.get(name)


def list_transforms() -> list[str]:
  return sorted(_TRANSFORMS)


def get(name: str) -> Transform:
  """The transform registered as ``name``.

  Raises:
    ValueError: unknown name (the message lists the registered ones).
  """
  if name not in _TRANSFORMS:
    raise ValueError(f"data.transform: unknown transform {name!r}; registered: "
                     f"{', '.join(list_transforms()) or 'none (register one with jdl.data.transforms.register)'}")
  return _TRANSFORMS[name]


def apply(name: str, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """``get(name)(arrays)``, checked: a dict of arrays sharing their first axis."""
  out = get(name)(arrays)
  if not isinstance(out, Mapping) or not out:
    raise TypeError(f"data.transform {name!r}: expected a non-empty dict of arrays, got {type(out).__name__}")
  out = {k: np.asarray(v) for k, v in out.items()}
  lengths = {k: v.shape[0] if v.ndim else None for k, v in out.items()}
  if len(set(lengths.values())) != 1 or None in lengths.values():
    raise ValueError(f"data.transform {name!r}: the arrays must share their first axis, got lengths {lengths}")
  return out
