"""Loss combinators: weighted sums of heads, regularized objectives."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jdl.losses._helpers import LossFn, Regularizer, masked_mean
from jdl.losses.registry import get


def head_target(batch: Mapping[str, Any], head: str, fn: str = "head_target") -> Any:
  """The targets of output ``head`` of a multi-output model.

  ``batch["label"][head]`` when ``batch["label"]`` is a dict; otherwise the
  batch's own array named ``head`` (a flat batch such as ``{"inputs", "cultivar",
  "alcohol"}``, as datasets and the training pipeline hold them).

  Raises:
    ValueError: neither exists (the message lists what the batch has).
  """
  labels = batch.get("label")
  if isinstance(labels, Mapping):
    if head in labels:
      return labels[head]
    raise ValueError(f"{fn}: batch['label'] has no target for output {head!r}; it has {sorted(labels)}")
  if head in batch:
    return batch[head]
  raise ValueError(f"{fn}: no target for output {head!r}: expected batch['label'] to be a dict with key {head!r} "
                   f"or the batch to hold an array {head!r}; the batch has {sorted(batch)}")


class WeightedLoss:
  r"""Weighted sum of per-head losses for a model with several outputs.

  .. math:: \ell_i = \sum_k w_k\, \ell^{(k)}_i

  The model's ``outputs`` are a dict ``{head: array}``; each head's targets are
  ``batch["label"][head]`` when ``batch["label"]`` is a dict, else the batch's
  array named ``head`` (:func:`head_target`) — Keras's ``loss={...},
  loss_weights={...}``. ``batch["mask"]``, when present, is shared by every
  head. Each head's loss sees the sub-batch ``{"label": <its targets>,
  "mask": batch["mask"]}``.

  Build it with :func:`weighted`. Calling it gives the per-example total
  ``[B]``; :meth:`per_head` gives ``{head: [B]}`` (unweighted) for logging and
  :meth:`with_heads` both at once.
  """

  def __init__(self, losses: Mapping[str, str | LossFn], weights: Mapping[str, float] | None = None):
    if not isinstance(losses, Mapping) or not losses:
      raise ValueError(f"weighted: losses must be a non-empty dict {{head: loss or name}}, got {losses!r}")
    weights = dict(weights or {})
    extra = sorted(set(weights) - set(losses))
    if extra:
      raise ValueError(
          f"weighted: weights has head(s) {', '.join(extra)} with no loss; heads with a loss: "
          f"{', '.join(sorted(losses))}")
    self.losses: dict[str, LossFn] = {head: get(fn) for head, fn in losses.items()}
    self.weights: dict[str, float] = {head: float(weights.get(head, 1.0)) for head in losses}

  def _sub_batch(self, head: str, batch: Mapping[str, Any]) -> dict[str, Any]:
    sub = {"label": head_target(batch, head, "weighted")}
    if batch.get("mask") is not None:
      sub["mask"] = batch["mask"]
    return sub

  def per_head(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Each head's unweighted per-example loss, ``{head: [B]}``."""
    if not isinstance(outputs, Mapping):
      raise ValueError(f"weighted: outputs must be a dict {{head: array}}, got {type(outputs).__name__}")
    missing = sorted(set(self.losses) - set(outputs))
    if missing:
      raise ValueError(f"weighted: outputs lack head(s) {', '.join(missing)}; outputs have {sorted(outputs)}")
    return {head: fn(outputs[head], self._sub_batch(head, batch)) for head, fn in self.losses.items()}

  def with_heads(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The weighted per-example total and the per-head values."""
    heads = self.per_head(outputs, batch)
    shapes = {head: value.shape for head, value in heads.items()}
    if len(set(shapes.values())) > 1:
      raise ValueError(f"weighted: per-example losses of the heads differ in shape: {shapes}")
    total = sum(self.weights[head] * value for head, value in heads.items())
    return total, heads

  def __call__(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> jax.Array:
    return self.with_heads(outputs, batch)[0]


def weighted(losses: Mapping[str, str | LossFn], weights: Mapping[str, float] | None = None) -> WeightedLoss:
  """A multi-output loss: ``Σ_k weights[k] · losses[k]`` per example.

  Args:
    losses: ``{head: loss}``, each a registered name or an
      ``(outputs, batch) -> per-example`` function (``get(name, **options)``
      for options).
    weights: ``{head: weight}``; heads left out weigh 1.

  Returns:
    a :class:`WeightedLoss`, itself a ``(outputs, batch) -> [B]`` loss.

  Example:
    >>> loss_fn = weighted({"cls": "sparse_categorical_crossentropy", "box": "mse"}, {"box": 0.5})
    >>> outputs = {"cls": jnp.zeros((2, 3)), "box": jnp.ones((2, 4))}
    >>> batch = {"label": {"cls": jnp.array([0, 1]), "box": jnp.zeros((2, 4))}}
    >>> total, heads = loss_fn.with_heads(outputs, batch)
    >>> total.shape, sorted(heads)
    ((2,), ['box', 'cls'])
  """
  return WeightedLoss(losses, weights)


def with_heads(loss_fn: LossFn, outputs: Any, batch: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
  """``(per-example loss, {head: per-example loss})``: the heads of a :class:`WeightedLoss`, else none."""
  if isinstance(loss_fn, WeightedLoss):
    return loss_fn.with_heads(outputs, batch)
  return loss_fn(outputs, batch), {}


def with_regularizer(loss_fn: str | LossFn, regularizer: Regularizer | None = None, *,
                     reduce: Callable[[jax.Array, Any], jax.Array] | None = None,
                     ) -> Callable[[Any, Any, Mapping[str, Any]], tuple[jax.Array, dict[str, jax.Array]]]:
  r"""The training objective: the masked batch mean of a loss plus a parameter penalty.

  .. math:: J(\theta) = \frac{\sum_i m_i \ell_i}{\sum_i m_i} + R(\theta)

  The penalty is added once per batch, not per example. Under ``pmap`` each
  device adds :math:`R/n` (the train step scales the regularizer by its share)
  and the gradients are summed over the :math:`n` devices, so :math:`\nabla R`
  counts once. This is the objective
  ``jdl.train.make_train_step`` differentiates.

  Args:
    loss_fn: a registered name or an ``(outputs, batch) -> [B]`` loss. A
      :class:`WeightedLoss` (several outputs) also reports each head's loss.
    regularizer: ``params -> scalar`` (e.g. ``jdl.regularizers.l2(1e-4)``) or
      ``None``.
    reduce: ``(values_B, mask_B) -> scalar``, how per-example values become
      the batch's value (default :func:`masked_mean`; the train step passes a
      cross-device mean under ``pmap``).

  Returns:
    ``objective(params, outputs, batch) -> (total, aux)`` with ``aux``
    holding ``"loss"`` (the data term), ``"regularization"`` (only with a
    regularizer) and ``"loss/<head>"`` for each head of a ``WeightedLoss``
    (unweighted); ready for ``jax.value_and_grad(..., has_aux=True)`` once
    ``outputs`` is computed from ``params`` inside the differentiated
    function.

  Example:
    >>> import jdl.regularizers
    >>> objective = with_regularizer("mse", jdl.regularizers.l2(0.1))
    >>> params = {"kernel": jnp.array([1.0, 2.0])}
    >>> total, aux = objective(params, jnp.array([1.0]), {"label": jnp.array([0.0])})
    >>> float(total), float(aux["regularization"])  # 1 + 0.1 / 2 * 5
    (1.25, 0.25)
  """
  loss_fn = get(loss_fn)
  if regularizer is not None and not callable(regularizer):
    raise TypeError(f"with_regularizer: regularizer must be callable params -> scalar or None, got {regularizer!r}")
  reduce = masked_mean if reduce is None else reduce

  def objective(params: Any, outputs: Any, batch: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
    mask = batch.get("mask")
    per_example, heads = with_heads(loss_fn, outputs, batch)
    aux: dict[str, jax.Array] = {f"loss/{head}": reduce(values, mask) for head, values in heads.items()}
    data_loss = reduce(per_example, mask)
    aux["loss"] = data_loss
    if regularizer is None:
      return data_loss, aux
    penalty = jnp.asarray(regularizer(params))
    if penalty.shape != ():
      raise ValueError(f"with_regularizer: the regularizer must return a scalar, got shape {penalty.shape}")
    aux["regularization"] = penalty
    return data_loss + penalty, aux

  return objective
