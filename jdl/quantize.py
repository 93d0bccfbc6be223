"""int8 quantization of trained Flax models: post-training (static or dynamic) and quantization-aware training.

Weights are quantized symmetrically per output channel, ``w ≈ scale_c · q``
with ``q`` an int8 in [-127, 127] and ``scale_c = max|w_c| / 127``;
activations (the input of every quantized layer) per tensor, ``x ≈ s · q_x``,
with ``s`` fixed by a calibration pass over training batches (static: the
largest ``|x|`` seen, or a percentile of ``|x|``) or taken from each batch as it
comes (dynamic). The arithmetic is integer: the layer computes
``int8 × int8 → int32`` with ``lax.dot_general`` / ``lax.conv_general_dilated``
(``preferred_element_type=int32``), then rescales the int32 sums by
``s · scale_c`` and adds the float bias. A BatchNorm that follows a
convolution or a Dense layer is folded into it first (its scale into the
kernel, its shift into the bias), so it costs nothing at inference::

    qm = jdl.quantize.quantize(model, variables, calibration_batches)       # static PTQ
    logits = qm.apply(x)                                                     # int8 arithmetic
    qm.nbytes(), jdl.quantize.float_nbytes(variables)                       # ~4x smaller

The quantized layers are every ``flax.linen.Dense`` and ``Conv`` (jdl's are
subclasses); a model with another layer that has parameters (a ``PReLU``, a
``LayerNorm``, an embedding) is refused with the layer named, unless it is
listed in ``keep_float`` (it then runs in float32 between int8 layers).
``jdl quantize RUN_DIR`` does it for a trained run and measures it
(docs/quantization.md).

Quantization-aware training (``config.quantization.enabled``) runs the same
layers with fake quantization (values rounded to the int8 grid, gradients
passed straight through the rounding: Bengio et al. 2013's straight-through
estimator; Jacob et al. 2018), so the network learns weights that survive the
conversion; ``jdl quantize`` then converts it as any other run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen import linear as flax_linear

QMAX = 127
METHODS = ("static", "dynamic")
CALIBRATIONS = ("minmax", "percentile")


class UnsupportedLayerError(ValueError):
  """A layer with parameters the quantizer cannot run in int8."""


# --- numbers ----------------------------------------------------------------------------------------------------


def quantize_kernel(kernel: Any) -> tuple[jax.Array, jax.Array]:
  """Symmetric per-output-channel int8: ``(q int8, scale [out])`` with ``kernel ≈ q · scale`` (last axis = out).

  A channel of zeros gets scale 1 (its integers are 0).
  """
  kernel = jnp.asarray(kernel, jnp.float32)
  axes = tuple(range(kernel.ndim - 1))
  absmax = jnp.max(jnp.abs(kernel), axis=axes)
  scale = jnp.where(absmax > 0, absmax / QMAX, 1.0)
  q = jnp.clip(jnp.round(kernel / _channels(scale, kernel.ndim)), -QMAX, QMAX).astype(jnp.int8)
  return q, scale.astype(jnp.float32)


def _channels(per_channel: jax.Array, ndim: int) -> jax.Array:
  """A per-output-channel vector shaped to broadcast against an array of ``ndim`` axes (channels last)."""
  return per_channel.reshape((1,) * (ndim - 1) + (-1,))


def quantize_tensor(x: jax.Array, scale: jax.Array) -> jax.Array:
  """``round(x / scale)`` clipped to [-127, 127], as int8 (per-tensor ``scale``)."""
  return jnp.clip(jnp.round(x / scale), -QMAX, QMAX).astype(jnp.int8)


def dynamic_scale(x: jax.Array) -> jax.Array:
  """The per-tensor scale of ``x`` itself: ``max|x| / 127`` (1 for an all-zero tensor)."""
  absmax = jnp.max(jnp.abs(x))
  return jnp.where(absmax > 0, absmax / QMAX, 1.0).astype(jnp.float32)


def fake_quant(x: jax.Array, scale: jax.Array) -> jax.Array:
  """``x`` rounded to the int8 grid of ``scale``, with the straight-through gradient (identity)."""
  q = jnp.clip(jnp.round(x / scale), -QMAX, QMAX) * scale
  return x + jax.lax.stop_gradient(q - x)


def sqnr_db(reference: Any, approximation: Any) -> float:
  """Signal-to-quantization-noise ratio ``10 log10(Σ ref² / Σ (ref - approx)²)`` in dB (inf when equal)."""
  ref, approx = np.asarray(reference, np.float64), np.asarray(approximation, np.float64)
  noise = float(np.sum((ref - approx) ** 2))
  return math.inf if noise == 0 else 10.0 * math.log10(float(np.sum(ref ** 2)) / noise)


# --- the layers -------------------------------------------------------------------------------------------------


def _path(module: nn.Module) -> str:
  return "/".join(module.path)


def _kind(module: nn.Module) -> str | None:
  if isinstance(module, nn.Dense):
    return "dense"
  if isinstance(module, nn.Conv):
    return "conv"
  if isinstance(module, nn.BatchNorm):
    return "batch_norm"
  return None


def _conv_settings(module: nn.Conv, x: jax.Array) -> dict[str, Any]:
  """``lax.conv_general_dilated``'s arguments for a Flax ``Conv`` on ``x`` (one batch axis)."""
  kernel_size = (module.kernel_size,) if isinstance(module.kernel_size, int) else tuple(module.kernel_size)
  n = len(kernel_size)

  def each(v):
    v = 1 if v is None else v
    return (v,) * n if isinstance(v, int) else tuple(v)

  padding = flax_linear.canonicalize_padding(module.padding, n)
  if padding in ("CIRCULAR", "REFLECT", "CAUSAL") or getattr(module, "mask", None) is not None:
    raise UnsupportedLayerError(f"{_path(module)}: padding {module.padding!r} or a kernel mask is not supported "
                                "in int8; keep the layer in float (keep_float)")
  if x.ndim != n + 2:
    raise UnsupportedLayerError(f"{_path(module)}: int8 convolutions take one batch axis, got an input of shape "
                                f"{tuple(x.shape)}")
  return {"window_strides": each(module.strides), "padding": padding, "lhs_dilation": each(module.input_dilation),
          "rhs_dilation": each(module.kernel_dilation),
          "dimension_numbers": flax_linear._conv_dimension_numbers(x.shape),  # pylint: disable=protected-access
          "feature_group_count": module.feature_group_count}


