"""Pure train and eval steps, built once from a frozen ``StepConfig``.

``make_train_step(**options)`` returns ``train_step(state, batch) -> (state,
metrics)``: a pure function of arrays that strategies compile (``jax.jit``,
with or without shardings, or one copy per device under ``pmap``) and that
``lax.scan`` runs over a whole epoch. ``make_eval_step(**options)`` returns
``eval_step(state, batch) -> sums``. Nothing here is jitted: compiling is the
caller's decision, made once.

The options are the fields of ``StepConfig``, checked when the step is built
(an unknown name, a bad precision, micro-batch count or metric spec is an error
before anything is traced). The step is composed of small parts, each chosen
once from the config rather than branching through one long function:

* **batch transforms** (``batch_transforms``): ``(state, batch, key) ->
  batch`` functions applied before the forward pass, inside the compiled step
  (where augmentation and adversarial examples plug in); the uint8 → float
  image scaling is the first of them;
* **the forward pass** (``_forward``): the model in the compute dtype of
  ``precision``, cut into ``micro_batches`` independent parts;
* **the objective**: ``jdl.losses.with_regularizer`` (data loss, penalty,
  per-head losses of a ``WeightedLoss``), reduced by a **reduction**: the
  masked batch mean on one program, or this device's share of the global mean
  with the collectives over ``axis_name`` (``_Local`` / ``_AcrossDevices``);
* **the update** (``_update``): ``tx``, with float16's dynamic loss scaling
  skipping non-finite steps.

Evaluation uses the optimizer's evaluation parameters
(``jdl.optim.eval_params``: the averaged iterate of schedule-free optimizers,
the parameters themselves otherwise), so every evaluation and every "best"
checkpoint choice is made on what the run will be used with.

Mixed precision (``precision``, a ``jdl.train.precision.Policy`` or its name):
the float32 master parameters and the inputs are cast to the compute dtype
inside the step, the outputs and the loss back to float32; gradients arrive in
float32 (the transpose of a cast casts back). With float16 the state carries a
``DynamicLossScale`` (``with_loss_scale``): the loss is scaled before
differentiation, non-finite steps are skipped and the scale adapts.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jdl import losses as losses_lib
from jdl import metrics as metrics_lib
from jdl import optim as optim_lib
from jdl.train import precision as precision_lib
from jdl.train.state import TrainState

Batch = Mapping[str, jax.Array]
ExampleMetrics = Callable[[Any, Batch], dict[str, jax.Array]]
BatchTransform = Callable[[TrainState, dict[str, jax.Array], jax.Array], dict[str, jax.Array]]


def scale_images(batch: Batch, input_key: str = "image") -> dict[str, jax.Array]:
  """Turns uint8 images into float32 in [0, 1]; other batches pass unchanged.

  Data stays uint8 on the device (4× less memory and transfer) and is converted
  inside the compiled step, where XLA fuses the conversion into the first layer.
  """
  batch = dict(batch)
  if input_key not in batch:
    raise KeyError(f"input_key: the batch has no key {input_key!r}; its keys are {', '.join(map(repr, batch))} "
                   "(pass input_key= the key of the model's input; jdl.data.info(name).input_key names it for "
                   "a dataset)")
  x = batch[input_key]
  if x.dtype == jnp.uint8:
    batch[input_key] = x.astype(jnp.float32) / 255.0
  return batch


# --------------------------------------------------------------------------- #
# Per-example metrics of the train step: ``(outputs, batch) -> {name: [B]}``.
# ``jdl.metrics`` holds the streamed metrics and the one-shot functions (which
# take ``(y_true, y_pred)``, scikit-learn's order); these are the cheap
# per-step ones, logged as ``train_accuracy``.
# --------------------------------------------------------------------------- #


def top1_correct(outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
  """``{"accuracy": [B]}``: 1 where the argmax of ``[B, C]`` logits is the integer label."""
  return {"accuracy": (jnp.argmax(outputs, axis=-1) == batch["label"]).astype(jnp.float32)}


def binary_correct(outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
  """``{"accuracy": [B]}``: 1 where one logit per example (``[B]`` or ``[B, 1]``) is on the label's side of 0."""
  logits_B = outputs.reshape(outputs.shape[0])
  return {"accuracy": ((logits_B > 0) == (batch["label"].reshape(logits_B.shape) > 0)).astype(jnp.float32)}


