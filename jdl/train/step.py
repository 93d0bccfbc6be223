"""Pure train and eval steps.

``make_train_step`` binds a model, a loss and an optimizer into
``train_step(state, batch) -> (state, metrics)``: a pure function of arrays that
strategies compile (``jax.jit``, with or without shardings, or one copy per
device under ``pmap``) and that ``lax.scan`` runs over a whole epoch. Nothing
here is jitted: compiling is the caller's decision, made once.

Mixed precision (``precision=``, a ``jdl.train.precision.Policy`` or its name):
the float32 master parameters and the inputs are cast to the compute dtype
inside the step, the outputs and the loss back to float32; gradients arrive in
float32 (the transpose of a cast casts back). With float16 the state carries a
``DynamicLossScale`` (``with_loss_scale``): the loss is scaled before
differentiation, non-finite steps are skipped and the scale adapts.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jdl import losses as losses_lib
from jdl import metrics as metrics_lib
from jdl.train import precision as precision_lib
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


@flax.struct.dataclass
class LossScaledTrainState(TrainState):
  """A ``TrainState`` that also carries float16's dynamic loss scale.

  Part of the pytree, so it is donated, sharded and checkpointed with the rest
  of the state: a resumed float16 run continues with the scale it had.
  """

  loss_scale: precision_lib.DynamicLossScale


def with_loss_scale(state: TrainState,
                    loss_scale: precision_lib.DynamicLossScale | None = None) -> LossScaledTrainState:
  """``state`` plus a loss scale (default ``DynamicLossScale.create()``), for float16 training."""
  if not isinstance(state, TrainState):
    raise TypeError(f"state: expected a TrainState, got {type(state).__name__}")
  fields = {name: getattr(state, name) for name in ("step", "params", "opt_state", "model_state", "rng")}
  return LossScaledTrainState(**fields, loss_scale=loss_scale or precision_lib.DynamicLossScale.create())


# Layers whose inputs are cast to the compute dtype. Models may upcast their
# input (``jnp.asarray(x, jnp.float32)``); without this, a bfloat16 kernel
# meeting a float32 input would promote the matmul back to float32.
_COMPUTE_LAYERS = (nn.Dense, nn.DenseGeneral, nn.Conv, nn.ConvTranspose, nn.ConvLocal, nn.Einsum)


def _compute_dtype_interceptor(dtype: jnp.dtype):
  def interceptor(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and isinstance(context.module, _COMPUTE_LAYERS):
      args = tuple(x.astype(dtype) if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating) else x
                   for x in args)
    return next_fun(*args, **kwargs)

  return interceptor


def _sync_batch_norm_interceptor(axis_name: str):
  """Makes every BatchNorm without an ``axis_name`` average its statistics over ``axis_name``.

  Under ``pmap`` each device sees a slice of the batch; without this its
  BatchNorm would normalise with the slice's statistics, not the batch's.
  Models need not know which strategy runs them.
  """

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != "__call__" or not isinstance(module, nn.BatchNorm) or module.axis_name is not None:
      return next_fun(*args, **kwargs)
    # The bound module is this apply's own copy; set the field for this call only.
    object.__setattr__(module, "axis_name", axis_name)
    try:
      return next_fun(*args, **kwargs)
    finally:
      object.__setattr__(module, "axis_name", None)

  return interceptor


def _apply(apply_fn, params, model_state, x, *, train: bool, rng: jax.Array | None,
           policy: precision_lib.Policy | None = None, axis_name: str | None = None):
  """Calls the model; returns ``(outputs, updated model_state)``.

  With a 16-bit ``policy`` the parameters and input are cast to its compute
  dtype and the outputs to its output dtype; the model state (BatchNorm
  statistics) stays float32.
  """
  with contextlib.ExitStack() as stack:
    if policy is not None and policy.compute_dtype != jnp.float32:
      params, x = policy.cast_to_compute((params, x))
      stack.enter_context(nn.intercept_methods(_compute_dtype_interceptor(policy.compute_dtype)))
    if axis_name is not None and train:
      stack.enter_context(nn.intercept_methods(_sync_batch_norm_interceptor(axis_name)))
    variables = {"params": params, **model_state}
    rngs = {"dropout": rng} if rng is not None else None
    mutable = list(model_state) if train else False
    if mutable:
      outputs, new_state = apply_fn(variables, x, train=True, rngs=rngs, mutable=mutable)
      new_state = dict(new_state)
    else:
      outputs, new_state = apply_fn(variables, x, train=train, rngs=rngs), model_state
  if policy is not None and policy.compute_dtype != jnp.float32:
    outputs = policy.cast_to_output(outputs)
  return outputs, new_state


def _policy(precision: precision_lib.Policy | str | None) -> precision_lib.Policy | None:
  """The policy, or None when computation stays in float32 (the unchanged fast path)."""
  if precision is None:
    return None
  if not isinstance(precision, (str, precision_lib.Policy)):
    raise TypeError(f"precision: expected a Policy or a policy name such as 'mixed_bfloat16', got {precision!r}")
  policy = precision_lib.get_policy(precision)
  return None if policy.compute_dtype == jnp.float32 else policy


def _loss_scale(state: TrainState, policy: precision_lib.Policy | None) -> precision_lib.DynamicLossScale | None:
  if policy is None or not policy.needs_loss_scaling:
    return None
  loss_scale = getattr(state, "loss_scale", None)
  if not isinstance(loss_scale, precision_lib.DynamicLossScale):
    raise ValueError(f"state: precision {policy.compute_dtype.name} needs a dynamic loss scale in the state; "
                     f"expected a LossScaledTrainState (jdl.train.with_loss_scale(state)), got {type(state).__name__}")
  return loss_scale


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
    precision: precision_lib.Policy | str | None = None,
    micro_batches: int = 1,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer update; pure.

  The objective is the masked mean of the per-example loss, plus
  ``regularizer(params)`` when given. Gradients come from
  ``jax.value_and_grad``.

  With ``axis_name`` (one copy of the step per device, the ``pmap``
  strategy) each device holds a slice of the batch. Each device sums its
  slice's losses and divides by the *global* count of unmasked examples, and
  the gradients and metrics are summed over the axis: the result is the
  global batch's mean exactly, even when masks leave the devices uneven
  counts (a mean of per-device means would not be). BatchNorm layers average
  their statistics over the axis, the updated statistics are averaged, and
  the dropout key is folded with the device index so devices draw different
  masks.

  With ``micro_batches=k`` the batch is cut into k equal, contiguous parts
  whose forward and backward passes are independent in the compiled program,
  so XLA's CPU runtime runs them on different cores at once (it runs one
  convolution on about one core: 1.6x per step for a 2-conv CNN on 2 cores).
  The loss, gradients and metrics are still the whole batch's, up to float
  rounding, except for BatchNorm: each part normalises with its own
  statistics (ghost batch normalisation) and the running statistics average
  the parts' updates. Dropout draws a different key per part.

  With a float16 ``precision`` the state must carry a loss scale
  (``with_loss_scale``); a step whose gradients overflow leaves parameters,
  optimizer state and batch statistics unchanged and halves the scale.

  Returns:
    The new state and a dict of scalar metrics: ``loss`` (the data term),
    ``objective`` when a regularizer is present, the batch means of
    ``example_metrics``, and ``loss_scale`` under float16.
  """
  policy = _policy(precision)
  loss_scale = _loss_scale(state, policy)
  batch = scale_images(batch, input_key)
  mask_B = batch.get("mask")
  rng = jax.random.fold_in(state.rng, state.step)

  if axis_name is None:
    reduce = functools.partial(_masked_mean_of, mask_B=mask_B)
    reg_share = 1.0
  else:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
    local_count = (jnp.asarray(batch[input_key].shape[0], jnp.float32) if mask_B is None
                   else jnp.sum(mask_B.astype(jnp.float32)))
    count = jnp.maximum(jax.lax.psum(local_count, axis_name), 1.0)
    reduce = functools.partial(_share_of_global_mean, mask_B=mask_B, count=count)
    reg_share = 1.0 / jax.lax.axis_size(axis_name)  # summed over the devices: counted once

  def forward(params):
    if micro_batches == 1:
      return _apply(apply_fn, params, state.model_state, batch[input_key], train=True, rng=rng, policy=policy,
                    axis_name=axis_name)
    x = batch[input_key]
    if x.shape[0] % micro_batches:
      raise ValueError(f"micro_batches: the batch of {x.shape[0]} examples (per device) does not split into "
                       f"{micro_batches} equal micro-batches")
    parts = [_apply(apply_fn, params, state.model_state, x_part, train=True, rng=jax.random.fold_in(rng, i),
                    policy=policy, axis_name=axis_name)
             for i, x_part in enumerate(jnp.split(x, micro_batches))]
    outputs = jax.tree.map(lambda *o: jnp.concatenate(o, axis=0), *[out for out, _ in parts])
    model_state = jax.tree.map(lambda *m: sum(m) / micro_batches, *[ms for _, ms in parts])
    return outputs, model_state

  def objective(params):
    outputs, model_state = forward(params)
    loss = reduce(loss_fn(outputs, batch))
    if regularizer is None:
      total = loss
    elif axis_name is None:
      total = loss + regularizer(params)
    else:
      total = loss + regularizer(params) * reg_share
    differentiated = total if loss_scale is None else loss_scale.scale_loss(total)
    return differentiated, (total, loss, outputs, model_state)

  (_, (total, loss, outputs, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  if axis_name is not None:
    grads = jax.lax.psum(grads, axis_name)
    model_state = jax.lax.pmean(model_state, axis_name)
  finite = None
  if loss_scale is not None:
    grads, finite = loss_scale.unscale_and_check(grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  if finite is not None:
    params, opt_state, model_state = precision_lib.select_tree(
        finite, (params, opt_state, model_state), (state.params, state.opt_state, state.model_state))

  metrics = {"loss": loss}
  if regularizer is not None:
    metrics["objective"] = total
  for name, values_B in example_metrics(outputs, batch).items():
    metrics[name] = reduce(values_B)
  if axis_name is not None:
    metrics = jax.lax.psum(metrics, axis_name)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state)
  if loss_scale is not None:
    metrics["loss_scale"] = loss_scale.scale
    new_state = new_state.replace(loss_scale=loss_scale.adjust(finite))
  return new_state, metrics


def _masked_mean_of(values_B: jax.Array, *, mask_B: jax.Array | None) -> jax.Array:
  return masked_mean(values_B, mask_B)


def _share_of_global_mean(values_B: jax.Array, *, mask_B: jax.Array | None, count: jax.Array) -> jax.Array:
  """This device's share of the global masked mean: its masked sum over the global count."""
  if mask_B is not None:
    values_B = values_B * mask_B.astype(values_B.dtype)
  return jnp.sum(values_B) / count.astype(values_B.dtype)


def eval_step(
    state: TrainState,
    batch: Batch,
    *,
    apply_fn: Callable[..., Any],
    loss_fn: Callable[[Any, Batch], jax.Array],
    input_key: str = "image",
    example_metrics: ExampleMetrics = accuracy,
    metrics: Sequence[metrics_lib.MetricSpec] = (),
    axis_name: str | None = None,
    precision: precision_lib.Policy | str | None = None,
) -> dict[str, Any]:
  """Sums of the loss and metrics over the batch's unmasked examples, and their count.

  Sums rather than means, so batches (and devices) merge by addition and a
  padded last batch counts exactly its real examples. Evaluation runs in the
  training's compute dtype (``precision``), as the trained model will be used.

  ``metrics`` (``jdl.metrics.MetricSpec``s, or spec strings such as
  ``"f1:macro"`` given to ``make_eval_step``) add ``"metrics": {key: state}``:
  each a ``jdl.metrics`` state updated with this batch (the mask honoured),
  reading the output and targets its spec names. States of successive batches
  merge with ``merge_stacked`` (``jdl.train.parallel.eval_program``); with
  ``axis_name`` they are merged across the devices first (``merge_across``),
  so every device holds the batch's global state.
  """
  batch = scale_images(batch, input_key)
  outputs, _ = _apply(apply_fn, state.params, state.model_state, batch[input_key], train=False, rng=None,
                      policy=_policy(precision))
  per_example = {"loss": loss_fn(outputs, batch), **example_metrics(outputs, batch)}
  mask_B = batch.get("mask")
  if mask_B is None:
    mask_B = jnp.ones(per_example["loss"].shape[:1], jnp.float32)
  mask_B = mask_B.astype(jnp.float32)
  sums: dict[str, Any] = {name: jnp.sum(values_B * mask_B) for name, values_B in per_example.items()}
  sums["count"] = jnp.sum(mask_B)
  if axis_name is not None:
    sums = jax.lax.psum(sums, axis_name)
  if metrics:
    states = {}
    for spec in metrics:
      out = _metric_output(outputs, spec)
      targets = batch["label"] if spec.output is None else losses_lib.head_target(batch, spec.output, "metrics")
      states[spec.key] = spec.create(out, mask_B.shape[0]).update(out, targets, mask_B)
    if axis_name is not None:
      states = metrics_lib.merge_across(states, axis_name)
    sums["metrics"] = states
  return sums


def _metric_output(outputs: Any, spec: metrics_lib.MetricSpec) -> Any:
  """The model output a metric spec reads (``spec.output`` of a dict of outputs)."""
  if isinstance(outputs, Mapping):
    if spec.output is None or spec.output not in outputs:
      raise ValueError(f"metrics: {spec.text!r}: the model returns the outputs {sorted(outputs)}; name one as "
                       f"'<output>/{spec.name}'")
    return outputs[spec.output]
  if spec.output is not None:
    raise ValueError(f"metrics: {spec.text!r} names the output {spec.output!r}, but the model returns one array, "
                     "not a dict of outputs")
  return outputs


def _check_bound(bound: dict[str, Any]) -> dict[str, Any]:
  """Checks the arguments a step is built with now, not when it is first traced."""
  if "precision" in bound and bound["precision"] is not None:
    _policy(bound["precision"])  # raises on a bad name or type
    bound["precision"] = precision_lib.get_policy(bound["precision"])
  if "metrics" in bound:
    bound["metrics"] = metrics_lib.parse_specs(bound["metrics"])
  micro = bound.get("micro_batches", 1)
  if isinstance(micro, bool) or not isinstance(micro, int) or micro < 1:
    raise ValueError(f"micro_batches: expected a positive int, got {micro!r}")
  axis_name = bound.get("axis_name")
  if axis_name is not None and not isinstance(axis_name, str):
    raise TypeError(f"axis_name: expected a string or None, got {axis_name!r}")
  return bound


def make_train_step(**bound: Any) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
  """``train_step`` with its constants bound: ``(state, batch) -> (state, metrics)``."""
  return functools.partial(train_step, **_check_bound(dict(bound)))


def make_eval_step(**bound: Any) -> Callable[[TrainState, Batch], dict[str, jax.Array]]:
  """``eval_step`` with its constants bound: ``(state, batch) -> sums``.

  ``metrics`` may be spec strings (``["f1:macro", "auroc"]``); they are parsed
  now, so a bad name is a ValueError before anything is traced.
  """
  return functools.partial(eval_step, **_check_bound(dict(bound)))
