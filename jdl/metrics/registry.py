"""Metrics by name: the registry, ``get`` and ``collection``, computing and logging states."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from jdl.metrics._base import Metric
from jdl.metrics.classification import Accuracy, ConfusionMatrix, F1, Precision, PrecisionRecallF1, Recall, TopKAccuracy
from jdl.metrics.ranking import AUROC, AveragePrecision, PrecisionAtK, RecallAtK
from jdl.metrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score, RootMeanSquaredError
from jdl.registry import Registry


def _mean_average_precision(*, capacity: int, num_labels: int) -> AveragePrecision:
  """Mean average precision over ``num_labels`` labels (macro :class:`AveragePrecision`)."""
  return AveragePrecision.empty(capacity=capacity, num_labels=num_labels, average="macro")


def _check_metric(name: str, factory: Any, meta: Any) -> None:
  del meta
  if not callable(factory):
    raise TypeError(f"register: factory must be callable (options) -> an empty metric state, got {factory!r}")
  if name in _ALIASES or any(p.fullmatch(name) for p, _ in _PATTERNS):
    raise ValueError(f"register: {name!r} is a built-in metric's other name; choose another name")


_ALIASES = {"roc_auc": "auroc", "ap": "average_precision", "mean_average_precision": "map"}


_PATTERNS = ((re.compile(r"top(\d+)_accuracy"), "top_k_accuracy"),
             (re.compile(r"precision_at_(\d+)"), "precision_at_k"),
             (re.compile(r"recall_at_(\d+)"), "recall_at_k"))


METRICS: Registry[Callable[..., Metric]] = Registry("metric", check=_check_metric)


for _name, _factory in {
    "accuracy": Accuracy.empty,
    "top_k_accuracy": TopKAccuracy.empty,
    "confusion_matrix": ConfusionMatrix.empty,
    "precision": Precision.empty,
    "recall": Recall.empty,
    "f1": F1.empty,
    "precision_recall_f1": PrecisionRecallF1.empty,
    "auroc": AUROC.empty,
    "average_precision": AveragePrecision.empty,
    "map": _mean_average_precision,
    "precision_at_k": PrecisionAtK.empty,
    "recall_at_k": RecallAtK.empty,
    "mae": MeanAbsoluteError.empty,
    "mse": MeanSquaredError.empty,
    "rmse": RootMeanSquaredError.empty,
    "r2": R2Score.empty,
}.items():
  METRICS.register(_name, _factory)


METRICS.seal()


def register(name: str, factory: Callable[..., Metric] | None = None, *, overwrite: bool = False) -> Any:
  """Registers ``factory(**options) -> empty metric state`` under ``name``.

  The factory is usually the ``empty`` classmethod of your :class:`Metric`
  subclass (docs/extending.md writes expected calibration error this way)::

    jdl.metrics.register("ece", ExpectedCalibrationError.empty)

  or, as a decorator, on a function returning the empty state.

  Args:
    name: the name metric specs use (``config.metrics = ("ece:num_bins=10",)``).
    factory: the factory; omitted, ``register`` returns a decorator.
    overwrite: allow replacing an existing metric (a built-in one such as
      ``accuracy`` too); without it, a taken name is an error.

  Returns:
    ``factory`` (or a decorator that registers and returns it).
  """
  return METRICS.register(name, overwrite=overwrite) if factory is None else METRICS.register(
      name, factory, overwrite=overwrite)


def list_metrics() -> list[str]:
  """The registered metric names (plus the ``topK_accuracy``, ``precision_at_K``, ``recall_at_K`` forms)."""
  return sorted([*METRICS, *_ALIASES, "top<K>_accuracy", "precision_at_<K>", "recall_at_<K>"])


def _resolve(name: str) -> tuple[Callable[..., Metric], dict[str, Any]]:
  if not isinstance(name, str):
    raise TypeError(f"get: name must be a string, got {type(name).__name__} {name!r}")
  name = _ALIASES.get(name, name)
  if name in METRICS:
    return METRICS[name], {}
  for pattern, base in _PATTERNS:
    match = pattern.fullmatch(name)
    if match:
      return METRICS[base], {"k": int(match.group(1))}
  raise ValueError(f"get: unknown metric {name!r}; known metrics: {', '.join(list_metrics())}. A metric defined "
                   "in your own file is found once the file is imported (--import FILE, or config.imports)")


def _accepted(factory: Callable[..., Any]) -> list[str]:
  return [p.name for p in inspect.signature(factory).parameters.values()
          if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def get(name: str, **config: Any) -> Metric:
  """An empty metric state by name: ``get("f1", num_classes=10, average="macro")``.

  Names: ``accuracy``, ``top_k_accuracy`` (``k``) or ``top5_accuracy``,
  ``confusion_matrix``, ``precision``/``recall``/``f1``/``precision_recall_f1``
  (``num_classes``, ``average``), ``auroc``/``roc_auc``, ``average_precision``,
  ``map`` (``capacity``, ``num_labels``), ``precision_at_k``/``recall_at_k``
  (``k``) or ``precision_at_5``, ``mae``, ``mse``, ``rmse``, ``r2``
  (``num_outputs``).

  Raises:
    ValueError: unknown name (the message lists the known ones).
    TypeError: a missing or unknown option (the message lists the accepted ones).

  Example:
    >>> get("top5_accuracy").k
    5
  """
  factory, implied = _resolve(name)
  clash = sorted(set(implied) & set(config))
  if clash:
    raise TypeError(f"get: metric {name!r} fixes {clash[0]} by its name; do not also pass it")
  accepted = _accepted(factory)
  try:
    inspect.signature(factory).bind(**implied, **config)
  except TypeError as e:
    raise TypeError(f"get: bad options for metric {name!r} ({e}); it takes: {', '.join(accepted)}") from None
  return factory(**implied, **config)


def collection(names: Sequence[str], **config: Any) -> dict[str, Metric]:
  """Empty states for several metrics sharing a config, keyed by logging name.

  Each metric receives the options of ``config`` it accepts. Keys are the
  names, with ``_{average}`` appended for averaged precision/recall/F1 —
  ``collection(["accuracy", "f1"], num_classes=10, average="macro")`` gives
  ``{"accuracy": ..., "f1_macro": ...}``.

  Raises:
    TypeError: an option none of the metrics takes.

  Example:
    >>> sorted(collection(["precision", "recall"], num_classes=4, average="weighted"))
    ['precision_weighted', 'recall_weighted']
  """
  states: dict[str, Metric] = {}
  used: set[str] = set()
  for name in names:
    factory, implied = _resolve(name)
    accepted = set(_accepted(factory)) - set(implied)
    options = {key: value for key, value in config.items() if key in accepted}
    used |= set(options)
    state = get(name, **options)
    key = name
    if isinstance(state, PrecisionRecallF1) and state.average is not None:
      key = f"{name}_{state.average}"
    states[key] = state
  unused = sorted(set(config) - used)
  if unused:
    raise TypeError(f"collection: no metric among {list(names)} takes option(s) {', '.join(unused)}")
  return states


def _flatten(name: str, value: Any, out: dict[str, float], class_names: Sequence[str] | None) -> None:
  if isinstance(value, Mapping):
    for key, sub in value.items():
      _flatten(f"{name}_{key}", sub, out, class_names)
    return
  array = np.asarray(value, dtype=np.float64)
  if array.ndim == 0:
    out[name] = float(array)
    return
  for index in np.ndindex(*array.shape):
    parts = [class_names[i] if class_names is not None and array.ndim == 1 and len(class_names) == array.shape[0]
             else str(i) for i in index]
    out[f"{name}_{'_'.join(parts)}"] = float(array[index])


def compute_all(states: Mapping[str, Metric], *, class_names: Sequence[str] | None = None) -> dict[str, float]:
  """Computes every state into one flat ``{name: float}`` dict for logging.

  Scalars keep their key; dict results become ``{key}_{field}``; per-class
  arrays ``{key}_{class}`` (``class_names`` or the index); matrices
  ``{key}_{i}_{j}``.

  Example:
    >>> import jax.numpy as jnp
    >>> states = {"acc": Accuracy.empty().update(jnp.array([1, 0]), jnp.array([1, 1]))}
    >>> compute_all(states)
    {'acc': 0.5}
  """
  out: dict[str, float] = {}
  for name, state in states.items():
    if not isinstance(state, Metric):
      raise TypeError(f"compute_all: {name!r} is not a metric state, got {type(state).__name__}")
    _flatten(name, state.compute(), out, class_names)
  return out
