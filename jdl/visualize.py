"""Looking inside a trained network: "ideal" class images, saliency maps, filters.

Everything here is a gradient with respect to the input, computed by
``jax.grad`` and compiled once. ``logits_fn(x) -> logits`` is any pure function
of the inputs (``jdl.train.load_run(...).logits_fn()``, or a ``model.apply``
with its variables closed over)::

    out = jdl.visualize.ideal_inputs(logits_fn, classes=range(10), shape=(28, 28, 1), tv=1.0, jitter=2)
    g = jdl.visualize.saliency(logits_fn, x)                       # vanilla gradient
    g = jdl.visualize.smoothgrad(logits_fn, x, key=jax.random.key(0))
    g = jdl.visualize.integrated_gradients(logits_fn, x)
    kernel = jdl.visualize.first_layer_filters(run.variables)   # (kh, kw, in, out)

Activation maximisation (Erhan et al. 2009; Simonyan et al. 2014, the class
model) starts from noise and follows the gradient of a score with respect to
the input (Adam steps, the whole loop one ``lax.scan``), with penalties that
make the picture show patterns rather than noise: L2 (towards mid-grey), total
variation (Mahendran & Vedaldi 2015), random jitter and an occasional Gaussian
blur (Yosinski et al. 2015). The score is a class's log-probability (or
logit), or the mean of any layer's output or of one of its channels
(``layer_objective``). ``jdl visualize RUN_DIR --what ideal`` draws the ten
classes of a run with and without the total-variation term.

Saliency maps (attributions) say which input pixels the score is most
sensitive to: the vanilla gradient (Simonyan et al. 2014), SmoothGrad (the
gradient averaged over noisy copies; Smilkov et al. 2017) and integrated
gradients (the gradient averaged along the straight path from a baseline,
times the input's difference from it; Sundararajan et al. 2017, whose
attributions sum to ``score(x) - score(baseline)``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

OBJECTIVES = ("log_prob", "logit", "prob")


def _check_positive_int(name: str, value: Any, low: int = 1) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
    raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")


def _check_nonnegative(name: str, value: Any) -> None:
  values = np.ravel(np.asarray(value, dtype=np.float64)) if not isinstance(value, jax.core.Tracer) else []
  for v in values:
    if not (math.isfinite(float(v)) and float(v) >= 0):
      raise ValueError(f"{name}: expected a finite number >= 0 (or one per example), got {value!r}")


def _check_clip(clip: Any) -> tuple[float, float] | None:
  if clip is None:
    return None
  if not (isinstance(clip, (tuple, list)) and len(clip) == 2 and float(clip[0]) < float(clip[1])):
    raise ValueError(f"clip: expected None or a (low, high) pair with low < high, got {clip!r}")
  return float(clip[0]), float(clip[1])


# --- penalties and filters -------------------------------------------------------------------------------------


def total_variation(x: jax.Array) -> jax.Array:
  """Per-example anisotropic total variation of images ``[B, H, W, C]``.

  The mean over pixels of ``|x[i+1, j] - x[i, j]| + |x[i, j+1] - x[i, j]|``:
  0 for a constant image, large for noise.
  """
  if x.ndim != 4:
    raise ValueError(f"total_variation: expected images of shape (batch, height, width, channels), got shape "
                     f"{tuple(x.shape)}")
  dh = jnp.abs(x[:, 1:, :, :] - x[:, :-1, :, :])
  dw = jnp.abs(x[:, :, 1:, :] - x[:, :, :-1, :])
  pixels = x.shape[1] * x.shape[2] * x.shape[3]
  return (jnp.sum(dh, axis=(1, 2, 3)) + jnp.sum(dw, axis=(1, 2, 3))) / pixels


def gaussian_blur(x: jax.Array, sigma: float) -> jax.Array:
  """Blurs images ``[B, H, W, C]`` channel by channel with a Gaussian of ``sigma`` pixels (edges repeated)."""
  _check_nonnegative("sigma", sigma)
  if sigma == 0:
    return x
  radius = max(1, int(math.ceil(2.0 * sigma)))
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  taps = jnp.asarray(taps / taps.sum(), x.dtype)
  channels = x.shape[-1]
  padded = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
  dn = ("NHWC", "HWIO", "NHWC")
  rows = jnp.tile(taps.reshape(-1, 1, 1, 1), (1, 1, 1, channels))
  cols = jnp.tile(taps.reshape(1, -1, 1, 1), (1, 1, 1, channels))
  y = jax.lax.conv_general_dilated(padded, rows, (1, 1), "VALID", dimension_numbers=dn,
                                   feature_group_count=channels)
  return jax.lax.conv_general_dilated(y, cols, (1, 1), "VALID", dimension_numbers=dn,
                                      feature_group_count=channels)


def _jitter(x: jax.Array, key: jax.Array, pixels: int) -> jax.Array:
  """Rolls every image by the same random shift of up to ``pixels`` along height and width."""
  shift = jax.random.randint(key, (2,), -pixels, pixels + 1)
  return jnp.roll(x, (shift[0], shift[1]), axis=(1, 2))


# --- activation maximisation -----------------------------------------------------------------------------------


def class_objective(logits_fn: Callable[[jax.Array], jax.Array], classes: Any,
                    objective: str = "log_prob") -> Callable[[jax.Array], jax.Array]:
  """``x -> [B]``: example ``b``'s score for class ``classes[b]``: its log-probability, probability or logit."""
  if objective not in OBJECTIVES:
    raise ValueError(f"objective: expected one of {', '.join(OBJECTIVES)}, got {objective!r}")
  classes = jnp.asarray(classes, jnp.int32)

  def score(x):
    logits = logits_fn(x)
    if logits.shape[-1] == 1:  # one logit: class 1 is logit > 0
      logits = jnp.concatenate([jnp.zeros_like(logits), logits], axis=-1)
    if objective == "logit":
      values = logits
    elif objective == "prob":
      values = jax.nn.softmax(logits, axis=-1)
    else:
      values = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(values, classes[:, None], axis=-1)[:, 0]

  return score