def no_metrics(outputs: Any, batch: Batch) -> dict[str, jax.Array]:
  """No per-example metric beyond the loss."""
  del outputs, batch
  return {}


EXAMPLE_METRICS: dict[str, ExampleMetrics] = {"accuracy": top1_correct, "binary_accuracy": binary_correct,
                                              "none": no_metrics}


def example_metrics_for(task: str) -> ExampleMetrics:
  """The per-step metric of a dataset's task (``jdl.data.DatasetInfo.task``)."""
  return {"classification": top1_correct, "binary": binary_correct}.get(task, no_metrics)


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


# --------------------------------------------------------------------------- #
# The step's configuration.
# --------------------------------------------------------------------------- #


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Everything a train or eval step is built from; checked once, when built.

  Attributes:
    apply_fn: ``model.apply``, called as ``apply_fn(variables, x, train=...)``.
    loss_fn: ``(outputs, batch) -> per-example loss`` (a ``jdl.losses`` loss).
    tx: the optimizer (train steps only).
    input_key: the batch key of the model's input (``"image"``, ``"inputs"``).
    example_metrics: ``(outputs, batch) -> {name: [B]}``, logged every step
      (default ``top1_correct``, i.e. ``accuracy``).
    regularizer: ``params -> scalar`` added to the objective, or None.
    axis_name: the collective axis when one copy of the step runs per device
      (the ``pmap`` strategy binds it); None otherwise.
    precision: a ``Policy`` or its name; None or float32 for float32.
    micro_batches: cut each training batch into this many independent parts.
    metrics: streamed ``jdl.metrics`` specs (eval steps; strings are parsed).
    batch_transforms: ``(state, batch, key) -> batch`` functions applied, in
      order, to each training batch before the forward pass (after the image
      scaling), with a key folded from the state's rng and step.
  """

  apply_fn: Callable[..., Any]
  loss_fn: Callable[[Any, Batch], jax.Array]
  tx: optax.GradientTransformation | None = None
  input_key: str = "image"
  example_metrics: ExampleMetrics = top1_correct
  regularizer: Callable[[Any], jax.Array] | None = None
  axis_name: str | None = None
  precision: precision_lib.Policy | str | None = None
  micro_batches: int = 1
  metrics: Sequence[metrics_lib.MetricSpec | str] = ()
  batch_transforms: Sequence[BatchTransform] = ()

  def __post_init__(self) -> None:
    set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen)
    set_("precision", _policy(self.precision))
    set_("metrics", metrics_lib.parse_specs(tuple(self.metrics)))
    check_micro_batches(self.micro_batches)
    if self.axis_name is not None and not isinstance(self.axis_name, str):
      raise TypeError(f"axis_name: expected a string or None, got {self.axis_name!r}")
    if not isinstance(self.input_key, str):
      raise TypeError(f"input_key: expected the batch key of the model's input (a string), got {self.input_key!r}")
    for name in ("example_metrics", "regularizer"):
      value = getattr(self, name)
      if value is not None and not callable(value):
        raise TypeError(f"{name}: expected a function or None, got {value!r}")
    set_("batch_transforms", tuple(self.batch_transforms))
    for fn in self.batch_transforms:
      if not callable(fn):
        raise TypeError(f"batch_transforms: expected functions (state, batch, key) -> batch, got {fn!r}")
    if self.tx is not None and not isinstance(self.tx, optax.GradientTransformation):
      raise TypeError(f"tx: expected an optax.GradientTransformation, got {type(self.tx).__name__}")


_FIELDS = tuple(f.name for f in dataclasses.fields(StepConfig))


def check_micro_batches(micro_batches: Any, batch_size: int | None = None) -> None:
  """Raises ``ValueError`` unless ``micro_batches`` is a positive int (that divides ``batch_size``, if given)."""
  if isinstance(micro_batches, bool) or not isinstance(micro_batches, int) or micro_batches < 1:
    raise ValueError(f"micro_batches: expected a positive int, got {micro_batches!r}")
  if batch_size is not None and batch_size % micro_batches:
    raise ValueError(f"micro_batches: {micro_batches} does not divide data.batch_size={batch_size}; expected a "
                     "divisor of the batch size")


def _config(who: str, options: Mapping[str, Any]) -> StepConfig:
  unknown = sorted(set(options) - set(_FIELDS))
  if unknown:
    raise TypeError(f"{who}: unknown option(s) {', '.join(unknown)}; accepted options: {', '.join(_FIELDS)}")
  missing = [name for name in ("apply_fn", "loss_fn") if name not in options]
  if missing:
    raise TypeError(f"{who}: missing option(s) {', '.join(missing)}")
  return StepConfig(**options)


class _Step:
  """A step bound to its ``StepConfig``: callable as ``(state, batch)``."""

  _fn: Callable[..., Any]

  def __init__(self, config: StepConfig):
    self.config = config

  def replace(self, **changes: Any) -> _Step:
    """The same step with some options changed (a strategy binding its ``axis_name``)."""
    return type(self)(dataclasses.replace(self.config, **changes))

  def __call__(self, state: TrainState, batch: Batch) -> Any:
    return type(self)._fn(state, batch, self.config)

  def __repr__(self) -> str:
    return f"{type(self).__name__}({self.config})"


# --------------------------------------------------------------------------- #
# Reductions: one program, or one copy per device with explicit collectives.
# --------------------------------------------------------------------------- #


class _Local:
  """The whole batch is in this program: masked means; XLA inserts any collectives."""

  regularizer_share = 1.0

  def __init__(self, mask_B: jax.Array | None):
    self.mask_B = mask_B

  def mean(self, values_B: jax.Array, mask_B: Any = None) -> jax.Array:
    del mask_B  # the batch's own mask, given at construction
    return losses_lib.masked_mean(values_B, self.mask_B)

  def rng(self, rng: jax.Array) -> jax.Array:
    return rng

  def gradients(self, grads: Any) -> Any:
    return grads

  def model_state(self, model_state: Any) -> Any:
    return model_state

  def metrics(self, metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return metrics


class _AcrossDevices(_Local):
  """One copy of the step per device (``pmap``), each holding a slice of the batch.

  Each device sums its slice and divides by the *global* count of unmasked
  examples, and gradients and metrics are summed over the axis: the global
  batch's mean exactly, even when masks leave the devices uneven counts (a
  mean of per-device means would not be). The regularizer is counted once
  (each device adds its share), BatchNorm statistics are averaged, and the
  dropout key is folded with the device index so devices draw different masks.
  """

  def __init__(self, mask_B: jax.Array | None, axis_name: str, batch_size: int):
    super().__init__(mask_B)
    self.axis_name = axis_name
    local = jnp.asarray(batch_size, jnp.float32) if mask_B is None else jnp.sum(mask_B.astype(jnp.float32))
    self.count = jnp.maximum(jax.lax.psum(local, axis_name), 1.0)
    self.regularizer_share = 1.0 / jax.lax.axis_size(axis_name)

  def mean(self, values_B: jax.Array, mask_B: Any = None) -> jax.Array:
    del mask_B
    if self.mask_B is not None:
      values_B = values_B * self.mask_B.astype(values_B.dtype).reshape(
          self.mask_B.shape + (1,) * (values_B.ndim - self.mask_B.ndim))
    return jnp.sum(values_B) / (self.count.astype(values_B.dtype) * (values_B.size // values_B.shape[0]))

  def rng(self, rng: jax.Array) -> jax.Array:
    return jax.random.fold_in(rng, jax.lax.axis_index(self.axis_name))

  def gradients(self, grads: Any) -> Any:
    return jax.lax.psum(grads, self.axis_name)

  def model_state(self, model_state: Any) -> Any:
    return jax.lax.pmean(model_state, self.axis_name)

  def metrics(self, metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return jax.lax.psum(metrics, self.axis_name)


def _reduction(config: StepConfig, batch: Batch) -> _Local:
  mask_B = batch.get("mask")
  if config.axis_name is None:
    return _Local(mask_B)
  return _AcrossDevices(mask_B, config.axis_name, batch[config.input_key].shape[0])


# --------------------------------------------------------------------------- #
# The parts of a train step.
# --------------------------------------------------------------------------- #


def _prepare(state: TrainState, batch: Batch, config: StepConfig, key: jax.Array) -> dict[str, jax.Array]:
  """Image scaling, then the config's batch transforms (each with its own key)."""
  batch = scale_images(batch, config.input_key)
  for i, transform in enumerate(config.batch_transforms):
    batch = dict(transform(state, batch, jax.random.fold_in(key, i)))
  return batch


