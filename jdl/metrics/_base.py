"""The metric protocol (``Metric``: empty, update, merge, compute) and the helpers every metric shares."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any, Self

import jax
import jax.numpy as jnp
import numpy as np


AVERAGES = (None, "macro", "micro", "weighted", "binary")


class MetricWarning(UserWarning):
  """A metric is undefined on the data seen (e.g. AUROC with one class) or lost data."""


def _is_concrete(x: Any) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _warn_if(condition: Any, message: str) -> None:
  """Warns when ``condition`` is concretely true (silent under tracing)."""
  if _is_concrete(condition) and bool(np.any(np.asarray(condition))):
    warnings.warn(message, MetricWarning, stacklevel=3)


def _check_int(value: Any, name: str, fn: str, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f"{fn}: {name} must be an int, got {type(value).__name__} {value!r}")
  if value < minimum:
    raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value}")
  return int(value)


def _check_average(average: Any, fn: str, num_classes: int | None = None) -> None:
  if average not in AVERAGES:
    raise ValueError(f"{fn}: average must be one of {AVERAGES}, got {average!r}")
  if average == "binary" and num_classes is not None and num_classes != 2:
    raise ValueError(f"{fn}: average='binary' needs num_classes=2, got num_classes={num_classes}")


def _valid(mask: Any, batch_size: int, fn: str) -> jax.Array:
  """The ``[B]`` bool validity of a batch (True = real example)."""
  if mask is None:
    return jnp.ones((batch_size,), bool)
  mask = jnp.asarray(mask)
  if mask.shape != (batch_size,):
    raise ValueError(f"{fn}: mask must have shape ({batch_size},) (one entry per example), got {mask.shape}")
  return mask.astype(bool)


def _safe_div(num: Any, den: Any, xp: Any = jnp) -> Any:
  """``num / den``, 0 where ``den == 0`` (zero_division=0); ``xp`` is jnp or np."""
  return xp.where(den != 0, num / xp.where(den != 0, den, 1), 0.0)


def _class_predictions(outputs: Any, threshold: float, fn: str, num_classes: int | None = None) -> jax.Array:
  """Class ids ``[B]`` from ``[B, C]`` scores, ``[B]``/``[B, 1]`` binary scores or ids."""
  outputs = jnp.asarray(outputs)
  if outputs.ndim == 0:
    raise ValueError(f"{fn}: outputs must have a batch axis, got a scalar")
  if jnp.issubdtype(outputs.dtype, jnp.integer) or outputs.dtype == bool:
    if outputs.ndim != 1:
      raise ValueError(f"{fn}: integer outputs must be class ids of shape [B], got {outputs.shape}")
    return outputs.astype(jnp.int32)
  if outputs.ndim == 2 and outputs.shape[1] > 1:
    if num_classes is not None and outputs.shape[1] != num_classes:
      raise ValueError(
          f"{fn}: outputs have {outputs.shape[1]} classes (shape {outputs.shape}) but num_classes={num_classes}")
    return jnp.argmax(outputs, axis=-1).astype(jnp.int32)
  if outputs.ndim == 2:
    outputs = outputs[:, 0]
  if outputs.ndim != 1:
    raise ValueError(f"{fn}: outputs must be [B, C] scores, [B] or [B, 1] binary scores, got shape {outputs.shape}")
  if num_classes is not None and num_classes != 2:
    raise ValueError(f"{fn}: binary outputs of shape {outputs.shape} need num_classes=2, got num_classes={num_classes}")
  return (outputs > threshold).astype(jnp.int32)


def _class_labels(labels: Any, batch_size: int, fn: str) -> jax.Array:
  """Integer ids ``[B]`` from ids ``[B]``/``[B, 1]`` or one-hot ``[B, C]``."""
  labels = jnp.asarray(labels)
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  if labels.ndim == 2:
    labels = jnp.argmax(labels, axis=-1)
  if labels.shape != (batch_size,):
    raise ValueError(
        f"{fn}: labels must be class ids [B] or one-hot rows [B, C] with B={batch_size}, got shape {labels.shape}")
  return labels.astype(jnp.int32)


class Metric:
  """The protocol every metric state follows (see the module docstring).

  Subclasses are ``flax.struct`` dataclasses whose array fields are sums
  unless they override ``merge``/``merge_stacked``/``merge_across``.
  """

  @classmethod
  def empty(cls, **config: Any) -> Self:
    """The state before any data; ``config`` is the metric's static configuration."""
    raise NotImplementedError

  def update(self, outputs: Any, labels: Any, mask: Any = None) -> Self:
    """A new state that also counts this batch (``mask`` ``[B]``: 0 = padding, ignored)."""
    raise NotImplementedError

  def compute(self) -> Any:
    """The metric's value (an array, or a dict of arrays)."""
    raise NotImplementedError

  def _config(self) -> str:
    static = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
              if not f.metadata.get("pytree_node", True)]
    return f"{type(self).__name__}({', '.join(static)})"

  def _check_mergeable(self, other: Any) -> None:
    if type(other) is not type(self) or jax.tree.structure(other) != jax.tree.structure(self):
      other_config = other._config() if isinstance(other, Metric) else type(other).__name__
      raise ValueError(f"merge: cannot merge {self._config()} with a different metric or config: {other_config}")

  def merge(self, other: Self) -> Self:
    """The state of the union of both states' data."""
    self._check_mergeable(other)
    return jax.tree.map(jnp.add, self, other)

  def merge_stacked(self) -> Self:
    """Merges a state whose arrays carry a leading axis of per-device states."""
    return jax.tree.map(lambda x: jnp.sum(x, axis=0), self)

  def merge_across(self, axis_name: Any) -> Self:
    """Merges the per-device states of a ``shard_map``/``pmap`` axis (same result on every device)."""
    return jax.tree.map(lambda x: jax.lax.psum(x, axis_name), self)

  def _gather_and_fold(self, axis_name: Any) -> Self:
    return jax.lax.all_gather(self, axis_name, to="invarying").merge_stacked()


def _fold(stacked: Metric) -> Metric:
  n = jax.tree.leaves(stacked)[0].shape[0]
  parts = [jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(n)]
  result = parts[0]
  for part in parts[1:]:
    result = result.merge(part)
  return result


def _is_metric(x: Any) -> bool:
  return isinstance(x, Metric)


def merge_across(states: Any, axis_name: Any) -> Any:
  """``merge_across`` on every metric state in a pytree (e.g. a dict of states).

  Call it inside ``jax.shard_map`` / ``jax.pmap`` over the data axis after the
  per-device ``update``; every device then holds the global state.

  Example:
    >>> from jax.sharding import PartitionSpec as P
    >>> mesh = jax.make_mesh((jax.device_count(),), ("data",))
    >>> @jax.jit
    ... @jax.shard_map(mesh=mesh, in_specs=(P("data"), P("data")), out_specs=P())
    ... def evaluate(logits, labels):
    ...   return merge_across({"acc": Accuracy.empty().update(logits, labels)}, "data")
  """
  return jax.tree.map(lambda s: s.merge_across(axis_name), states, is_leaf=_is_metric)


def merge_stacked(states: Any) -> Any:
  """``merge_stacked`` on every metric state in a pytree (e.g. ``pmap`` outputs)."""
  return jax.tree.map(lambda s: s.merge_stacked(), states, is_leaf=_is_metric)


def update_all(states: Mapping[str, Metric], outputs: Any, labels: Any, mask: Any = None) -> dict[str, Metric]:
  """Updates every state of a dict with the same batch."""
  return {name: state.update(outputs, labels, mask) for name, state in states.items()}
