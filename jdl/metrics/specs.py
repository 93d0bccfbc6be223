"""Metric specs: metrics named in a config (``"f1:macro"``), their options and log keys."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from jdl.metrics._base import Metric
from jdl.metrics.classification import PrecisionRecallF1
from jdl.metrics.registry import _accepted, _resolve, get, list_metrics


# Options the evaluation fills in from the batch when a spec leaves them out.
_INFERRED = ("num_classes", "capacity", "num_labels", "num_outputs")


_AVERAGE_WORDS = {"macro": "macro", "micro": "micro", "weighted": "weighted", "binary": "binary", "none": None}


def _spec_value(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare word such as macro


@dataclasses.dataclass(frozen=True)
class MetricSpec:
  """A metric named in a config: ``"[output/]name[:option,...]"``, parsed by :func:`parse_spec`.

  Attributes:
    text: the spec as written.
    name: the registry name (``f1``, ``auroc``, ``top5_accuracy``, ...).
    output: the model output it reads when the model returns a dict
      (``"alcohol/mae"``), else None.
    options: the options given, as ``(key, value)`` pairs.
    key: the name it is logged under: ``name``, ``name_{average}`` for
      averaged precision/recall/F1 (as :func:`collection`), then
      ``_{option}_{value}`` for each other option given with a value other
      than its default (``ece:num_bins=10`` → ``ece_num_bins_10``;
      ``accuracy:threshold=0.5`` → ``accuracy_threshold_0.5``), prefixed with
      ``output/``.
  """

  text: str
  name: str
  output: str | None
  options: tuple[tuple[str, Any], ...]
  key: str

  def create(self, outputs: Any, batch_size: int) -> Metric:
    """The empty state for a batch of ``outputs`` (``[B]``, ``[B, 1]`` or ``[B, K]``).

    Options the spec leaves out are read from the outputs: ``num_classes``
    (K, or 2 for one binary score), ``num_labels`` and ``num_outputs`` (K when
    K > 1), and a curve metric's ``capacity`` (``batch_size``: one state per
    batch, merged by concatenation).
    """
    factory, implied = _resolve(self.name)
    accepted = set(_accepted(factory)) - set(implied)
    options = dict(self.options)
    shape = tuple(np.shape(outputs))
    width = shape[1] if len(shape) == 2 else 1
    inferred = {"num_classes": width if width > 1 else 2, "capacity": int(batch_size)}
    if width > 1:
      inferred.update(num_labels=width, num_outputs=width)
    for key, value in inferred.items():
      if key in accepted and key not in options:
        options[key] = value
    return get(self.name, **options)


def parse_spec(text: str) -> MetricSpec:
  """Parses one metric spec: ``"[output/]name[:option,...]"``.

  ``name`` is any name :func:`get` takes. Options are ``key=value`` (a Python
  literal or a bare word: ``f1:average=weighted``, ``accuracy:threshold=0.5``)
  or one of the bare words ``macro``, ``micro``, ``weighted``, ``binary``,
  ``none``, short for ``average=...`` (``f1:macro``). ``output/`` picks one
  output of a model returning a dict (``alcohol/mae``); its targets are the
  batch's ``label[output]`` or, for flat batches, the array under ``output``.
  ``num_classes``, ``num_labels``, ``num_outputs`` and ``capacity`` are read
  from the data when left out (:meth:`MetricSpec.create`); ``capacity`` may
  not be given.

  Raises:
    ValueError: an unknown metric (the message lists the known ones), an
      option the metric does not take (it lists those it does), or a bad
      value — all before anything is traced.

  Example:
    >>> spec = parse_spec("cls/f1:macro")
    >>> spec.name, spec.output, spec.options, spec.key
    ('f1', 'cls', (('average', 'macro'),), 'cls/f1_macro')
  """
  if not isinstance(text, str) or not text.strip():
    raise ValueError(f"metrics: each metric must be a non-empty string such as 'f1:macro', got {text!r}")
  head, _, option_text = text.strip().partition(":")
  output, _, name = head.rpartition("/")
  output = output or None
  try:
    factory, implied = _resolve(name)
  except (TypeError, ValueError):
    raise ValueError(f"metrics: unknown metric {name!r} in {text!r}; known metrics: "
                     f"{', '.join(list_metrics())}") from None
  accepted = [k for k in _accepted(factory) if k not in implied]
  options: dict[str, Any] = {}
  for item in filter(None, (part.strip() for part in option_text.split(","))):
    key, eq, value = item.partition("=")
    if not eq:
      if item.lower() not in _AVERAGE_WORDS:
        raise ValueError(f"metrics: {text!r}: option {item!r} is neither key=value nor an average "
                         f"({', '.join(_AVERAGE_WORDS)})")
      key, parsed = "average", _AVERAGE_WORDS[item.lower()]
    else:
      key = key.strip()
      parsed = _spec_value(value.strip())
      if key == "average" and isinstance(parsed, str) and parsed.lower() in _AVERAGE_WORDS:
        parsed = _AVERAGE_WORDS[parsed.lower()]
    if key == "capacity":
      raise ValueError(f"metrics: {text!r}: capacity is set by the evaluation (one buffer per batch); "
                       "do not give it")
    if key not in accepted:
      raise ValueError(f"metrics: {text!r}: metric {name!r} takes no option {key!r}; it takes: "
                       f"{', '.join(k for k in accepted if k != 'capacity') or 'no options'}")
    options[key] = parsed
  # Build a state with stand-in values for what the data fills in: bad values fail now, not in a trace.
  stand_ins = {"num_classes": 2, "capacity": 1, "num_labels": 2}
  try:
    probe = get(name, **{k: v for k, v in stand_ins.items() if k in accepted and k not in options}, **options)
  except (TypeError, ValueError) as e:
    raise ValueError(f"metrics: {text!r}: {e}") from None
  key = name
  if isinstance(probe, PrecisionRecallF1) and probe.average is not None:
    key = f"{name}_{probe.average}"
  key += _option_suffix(factory, options)
  if output:
    key = f"{output}/{key}"
  return MetricSpec(text=text, name=name, output=output, options=tuple(options.items()), key=key)


# Options that never change a metric's log key: what the data fills in, and the average (precision, recall and
# F1 carry it in their key already; a per-label average=None is logged as name_0, name_1, ...).
_KEYLESS_OPTIONS = ("num_classes", "num_labels", "num_outputs", "capacity", "average")


def _option_suffix(factory: Callable[..., Any], options: Mapping[str, Any]) -> str:
  """``_key_value`` for each option given with a value other than the metric's default (``ece_num_bins_10``)."""
  params = inspect.signature(factory).parameters
  parts = []
  for key, value in options.items():
    default = params[key].default if key in params else inspect.Parameter.empty
    if key in _KEYLESS_OPTIONS or (default is not inspect.Parameter.empty and _same_value(value, default)):
      continue
    parts.append(f"_{key}_{value}")
  return "".join(parts)


def _same_value(a: Any, b: Any) -> bool:
  try:
    return bool(a == b) and type(a) is not bool and type(b) is not bool or a is b
  except (TypeError, ValueError):
    return False


def parse_specs(specs: str | Sequence[str | MetricSpec] | None) -> tuple[MetricSpec, ...]:
  """Parses a config's list of metric specs (:func:`parse_spec`); None or empty gives ``()``.

  Raises:
    ValueError: a bad spec, or two specs logged under the same key.
  """
  if specs is None:
    return ()
  if isinstance(specs, (str, MetricSpec)):
    specs = [specs]
  parsed = tuple(s if isinstance(s, MetricSpec) else parse_spec(s) for s in specs)
  seen: dict[str, str] = {}
  for spec in parsed:
    if spec.key in seen:
      raise ValueError(f"metrics: {seen[spec.key]!r} and {spec.text!r} are both logged as {spec.key!r}")
    seen[spec.key] = spec.text
  return parsed