def _float_layer(module: nn.Module, x: jax.Array, kernel: jax.Array, bias: jax.Array | None) -> jax.Array:
  """The layer's float computation with a given kernel and bias (fake quantization, folding checks)."""
  if isinstance(module, nn.Dense):
    y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
  else:  # jdl's Conv names its convolution (fast gradients on a CPU); Flax's uses lax's
    conv = getattr(module, "conv_general_dilated", None) or jax.lax.conv_general_dilated
    y = conv(x, kernel, **_conv_settings(module, x))
  if bias is not None:
    y = y + bias.reshape((1,) * (y.ndim - 1) + (-1,))
  return y


def _int8_conv(qx: jax.Array, qw: jax.Array, settings: Mapping[str, Any]) -> jax.Array:
  """``int8 ⊛ int8 → int32``. Where jdl's float convolution takes its patches path on a CPU (few input channels
  or a 1×1 window: ``jdl.nn.conv``), so does this one: int8 patches times the int8 kernel in one int32 matrix
  product; elsewhere ``lax.conv_general_dilated`` with an int32 result."""
  from jdl.nn import conv as conv_lib  # pylint: disable=g-import-not-at-top

  spatial = qx.ndim - 2
  kernel = tuple(qw.shape[:spatial])
  strides, dilation = tuple(settings["window_strides"]), tuple(settings["rhs_dilation"])
  padding = settings["padding"]
  if isinstance(padding, str):
    window = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    padding = jax.lax.padtype_to_pads(qx.shape[1:-1], window, strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  if (settings["feature_group_count"] == 1 and all(d == 1 for d in settings["lhs_dilation"])
      and conv_lib.use_canonical_path()):
    out = conv_lib._out_shape(qx.shape, kernel, strides, pads, dilation)  # pylint: disable=protected-access
    if conv_lib._use_im2col(qx.shape, qw.shape, out, 1, 1):  # pylint: disable=protected-access
      patches = conv_lib._patches(qx, kernel, strides, pads, dilation, out)  # pylint: disable=protected-access
      return jax.lax.dot_general(patches, qw.reshape(-1, qw.shape[-1]), (((patches.ndim - 1,), (0,)), ((), ())),
                                 preferred_element_type=jnp.int32)
  return jax.lax.conv_general_dilated(qx, qw, strides, pads, lhs_dilation=settings["lhs_dilation"],
                                      rhs_dilation=dilation, dimension_numbers=settings["dimension_numbers"],
                                      feature_group_count=settings["feature_group_count"],
                                      preferred_element_type=jnp.int32)


def _int8_layer(module: nn.Module, x: jax.Array, layer: Mapping[str, jax.Array]) -> jax.Array:
  """``int8(x) × int8(kernel) → int32``, rescaled to float, plus the bias."""
  x = x.astype(jnp.float32)
  scale = layer["act_scale"] if "act_scale" in layer else dynamic_scale(x)
  qx = quantize_tensor(x, scale)
  if isinstance(module, nn.Dense):
    acc = jax.lax.dot_general(qx, layer["kernel"], (((x.ndim - 1,), (0,)), ((), ())),
                              preferred_element_type=jnp.int32)
  else:
    acc = _int8_conv(qx, layer["kernel"], _conv_settings(module, x))
  shape = (1,) * (acc.ndim - 1) + (-1,)
  y = acc.astype(jnp.float32) * (scale * layer["scale"]).reshape(shape)
  if "bias" in layer:
    y = y + layer["bias"].reshape(shape)
  return y


@dataclasses.dataclass(frozen=True)
class LayerInfo:
  path: str
  kind: str | None  # dense, conv, batch_norm, or None (another module)
  type_name: str
  has_params: bool
  folds_into: str | None = None  # a BatchNorm right after a Dense/Conv: that layer's path
  epsilon: float | None = None  # a BatchNorm's


def inspect_layers(model: nn.Module, variables: Mapping[str, Any], x: Any) -> list[LayerInfo]:
  """Every module the model calls on ``x``, in call order, with what the quantizer makes of it.

  Traced with ``jax.eval_shape``: nothing runs. A BatchNorm whose input is the
  output of the Dense or Conv called just before it (and which adds no bias
  after it, or whose bias is then folded too) ``folds_into`` that layer.
  """
  params = variables.get("params", {})
  seen: dict[str, LayerInfo] = {}
  last: dict[str, Any] = {}

  def record(next_fun, args, kwargs, context):
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    module = context.module
    path, kind = _path(module), _kind(module)
    node = params
    for part in module.path:
      node = node.get(part, {}) if hasattr(node, "get") else {}
    own = hasattr(node, "items") and any(not hasattr(v, "items") for v in node.values())
    folds = None
    if kind == "batch_norm" and args and last.get("output") is not None and args[0] is last["output"]:
      folds = last["path"]
    out = next_fun(*args, **kwargs)
    if path and path not in seen:
      seen[path] = LayerInfo(path, kind, type(module).__name__, own, folds,
                             float(module.epsilon) if kind == "batch_norm" else None)
    last.update(output=out if kind in ("dense", "conv") else None, path=path)
    return out

  with nn.intercept_methods(record):
    jax.eval_shape(lambda v, x: model.apply(v, x, train=False), dict(variables), x)
  return list(seen.values())


def _get(tree: Mapping[str, Any], path: str) -> Any:
  node = tree
  for part in path.split("/"):
    node = node[part]
  return node


def fold_batch_norm(variables: Mapping[str, Any],
                    layers: Sequence[LayerInfo]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
  """The float kernels and biases with every foldable BatchNorm folded in.

  ``w' = w · γ / √(σ² + ε)`` per output channel and ``b' = (b - μ) · γ / √(σ² + ε) + β``.

  Returns:
    ``({layer path: {"kernel", "bias" (or None)}}`` for every Dense and Conv,
    ``{BatchNorm path: its layer's path}``).
  """
  params, stats = variables.get("params", {}), variables.get("batch_stats", {})
  weights: dict[str, Any] = {}
  for info in layers:
    if info.kind in ("dense", "conv"):
      node = _get(params, info.path)
      weights[info.path] = {"kernel": jnp.asarray(node["kernel"], jnp.float32),
                            "bias": None if "bias" not in node else jnp.asarray(node["bias"], jnp.float32)}
  folded = {}
  for info in layers:
    if info.kind != "batch_norm" or info.folds_into is None:
      continue
    bn, bn_stats = _get(params, info.path) if info.has_params else {}, _get(stats, info.path)
    target = weights[info.folds_into]
    gamma = jnp.asarray(bn.get("scale", 1.0), jnp.float32)
    beta = jnp.asarray(bn.get("bias", 0.0), jnp.float32)
    factor = gamma / jnp.sqrt(jnp.asarray(bn_stats["var"], jnp.float32) + info.epsilon)
    bias = target["bias"] if target["bias"] is not None else 0.0
    target["kernel"] = target["kernel"] * _channels(factor, target["kernel"].ndim)
    target["bias"] = (bias - jnp.asarray(bn_stats["mean"], jnp.float32)) * factor + beta
    folded[info.path] = info.folds_into
  return weights, folded


# --- the quantized model ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class QuantizedModel:
  """A model whose Dense and Conv layers run in int8.

  Attributes:
    model: the Flax module.
    rest: the variables the int8 layers do not replace (layers kept in float).
    layers: ``{path: {"kernel": int8, "scale": [out], "bias": [out] (if any), "act_scale": () (static)}}``.
    folded: ``{BatchNorm path: the layer it was folded into}``.
    method: ``"static"`` or ``"dynamic"``.
  """

  model: nn.Module
  rest: dict[str, Any]
  layers: dict[str, dict[str, jax.Array]]
  folded: dict[str, str]
  method: str
  _jitted: Any = dataclasses.field(default=None, repr=False)

  def interceptor(self, layers: Mapping[str, Any] | None = None) -> Callable[..., Any]:
    layers = self.layers if layers is None else layers
    folded = self.folded

    def run(next_fun, args, kwargs, context):
      if context.method_name == "__call__":
        path = _path(context.module)
        if path in layers:
          return _int8_layer(context.module, args[0], layers[path])
        if path in folded:
          return args[0]
      return next_fun(*args, **kwargs)

    return run

  def apply_with(self, rest: Mapping[str, Any], layers: Mapping[str, Any], x: jax.Array) -> jax.Array:
    """Pure: the int8 model's outputs for ``x`` with the given arrays (what ``apply`` jits)."""
    with nn.intercept_methods(self.interceptor(layers)):
      return self.model.apply(dict(rest), x, train=False)

  def apply(self, x: Any) -> jax.Array:
    """The int8 model's outputs for ``x`` (compiled once per input shape)."""
    if self._jitted is None:
      self._jitted = jax.jit(self.apply_with)
    return self._jitted(self.rest, self.layers, jnp.asarray(x))

  def arrays(self) -> dict[str, Any]:
    """Everything the int8 model needs: ``{"rest": ..., "layers": ...}`` (what a quantized checkpoint holds)."""
    return {"rest": self.rest, "layers": self.layers}

  def nbytes(self) -> int:
    """Bytes of the arrays ``arrays()`` holds (int8 kernels, float32 scales and biases, float layers)."""
    return sum(int(np.asarray(a).nbytes) for a in jax.tree.leaves(self.arrays()))


def float_nbytes(variables: Mapping[str, Any]) -> int:
  """Bytes of a float model's variables (parameters and BatchNorm statistics)."""
  return sum(int(np.asarray(a).nbytes) for a in jax.tree.leaves(dict(variables)))


def _check_layers(layers: Sequence[LayerInfo], keep_float: Iterable[str]) -> None:
  keep = set(keep_float)
  unknown = sorted(keep - {info.path for info in layers})
  if unknown:
    raise ValueError(f"keep_float: {', '.join(unknown)} not among the model's layers "
                     f"({', '.join(info.path for info in layers)})")
  bad = [info for info in layers if info.has_params and info.kind is None and info.path not in keep]
  bad += [info for info in layers if info.kind == "batch_norm" and info.folds_into is None and info.path not in keep]
  if bad:
    names = ", ".join(f"{info.path} ({info.type_name}{', not after a Dense or Conv' if info.kind else ''})"
                      for info in bad)
    raise UnsupportedLayerError(f"quantize: the int8 quantizer runs Dense and Conv layers and folds a BatchNorm "
                                f"into the layer before it; it cannot quantize {names}. Keep them in float with "
                                f"keep_float=[{', '.join(repr(i.path) for i in bad)}] (jdl quantize --keep-float "
                                f"{','.join(i.path for i in bad)})")


def _capture_inputs(model, rest, weights, folded, x, paths):
  """Runs the float (folded) model on ``x``; returns ``{path: (input, output)}`` of the given layers."""
  seen: dict[str, Any] = {}

  def run(next_fun, args, kwargs, context):
    if context.method_name == "__call__":
      path = _path(context.module)
      if path in weights:
        out = _float_layer(context.module, args[0].astype(jnp.float32), weights[path]["kernel"],
                           weights[path]["bias"])
        if path in paths:
          seen[path] = (args[0], out)
        return out
      if path in folded:
        return args[0]
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(run):
    logits = model.apply(dict(rest), x, train=False)
  return seen, logits


def quantize(model: nn.Module, variables: Mapping[str, Any], calibration: Iterable[Any] = (), *,
             method: str = "static", calibration_method: str = "minmax", percentile: float = 99.99,
             keep_float: Sequence[str] = ()) -> QuantizedModel:
  """Post-training int8 quantization of ``model`` at ``variables``.

  Args:
    model, variables: the float model (``variables`` with ``params`` and any
      ``batch_stats``), in evaluation mode.
    calibration: input batches (as the network takes them) for the static
      activation scales; at least one (the first also gives the layers'
      shapes). Dynamic quantization needs one for the shapes only.
    method: ``"static"`` (activation scales fixed by calibration) or
      ``"dynamic"`` (each batch's own ``max|x|``).
    calibration_method: ``"minmax"`` (the largest ``|x|`` over the batches)
      or ``"percentile"`` (the mean over the batches of the ``percentile``-th
      percentile of ``|x|``: outliers clipped).
    keep_float: paths of layers to leave in float32.

  Raises:
    ValueError: bad arguments, no calibration batch.
    UnsupportedLayerError: a layer with parameters that is not a Dense, a
      Conv or a foldable BatchNorm, and not in ``keep_float``.
  """
  if method not in METHODS:
    raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
  if calibration_method not in CALIBRATIONS:
    raise ValueError(f"calibration_method: expected one of {', '.join(CALIBRATIONS)}, got {calibration_method!r}")
  if not 0 < float(percentile) <= 100:
    raise ValueError(f"percentile: expected a number in (0, 100], got {percentile!r}")
  batches = [jnp.asarray(b) for b in calibration]
  if not batches:
    raise ValueError("calibration: expected at least one batch of inputs, got none (calibration_batches must be "
                     ">= 1)")
  variables = dict(variables)
  infos = inspect_layers(model, variables, batches[0])
  _check_layers(infos, keep_float)
  keep = set(keep_float)
  # A BatchNorm that would fold into a layer kept in float stays in float with it.
  keep |= {i.path for i in infos if i.kind == "batch_norm" and i.folds_into in keep}
  infos = [i for i in infos if i.path not in keep]
  weights, folded = fold_batch_norm(variables, infos)
  rest = _without(variables, [*weights, *folded])
  scales: dict[str, list[jax.Array]] = {p: [] for p in weights}
  if method == "static":
    capture = jax.jit(lambda rest, weights, x: _capture_inputs(model, rest, weights, folded, x, set(weights))[0])
    for batch in batches:
      seen = capture(rest, weights, batch)
      for path, (inputs, _) in seen.items():
        a = jnp.abs(inputs.astype(jnp.float32)).ravel()
        scales[path].append(jnp.max(a) if calibration_method == "minmax" else jnp.percentile(a, percentile))
  layers = {}
  for path, w in weights.items():
    q, s = quantize_kernel(w["kernel"])
    layer = {"kernel": q, "scale": s}
    if w["bias"] is not None:
      layer["bias"] = w["bias"]
    if method == "static":
      if not scales[path]:
        raise ValueError(f"quantize: the layer {path} was not called on the calibration batches")
      values = jnp.stack(scales[path])
      top = jnp.max(values) if calibration_method == "minmax" else jnp.mean(values)
      layer["act_scale"] = jnp.where(top > 0, top / QMAX, 1.0).astype(jnp.float32)
    layers[path] = layer
  return QuantizedModel(model=model, rest=rest, layers=layers, folded=folded, method=method)


def _without(variables: Mapping[str, Any], paths: Sequence[str]) -> dict[str, Any]:
  """``variables`` without the subtrees at ``paths`` (in every collection), empty dicts pruned."""
  def prune(node, prefix):
    out = {}
    for name, value in node.items():
      path = f"{prefix}/{name}" if prefix else str(name)
      if path in paths:
        continue
      if hasattr(value, "items"):
        value = prune(value, path)
        if not value:
          continue
      out[name] = value
    return out

  pruned = {collection: prune(dict(tree), "") for collection, tree in variables.items() if hasattr(tree, "items")}
  return {collection: tree for collection, tree in pruned.items() if tree}


def layer_sqnr(qm: QuantizedModel, variables: Mapping[str, Any], x: Any) -> dict[str, float]:
  """Each int8 layer's output against the float model's, in dB, on inputs ``x`` (errors accumulate through the
  network: layer k sees the int8 layers before it)."""
  x = jnp.asarray(x)
  float_out: dict[str, Any] = {}
  int_out: dict[str, Any] = {}

  def capture(store, quantized):
    def run(next_fun, args, kwargs, context):
      if context.method_name == "__call__":
        path = _path(context.module)
        if quantized and path in qm.layers:
          store[path] = _int8_layer(context.module, args[0], qm.layers[path])
          return store[path]
        if quantized and path in qm.folded:
          return args[0]
        if not quantized and path in qm.layers:
          store[path] = next_fun(*args, **kwargs)
          return store[path]
        if not quantized and path in qm.folded:  # compare with the layer's output after its BatchNorm
          out = next_fun(*args, **kwargs)
          store[qm.folded[path]] = out
          return out
      return next_fun(*args, **kwargs)
    return run

  def both(variables, rest, layers, x):
    with nn.intercept_methods(capture(float_out, False)):
      qm.model.apply(dict(variables), x, train=False)
    with nn.intercept_methods(capture(int_out, True)):
      qm.model.apply(dict(rest), x, train=False)
    return dict(float_out), dict(int_out)

  f, q = jax.jit(both)(dict(variables), qm.rest, qm.layers, x)
  return {path: sqnr_db(f[path], q[path]) for path in qm.layers if path in f and path in q}


# --- quantization-aware training --------------------------------------------------------------------------------


def fake_quant_interceptor(next_fun, args, kwargs, context):
  """Runs every Dense and Conv with fake-quantized weights (per output channel) and input (per tensor, the
  batch's own range), gradients straight through; other modules unchanged. Only in ``apply``: at ``init`` the
  layers create their parameters as usual."""
  module = context.module
  if context.method_name != "__call__" or _kind(module) not in ("dense", "conv") or module.is_initializing():
    return next_fun(*args, **kwargs)
  kernel = module.get_variable("params", "kernel")
  bias = module.get_variable("params", "bias") if module.use_bias else None
  if kernel is None:
    return next_fun(*args, **kwargs)
  x = args[0].astype(jnp.float32)
  kernel = jnp.asarray(kernel, jnp.float32)
  _, w_scale = quantize_kernel(jax.lax.stop_gradient(kernel))
  x_scale = jax.lax.stop_gradient(dynamic_scale(x))
  return _float_layer(module, fake_quant(x, x_scale), fake_quant(kernel, _channels(w_scale, kernel.ndim)), bias)


def fake_quant_apply(apply_fn: Callable[..., Any]) -> Callable[..., Any]:
  """``apply_fn`` (a ``model.apply``) with every Dense and Conv fake-quantized (``fake_quant_interceptor``)."""
  def apply(*args, **kwargs):
    with nn.intercept_methods(fake_quant_interceptor):
      return apply_fn(*args, **kwargs)

  return apply