def _forward(config: StepConfig, params: Any, model_state: Any, x: jax.Array, rng: jax.Array) -> tuple[Any, Any]:
  """The training forward pass, whole or as ``micro_batches`` independent parts.

  With ``micro_batches=k`` the batch is cut into k equal, contiguous parts
  whose forward and backward passes are independent in the compiled program,
  so XLA's CPU runtime runs them on different cores at once (it runs one
  convolution on about one core: 1.6x per step for a 2-conv CNN on 2 cores).
  The loss, gradients and metrics are still the whole batch's, up to float
  rounding, except for BatchNorm: each part normalises with its own
  statistics (ghost batch normalisation) and the running statistics average
  the parts' updates. Dropout draws a different key per part.
  """
  k = config.micro_batches
  run = lambda x_part, key: _apply(config.apply_fn, params, model_state, x_part, train=True, rng=key,  # noqa: E731
                                   policy=config.precision, axis_name=config.axis_name)
  if k == 1:
    return run(x, rng)
  if x.shape[0] % k:
    raise ValueError(f"micro_batches: the batch of {x.shape[0]} examples (per device) does not split into "
                     f"{k} equal micro-batches")
  parts = [run(x_part, jax.random.fold_in(rng, i)) for i, x_part in enumerate(jnp.split(x, k))]
  outputs = jax.tree.map(lambda *o: jnp.concatenate(o, axis=0), *[out for out, _ in parts])
  new_state = jax.tree.map(lambda *m: sum(m) / k, *[ms for _, ms in parts])
  return outputs, new_state