def layer_names(model: Any, variables: Any, example: jax.Array) -> list[str]:
  """The ``/``-joined paths of every submodule of ``model`` and of every activation it records (``jdl.nn.record_activation``).

  Traced with ``jax.eval_shape``: nothing is computed or compiled.
  """
  def capture(x):
    _, state = model.apply(variables, x, train=False, capture_intermediates=True,
                           mutable=["intermediates", "activations"])
    return state

  state = jax.eval_shape(capture, example)
  names = []
  for path, _ in jax.tree_util.tree_flatten_with_path(state.get("intermediates", {}))[0]:
    keys = [getattr(p, "key", None) for p in path]
    if "__call__" in keys:
      name = "/".join(str(k) for k in keys[:keys.index("__call__")])
      if name and name not in names:
        names.append(name)
  for path, _ in jax.tree_util.tree_flatten_with_path(state.get("activations", {}))[0]:
    name = "/".join(str(getattr(p, "key", "")) for p in path if isinstance(getattr(p, "key", None), str))
    if name and name not in names:
      names.append(name)
  return names


def layer_objective(model: Any, variables: Any, layer: str, channel: int | None = None, *,
                    example: jax.Array | None = None) -> Callable[[jax.Array], jax.Array]:
  """``x -> [B]``: the mean of ``layer``'s output in evaluation mode (of its channel ``channel`` if given).

  ``layer`` is a submodule's path (``"Conv_0"``, ``"block1/conv2"``) or the name
  of an activation the model records (``jdl.nn.record_activation``); with
  ``example`` (an input batch) an unknown name is a ``ValueError`` listing the
  known ones, raised before anything is compiled.
  """
  if example is not None:
    known = layer_names(model, variables, example)
    if layer not in known:
      raise ValueError(f"layer: expected one of the model's layers ({', '.join(known)}), got {layer!r}")
  if channel is not None:
    _check_positive_int("channel", channel, 0)
  parts = layer.split("/")

  def score(x):
    _, state = model.apply(variables, x, train=False, capture_intermediates=True,
                           mutable=["intermediates", "activations"])
    node = state.get("intermediates", {})
    for part in parts:
      node = node.get(part, {}) if hasattr(node, "get") else {}
    if hasattr(node, "get") and "__call__" in node:
      value = node["__call__"][0]
    else:
      node = state.get("activations", {})
      for part in parts:
        node = node[part]
      value = node[0] if isinstance(node, tuple) else node
    if channel is not None:
      if channel >= value.shape[-1]:
        raise ValueError(f"channel: {layer} has {value.shape[-1]} channels, got {channel}")
      value = value[..., channel]
    return jnp.mean(value.reshape(value.shape[0], -1), axis=1)

  return score


