"""Pure train and eval steps.

``make_train_step`` binds a model, a loss and an optimizer into
``train_step(state, batch) -> (state, metrics)``: a pure function of arrays that
strategies compile (``jax.jit``, with or without shardings, or ``jax.pmap``) and
that ``lax.scan`` runs over a whole epoch. Nothing here is jitted: compiling is
the caller's decision, made once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jdl.train.state import TrainState

Batch = Mapping[str, jax.Array]
ExampleMetrics = Callable[[Any, Batch], dict[str, jax.Array]]


def scale_images(batch: Batch, input_key: str = "image") -> dict[str, jax.Array]:
  """Turns uint8 images into float32 in [0, 1]; other batches pass unchanged.

  Data stays uint8 on the device (4× less memory and transfer) and is converted
  inside the compiled step, where XLA fuses the conversion into the first layer.
  """
  batch = dict(batch)
  x = batch.get(input_key)
  if x is not None and x.dtype == jnp.uint8:
    batch[input_key] = x.astype(jnp.float32) / 255.0
  return batch


def accuracy(outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
  """Per-example top-1 correctness for integer-labelled classification."""
  return {"accuracy": (jnp.argmax(outputs, axis=-1) == batch["label"]).astype(jnp.float32)}


def no_metrics(outputs: Any, batch: Batch) -> dict[str, jax.Array]:
  del outputs, batch
  return {}


def masked_mean(values_B: jax.Array, mask_B: jax.Array | None) -> jax.Array:
  """Mean over the batch, counting only examples whose mask is 1."""
  if mask_B is None:
    return jnp.mean(values_B)
  mask_B = mask_B.astype(values_B.dtype)
  return jnp.sum(values_B * mask_B) / jnp.maximum(jnp.sum(mask_B), 1.0)


def _apply(apply_fn, params, model_state, x, *, train: bool, rng: jax.Array | None):
  """Calls the model; returns ``(outputs, updated model_state)``."""
  variables = {"params": params, **model_state}
  rngs = {"dropout": rng} if rng is not None else None
  mutable = list(model_state) if train else False
  if mutable:
    outputs, new_state = apply_fn(variables, x, train=True, rngs=rngs, mutable=mutable)
    return outputs, dict(new_state)
  return apply_fn(variables, x, train=train, rngs=rngs), model_state


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    apply_fn: Callable[..., Any],
    loss_fn: Callable[[Any, Batch], jax.Array],
    tx: optax.GradientTransformation,
    input_key: str = "image",
    example_metrics: ExampleMetrics = accuracy,
    regularizer: Callable[[Any], jax.Array] | None = None,
    axis_name: str | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer update; pure.

  The objective is the masked mean of the per-example loss, plus
  ``regularizer(params)`` when given. Gradients come from
  ``jax.value_and_grad``; with ``axis_name`` (pmap) they, the metrics and the
  batch statistics are averaged across that axis before the update.

  Returns:
    The new state and a dict of scalar metrics: ``loss`` (the data term),
    ``objective`` when a regularizer is present, and the batch means of
    ``example_metrics``.
  """
  batch = scale_images(batch, input_key)
  mask_B = batch.get("mask")
  rng = jax.random.fold_in(state.rng, state.step)

  def objective(params):
    outputs, model_state = _apply(apply_fn, params, state.model_state, batch[input_key], train=True, rng=rng)
    loss = masked_mean(loss_fn(outputs, batch), mask_B)
    total = loss + regularizer(params) if regularizer is not None else loss
    return total, (loss, outputs, model_state)

  (total, (loss, outputs, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
    model_state = jax.lax.pmean(model_state, axis_name)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)

  metrics = {"loss": loss}
  if regularizer is not None:
    metrics["objective"] = total
  for name, values_B in example_metrics(outputs, batch).items():
    metrics[name] = masked_mean(values_B, mask_B)
  if axis_name is not None:
    metrics = jax.lax.pmean(metrics, axis_name)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state)
  return new_state, metrics


def eval_step(
    state: TrainState,
    batch: Batch,
    *,
    apply_fn: Callable[..., Any],
    loss_fn: Callable[[Any, Batch], jax.Array],
    input_key: str = "image",
    example_metrics: ExampleMetrics = accuracy,
    axis_name: str | None = None,
) -> dict[str, jax.Array]:
  """Sums of the loss and metrics over the batch's unmasked examples, and their count.

  Sums rather than means, so batches (and devices) merge by addition and a
  padded last batch counts exactly its real examples.
  """
  batch = scale_images(batch, input_key)
  outputs, _ = _apply(apply_fn, state.params, state.model_state, batch[input_key], train=False, rng=None)
  per_example = {"loss": loss_fn(outputs, batch), **example_metrics(outputs, batch)}
  mask_B = batch.get("mask")
  if mask_B is None:
    mask_B = jnp.ones(per_example["loss"].shape[:1], jnp.float32)
  mask_B = mask_B.astype(jnp.float32)
  sums = {name: jnp.sum(values_B * mask_B) for name, values_B in per_example.items()}
  sums["count"] = jnp.sum(mask_B)
  if axis_name is not None:
    sums = jax.lax.psum(sums, axis_name)
  return sums


def make_train_step(**bound: Any) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
  """``train_step`` with its constants bound: ``(state, batch) -> (state, metrics)``."""
  return functools.partial(train_step, **bound)


def make_eval_step(**bound: Any) -> Callable[[TrainState, Batch], dict[str, jax.Array]]:
  """``eval_step`` with its constants bound: ``(state, batch) -> sums``."""
  return functools.partial(eval_step, **bound)