def _update(state: TrainState, grads: Any, model_state: Any, config: StepConfig,
            loss_scale: precision_lib.DynamicLossScale | None) -> tuple[TrainState, jax.Array | None]:
  """Applies ``tx``; with a loss scale, a step whose gradients overflow changes nothing but the scale."""
  finite = None
  if loss_scale is not None:
    grads, finite = loss_scale.unscale_and_check(grads)
  updates, opt_state = config.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  if finite is not None:
    params, opt_state, model_state = precision_lib.select_tree(
        finite, (params, opt_state, model_state), (state.params, state.opt_state, state.model_state))
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state)
  if loss_scale is not None:
    new_state = new_state.replace(loss_scale=loss_scale.adjust(finite))
  return new_state, finite


def train_step(state: TrainState, batch: Batch, config: StepConfig) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer update; pure. Use ``make_train_step(**options)`` to bind ``config``.

  The objective is the masked mean of the per-example loss, plus
  ``regularizer(params)`` when given (``jdl.losses.with_regularizer``);
  gradients come from ``jax.value_and_grad``.

  Returns:
    The new state and a dict of scalar metrics: ``loss`` (the data term),
    ``objective`` when a regularizer is present, ``loss/<head>`` for each
    output of a ``WeightedLoss``, the batch means of ``example_metrics``, and
    ``loss_scale`` under float16.
  """
  if config.tx is None:
    raise TypeError("train_step: the step needs an optimizer; build it with make_train_step(..., tx=...)")
  loss_scale = _loss_scale(state, config.precision)
  key = jax.random.fold_in(state.rng, state.step)
  batch = _prepare(state, batch, config, jax.random.fold_in(key, 1))
  reduction = _reduction(config, batch)
  rng = reduction.rng(key)
  regularizer = config.regularizer
  if regularizer is not None and reduction.regularizer_share != 1.0:
    share = reduction.regularizer_share
    regularizer = lambda params: config.regularizer(params) * share  # noqa: E731  (summed over the devices)
  objective_fn = losses_lib.with_regularizer(config.loss_fn, regularizer, reduce=reduction.mean)

  def objective(params):
    outputs, model_state = _forward(config, params, state.model_state, batch[config.input_key], rng)
    total, aux = objective_fn(params, outputs, batch)
    differentiated = total if loss_scale is None else loss_scale.scale_loss(total)
    return differentiated, (total, aux, outputs, model_state)

  (_, (total, aux, outputs, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  new_state, _ = _update(state, reduction.gradients(grads), reduction.model_state(model_state), config, loss_scale)

  metrics = {k: v for k, v in aux.items() if k != "regularization"}
  if regularizer is not None:
    metrics["objective"] = total
  for name, values_B in config.example_metrics(outputs, batch).items():
    metrics[name] = reduction.mean(values_B)
  metrics = reduction.metrics(metrics)
  if loss_scale is not None:
    metrics["loss_scale"] = loss_scale.scale
  skipped_before = optim_lib.skipped_steps(state.opt_state)
  if skipped_before is not None:  # jdl.optim.skip_nonfinite: 1 where this step's update was skipped
    metrics["skipped"] = (optim_lib.skipped_steps(new_state.opt_state) - skipped_before).astype(jnp.float32)
  return new_state, metrics


def eval_step(state: TrainState, batch: Batch, config: StepConfig) -> dict[str, Any]:
  """Sums of the loss and metrics over the batch's unmasked examples, and their count.

  Use ``make_eval_step(**options)`` to bind ``config``. Sums rather than
  means, so batches (and devices) merge by addition and a padded last batch
  counts exactly its real examples. Evaluation runs in the training's compute
  dtype (``precision``), as the trained model will be used, with the
  optimizer's evaluation parameters (``jdl.optim.eval_params``).

  ``config.metrics`` (``jdl.metrics.MetricSpec``s) add ``"metrics": {key:
  state}``: each a ``jdl.metrics`` state updated with this batch (the mask
  honoured), reading the output and targets its spec names. States of
  successive batches merge with ``merge_stacked``
  (``jdl.train.programs.eval_program``); with ``axis_name`` they are merged
  across the devices first (``merge_across``), so every device holds the
  batch's global state.
  """
  batch = scale_images(batch, config.input_key)
  params = optim_lib.eval_params(state.opt_state, state.params)
  outputs, _ = _apply(config.apply_fn, params, state.model_state, batch[config.input_key], train=False, rng=None,
                      policy=config.precision)
  loss_B, heads = losses_lib.with_heads(config.loss_fn, outputs, batch)
  per_example = {"loss": loss_B, **{f"loss/{head}": v for head, v in heads.items()}}
  per_example.update(config.example_metrics(outputs, batch))
  mask_B = batch.get("mask")
  if mask_B is None:
    mask_B = jnp.ones(per_example["loss"].shape[:1], jnp.float32)
  mask_B = mask_B.astype(jnp.float32)
  sums: dict[str, Any] = {name: jnp.sum(values_B * mask_B) for name, values_B in per_example.items()}
  sums["count"] = jnp.sum(mask_B)
  if config.axis_name is not None:
    sums = jax.lax.psum(sums, config.axis_name)
  if config.metrics:
    states = {}
    for spec in config.metrics:
      out = _metric_output(outputs, spec)
      targets = batch["label"] if spec.output is None else losses_lib.head_target(batch, spec.output, "metrics")
      states[spec.key] = spec.create(out, mask_B.shape[0]).update(out, targets, mask_B)
    if config.axis_name is not None:
      states = metrics_lib.merge_across(states, config.axis_name)
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


class TrainStep(_Step):
  """``train_step`` bound to a ``StepConfig``: ``(state, batch) -> (state, metrics)``."""

  _fn = staticmethod(train_step)


class EvalStep(_Step):
  """``eval_step`` bound to a ``StepConfig``: ``(state, batch) -> sums``."""

  _fn = staticmethod(eval_step)


def make_train_step(**options: Any) -> TrainStep:
  """``train_step`` with its options bound: ``(state, batch) -> (state, metrics)``.

  The options are ``StepConfig``'s fields (``apply_fn``, ``loss_fn`` and
  ``tx`` required); an unknown name or a bad value raises now, listing the
  accepted ones, not when the step is first traced.
  """
  config = _config("make_train_step", options)
  if config.tx is None:
    raise TypeError("make_train_step: missing option(s) tx")
  return TrainStep(config)


def make_eval_step(**options: Any) -> EvalStep:
  """``eval_step`` with its options bound: ``(state, batch) -> sums``.

  ``metrics`` may be spec strings (``["f1:macro", "auroc"]``); they are parsed
  now, so a bad name is a ValueError before anything is traced. ``tx``,
  ``micro_batches``, ``batch_transforms`` and ``regularizer`` apply to
  training only and are refused here.
  """
  train_only = sorted(set(options) & {"tx", "micro_batches", "batch_transforms", "regularizer"})
  if train_only:
    raise TypeError(f"make_eval_step: option(s) {', '.join(train_only)} apply to training only; give them to "
                    "make_train_step")
  return EvalStep(_config("make_eval_step", options))