@functools.partial(jax.jit, static_argnames=("score_fn", "steps", "learning_rate", "jitter", "blur_sigma",
                                               "blur_every", "clip"))
def _maximise(score_fn, x0, l2, tv, key, *, steps, learning_rate, jitter, blur_sigma, blur_every, clip):
  tx = optax.adam(learning_rate)
  centre = 0.0 if clip is None else 0.5 * (clip[0] + clip[1])

  def objective(x, key):
    seen = _jitter(x, key, jitter) if jitter else x
    scores = score_fn(seen)
    penalty = l2 * jnp.mean(jnp.square(x - centre).reshape(x.shape[0], -1), axis=1)
    if x.ndim == 4:
      penalty = penalty + tv * total_variation(x)
    return -jnp.sum(scores - penalty), scores

  def step(carry, i):
    x, opt_state, key = carry
    key, sub = jax.random.split(key)
    grads, scores = jax.grad(objective, has_aux=True)(x, sub)
    updates, opt_state = tx.update(grads, opt_state, x)
    x = optax.apply_updates(x, updates)
    if clip is not None:
      x = jnp.clip(x, clip[0], clip[1])
    if blur_sigma:
      x = jnp.where((i + 1) % blur_every == 0, gaussian_blur(x, blur_sigma), x)
    return (x, opt_state, key), scores

  (x, _, _), trace = jax.lax.scan(step, (x0, tx.init(x0), key), jnp.arange(steps))
  return x, score_fn(x), trace


def maximise_input(score_fn: Callable[[jax.Array], jax.Array], x0: Any, *, steps: int = 512,
                   learning_rate: float = 0.01, l2: Any = 0.0, tv: Any = 0.0, jitter: int = 0,
                   blur_sigma: float = 0.0, blur_every: int = 4,
                   clip: tuple[float, float] | None = (0.0, 1.0), key: jax.Array | None = None) -> dict[str, Any]:
  """Gradient ascent on the inputs ``x0`` of ``score_fn(x) -> [B]``: activation maximisation.

  Each of the ``steps`` Adam steps maximises ``score_fn(jitter(x)) - l2 ·
  mean((x - centre)²) - tv · total_variation(x)`` per example, then clips ``x``
  to ``clip`` (``centre`` is the middle of ``clip``); with ``blur_sigma`` every
  ``blur_every``-th step blurs ``x``. ``l2`` and ``tv`` may be one weight per
  example (a picture with and without a term in one run). The loop is one
  ``lax.scan``: one compiled program; ``score_fn`` must be the same object
  across calls for it to be reused.

  Returns:
    ``{"x": the inputs, "score": [B] their final scores, "trace": [steps, B]
    the scores during the ascent}`` as numpy arrays.
  """
  for name, value in (("steps", steps), ("blur_every", blur_every)):
    _check_positive_int(name, value)
  _check_positive_int("jitter", jitter, 0)
  for name, value in (("learning_rate", learning_rate), ("l2", l2), ("tv", tv), ("blur_sigma", blur_sigma)):
    _check_nonnegative(name, value)
  if not learning_rate:
    raise ValueError(f"learning_rate: expected a number > 0, got {learning_rate!r}")
  clip = _check_clip(clip)
  x0 = jnp.asarray(x0, jnp.float32)
  if x0.ndim < 2:
    raise ValueError(f"x0: expected a batch of inputs (batch, ...), got shape {tuple(x0.shape)}")
  if (tv is not None and np.any(np.asarray(tv) > 0) or blur_sigma or jitter) and x0.ndim != 4:
    raise ValueError(f"tv, blur_sigma and jitter apply to images (batch, height, width, channels); x0 has shape "
                     f"{tuple(x0.shape)}")
  batch = x0.shape[0]
  weights = []
  for name, value in (("l2", l2), ("tv", tv)):
    if np.ndim(value) > 1 or (np.ndim(value) == 1 and len(value) != batch):
      raise ValueError(f"{name}: expected a number or one per example ({batch}), got {value!r}")
    weights.append(jnp.broadcast_to(jnp.asarray(value, jnp.float32), (batch,)))
  key = jax.random.key(0) if key is None else key
  x, score, trace = _maximise(score_fn, x0, weights[0], weights[1], key, steps=int(steps),
                              learning_rate=float(learning_rate), jitter=int(jitter), blur_sigma=float(blur_sigma),
                              blur_every=int(blur_every), clip=clip)
  return {"x": np.asarray(x), "score": np.asarray(score), "trace": np.asarray(trace)}


def ideal_inputs(logits_fn: Callable[[jax.Array], jax.Array], classes: Sequence[int], shape: Sequence[int], *,
                 objective: str = "log_prob", noise: float = 0.1, seed: int = 0, **options: Any) -> dict[str, Any]:
  """The "ideal" input of each class: activation maximisation of its score from noise.

  Starts every image from ``centre + noise · N(0, 1)`` (clipped; ``shape`` is one
  example's, without the batch) and runs ``maximise_input`` with ``options``
  (``steps``, ``learning_rate``, ``l2``, ``tv``, ``jitter``, ``blur_sigma``,
  ``blur_every``, ``clip``). Adds ``"probability"``: each image's softmax
  probability of its class.
  """
  classes = [int(c) for c in classes]
  if not classes:
    raise ValueError("classes: expected at least one class, got none")
  _check_nonnegative("noise", noise)
  clip = _check_clip(options.get("clip", (0.0, 1.0)))
  centre = 0.0 if clip is None else 0.5 * (clip[0] + clip[1])
  key_noise, key = jax.random.split(jax.random.key(seed))
  x0 = centre + noise * jax.random.normal(key_noise, (len(classes), *shape), jnp.float32)
  if clip is not None:
    x0 = jnp.clip(x0, clip[0], clip[1])
  score_fn = _cached_class_objective(logits_fn, tuple(classes), objective)
  out = maximise_input(score_fn, x0, key=key, **options)
  prob_fn = _cached_class_objective(logits_fn, tuple(classes), "prob")
  out["probability"] = np.asarray(jax.jit(prob_fn)(jnp.asarray(out["x"])))
  out["classes"] = classes
  return out


@functools.lru_cache(maxsize=32)
def _cached_class_objective(logits_fn, classes, objective):
  # The same (logits_fn, classes, objective) gives the same function: the compiled ascent is reused.
  return class_objective(logits_fn, classes, objective)


# --- saliency ---------------------------------------------------------------------------------------------------


def _targets(logits_fn, x, target):
  if target is None:
    logits = logits_fn(x)
    if logits.shape[-1] == 1:
      return (logits[..., 0] > 0).astype(jnp.int32)
    return jnp.argmax(logits, axis=-1)
  return jnp.broadcast_to(jnp.asarray(target, jnp.int32), (x.shape[0],))


def _score_gradient(logits_fn, x, target):
  def total(v):
    logits = logits_fn(v)
    if logits.shape[-1] == 1:  # one logit: class 1's score is the logit, class 0's its negative
      return jnp.sum(jnp.where(target == 1, 1.0, -1.0) * logits[..., 0])
    return jnp.sum(jnp.take_along_axis(logits, target[:, None], axis=-1))
  return jax.grad(total)(x)


def saliency(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, target: Any = None) -> jax.Array:
  """The vanilla gradient: ``∂ logit[target] / ∂x`` per example (``target`` default: the predicted class).

  Like ``smoothgrad`` and ``integrated_gradients``, one compiled program per ``logits_fn`` (pass the same
  function object to reuse it) and input shape.
  """
  x = jnp.asarray(x, jnp.float32)
  return _saliency(logits_fn, x, None if target is None else jnp.asarray(target, jnp.int32))


@functools.partial(jax.jit, static_argnums=(0,))
def _saliency(logits_fn, x, target):
  return _score_gradient(logits_fn, x, _targets(logits_fn, x, target))


def smoothgrad(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, target: Any = None, *,
               samples: int = 32, noise: float = 0.15, key: jax.Array | None = None) -> jax.Array:
  """SmoothGrad: the vanilla gradient averaged over ``samples`` copies of ``x`` with Gaussian noise.

  The noise's standard deviation is ``noise`` times each example's value
  range (``max - min``; Smilkov et al. found 10–20 % best). The target is the
  clean input's (default: its predicted class).
  """
  _check_positive_int("samples", samples)
  _check_nonnegative("noise", noise)
  x = jnp.asarray(x, jnp.float32)
  key = jax.random.key(0) if key is None else key
  return _smoothgrad(logits_fn, x, None if target is None else jnp.asarray(target, jnp.int32), int(samples),
                     jnp.float32(noise), key)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _smoothgrad(logits_fn, x, target, samples, noise, key):
  target = _targets(logits_fn, x, target)
  axes = tuple(range(1, x.ndim))
  spread = (jnp.max(x, axis=axes, keepdims=True) - jnp.min(x, axis=axes, keepdims=True)) * noise

  def one(carry, k):
    noisy = x + spread * jax.random.normal(k, x.shape, x.dtype)
    return carry + _score_gradient(logits_fn, noisy, target), None

  total, _ = jax.lax.scan(one, jnp.zeros_like(x), jax.random.split(key, samples))
  return total / samples


def integrated_gradients(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, target: Any = None, *,
                         baseline: Any = None, steps: int = 32) -> jax.Array:
  """Integrated gradients: ``(x - baseline) · mean_k ∂ logit / ∂x (baseline + α_k (x - baseline))``.

  The path integral is the midpoint rule over ``steps`` points ``α_k = (k +
  ½) / steps``; the attributions of an example sum to ``logit(x) -
  logit(baseline)`` up to that rule's error (exactly, for a linear model).
  ``baseline`` defaults to zeros (a black image).
  """
  _check_positive_int("steps", steps)
  x = jnp.asarray(x, jnp.float32)
  baseline = jnp.zeros_like(x) if baseline is None else jnp.broadcast_to(jnp.asarray(baseline, x.dtype), x.shape)
  return _integrated(logits_fn, x, None if target is None else jnp.asarray(target, jnp.int32), baseline, int(steps))


@functools.partial(jax.jit, static_argnums=(0, 4))
def _integrated(logits_fn, x, target, baseline, steps):
  target = _targets(logits_fn, x, target)

  def one(carry, alpha):
    return carry + _score_gradient(logits_fn, baseline + alpha * (x - baseline), target), None

  alphas = (jnp.arange(steps, dtype=x.dtype) + 0.5) / steps
  total, _ = jax.lax.scan(one, jnp.zeros_like(x), alphas)
  return (x - baseline) * total / steps


def saliency_map(gradient: Any) -> np.ndarray:
  """A gradient ``[B, H, W, C]`` as a picture: the maximum of its absolute value over the channels, ``[B, H, W]``."""
  g = np.asarray(gradient)
  return np.max(np.abs(g), axis=-1) if g.ndim == 4 else np.abs(g)


# --- weights ----------------------------------------------------------------------------------------------------


def first_layer_filters(variables: Any) -> np.ndarray:
  """The first convolution's kernel ``[kh, kw, in, out]`` (the first 4-d ``kernel`` in the parameters' order).

  Raises:
    ValueError: the model has no convolution.
  """
  def walk(node):  # the modules in the order they were created (jax's flattening sorts the names)
    for name, value in node.items():
      if hasattr(value, "items"):
        found = walk(value)
        if found is not None:
          return found
      elif name == "kernel" and np.ndim(value) == 4:
        return np.asarray(value)
    return None

  params = variables.get("params", variables) if hasattr(variables, "items") else {}
  found = walk(params)
  if found is not None:
    return found
  raise ValueError("filters: the model has no convolution (no 4-d kernel among its parameters)")
