"""Pretrained weights from the files people have: PyTorch state dicts (torchvision's names) and Keras files.

    module, variables = jdl.models.from_torchvision("resnet18", "resnet18-f37072fd.pth")
    logits = module.apply(variables, images_NHWC, train=False)    # images in [0, 1]

    module, variables = jdl.models.from_keras("vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels.h5")

Both return ``(module, variables)``: a zoo model built with the options the file
implies (head width, hidden widths, Keras' padding and BatchNorm epsilon, the
input normalisation its weights were trained with) and its variables, BatchNorm
running statistics included, so that ``module.apply(variables, x, train=False)``
gives the source network's eval-mode logits. Every parameter is accounted for:
a file of another architecture is an error listing the missing, unexpected and
wrongly shaped parameters by name. A ``num_classes`` other than the file's
replaces the head with a freshly initialised one (and says so).

Files are data, never code: ``.pth``/``.pt`` files are read with
``torch.load(weights_only=True)``, ``.safetensors`` with the safetensors
library, Keras files with h5py.

Supported:

* PyTorch (torchvision's parameter names): ``resnet18``, ``resnet34``,
  ``resnet50``, ``resnet101``, ``vgg11``…``vgg19`` and their ``_bn`` variants,
  ``alexnet``, ``mobilenet_v2``;
* Keras (``keras.applications``; legacy ``.h5`` files such as the ImageNet
  downloads, Keras 3 ``.weights.h5`` and ``.keras`` files): ``vgg16``,
  ``vgg19``, ``resnet50``, ``resnet101`` (the original ResNet: the stride on the
  first 1×1 convolution, convolutions with biases) and ``mobilenet_v2`` (SAME
  padding, BatchNorm epsilon 1e-3).
  Keras' ``ResNet50V2`` (pre-activation) and ``MobileNet`` (v1) are other
  architectures than the zoo's and cannot be loaded into them.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import io
import os
import pathlib
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jdl.models import _registry
from jdl.models.vgg import CONFIGS as VGG_CONFIGS
from jdl.nn.layers import Dense

Path = tuple[str, ...]
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")

# Kinds of layers, named as Keras names its layer classes (Keras 3 files name layers after them).
CONV, DEPTHWISE, DENSE, BN = "conv2d", "depthwise_conv2d", "dense", "batch_normalization"


@dataclasses.dataclass(frozen=True)
class Layer:
  """One layer with parameters: where it sits in jdl's model and what the source file calls it."""

  path: Path
  kind: str
  source: str
  flatten: tuple[int, int, int] | None = None  # (height, width, channels) a torch Linear's input was flattened from


@dataclasses.dataclass(frozen=True)
class _Arch:
  zoo: str  # the zoo model loaded into
  head: Path  # the classifier layer a num_classes change replaces
  options: Mapping[str, Any]  # model options the source's weights imply
  layers: Callable[[Mapping[str, Any], Mapping[Path, Mapping[str, tuple[int, ...]]]], list[Layer]]


# --------------------------------------------------------------------------- #
# torchvision's names.
# --------------------------------------------------------------------------- #


def _torch_resnet(options, modules) -> list[Layer]:
  del options
  inner = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}
  out = []
  for path, leaves in modules.items():
    if path == ("stem_conv",):
      source = "conv1"
    elif path == ("stem_bn",):
      source = "bn1"
    elif path == ("fc",):
      source = "fc"
    else:
      stage, block = path[0].split("_")
      source = f"{stage}.{block}.{inner.get(path[1], path[1])}"
    out.append(Layer(path, _kind(path, leaves), source))
  return out


def _vgg_positions(config: Sequence[int], batch_norm: bool) -> list[int]:
  """``features.N`` index of each convolution in torchvision's VGG (its BatchNorm is N + 1)."""
  positions, n = [], 0
  for channels in config:
    if channels == 0:
      n += 1
    else:
      positions.append(n)
      n += 3 if batch_norm else 2
  return positions


def _torch_vgg(options, modules) -> list[Layer]:
  positions = _vgg_positions(options["config"], options.get("batch_norm", False))
  last = [c for c in options["config"] if c][-1]
  out = []
  for path, leaves in modules.items():
    kind, name = _kind(path, leaves), path[0]
    i = int(name.rsplit("_", 1)[1])
    if name.startswith("conv_"):
      source = f"features.{positions[i]}"
    elif name.startswith("bn_"):
      source = f"features.{positions[i] + 1}"
    else:
      source = f"classifier.{(0, 3, 6)[i]}"
    pool = int(options.get("pool_size", 7))
    out.append(Layer(path, kind, source, flatten=(pool, pool, last) if name == "fc_0" else None))
  return out


def _torch_alexnet(options, modules) -> list[Layer]:
  out = []
  for path, leaves in modules.items():
    name = path[0]
    i = int(name.rsplit("_", 1)[1])
    pool = int(options.get("pool_size", 6))
    if name.startswith("features_"):
      out.append(Layer(path, CONV, f"features.{(0, 3, 6, 8, 10)[i]}"))
    else:
      out.append(Layer(path, DENSE, f"classifier.{(1, 4, 6)[i]}",
                       flatten=(pool, pool, 256) if i == 0 else None))
  del leaves
  return out


def _torch_mobilenet_v2(options, modules) -> list[Layer]:
  del options
  blocks = sorted({int(p[0].split("_")[1]) for p in modules if p[0].startswith("block_")})
  expands = {b for b in blocks if ("block_" + str(b), "expand_conv") in modules}
  out = []
  for path, leaves in modules.items():
    name = path[0]
    if name in ("stem_conv", "stem_bn"):
      source = f"features.0.{0 if name == 'stem_conv' else 1}"
    elif name in ("last_conv", "last_bn"):
      source = f"features.{len(blocks) + 1}.{0 if name == 'last_conv' else 1}"
    elif name == "classifier":
      source = "classifier.1"
    else:
      b = int(name.split("_")[1])
      order = (["expand_conv", "expand_bn"] if b in expands else []) + ["depthwise_conv", "depthwise_bn"]
      part = path[1]
      if part in order:  # conv-BN-ReLU6 groups: conv.K.0 and conv.K.1
        k = order.index(part)
        source = f"features.{b + 1}.conv.{k // 2}.{k % 2}"
      else:  # the projection and its BatchNorm: conv.K and conv.K+1
        base = len(order) // 2
        source = f"features.{b + 1}.conv.{base + (part == 'project_bn')}"
    out.append(Layer(path, _kind(path, leaves), source))
  return out


def _kind(path: Path, leaves: Mapping[str, tuple[int, ...]]) -> str:
  if "mean" in leaves:
    return BN
  kernel = leaves["kernel"]
  if len(kernel) == 2:
    return DENSE
  return DEPTHWISE if "depthwise" in path[-1] else CONV


_TORCHVISION: dict[str, _Arch] = {
    **{name: _Arch(name, ("fc",), {}, _torch_resnet) for name in ("resnet18", "resnet34", "resnet50", "resnet101")},
    **{name: _Arch(name, ("fc_2",), {}, _torch_vgg) for name in VGG_CONFIGS},
    **{f"{name}_bn": _Arch(f"{name}_bn", ("fc_2",), {}, _torch_vgg) for name in VGG_CONFIGS},
    "alexnet": _Arch("alexnet", ("classifier_2",), {}, _torch_alexnet),
    "mobilenet_v2": _Arch("mobilenet_v2", ("classifier",), {}, _torch_mobilenet_v2),
}


# --------------------------------------------------------------------------- #
# keras.applications' names, in the order of the Keras model's ``layers``
# (Keras 3 files number their layers in that order, per class).
# --------------------------------------------------------------------------- #


def _keras_vgg(options, modules) -> list[Layer]:
  del modules
  out, block, k, i = [], 1, 0, 0
  for channels in options["config"]:
    if channels == 0:
      block, k = block + 1, 0
      continue
    k += 1
    out.append(Layer((f"conv_{i}",), CONV, f"block{block}_conv{k}"))
    i += 1
  out += [Layer(("fc_0",), DENSE, "fc1"), Layer(("fc_1",), DENSE, "fc2"), Layer(("fc_2",), DENSE, "predictions")]
  return out


def _keras_resnet(options, modules) -> list[Layer]:
  del modules
  out = [Layer(("stem_conv",), CONV, "conv1_conv"), Layer(("stem_bn",), BN, "conv1_bn")]
  jdl_name = {"0_conv": "downsample_conv", "0_bn": "downsample_bn", "1_conv": "conv1", "1_bn": "bn1",
              "2_conv": "conv2", "2_bn": "bn2", "3_conv": "conv3", "3_bn": "bn3"}
  for s, n in enumerate(options["stage_sizes"]):
    for b in range(n):
      # Keras lists the shortcut's convolution after the second convolution's BatchNorm.
      parts = (["1_conv", "1_bn", "2_conv", "2_bn", "0_conv", "3_conv", "0_bn", "3_bn"] if b == 0 else
               ["1_conv", "1_bn", "2_conv", "2_bn", "3_conv", "3_bn"])
      for part in parts:
        out.append(Layer((f"layer{s + 1}_{b}", jdl_name[part]), BN if part.endswith("bn") else CONV,
                         f"conv{s + 2}_block{b + 1}_{part}"))
  out.append(Layer(("fc",), DENSE, "predictions"))
  return out


def _keras_mobilenet_v2(options, modules) -> list[Layer]:
  del options
  blocks = sorted({int(p[0].split("_")[1]) for p in modules if p[0].startswith("block_")})
  out = [Layer(("stem_conv",), CONV, "Conv1"), Layer(("stem_bn",), BN, "bn_Conv1")]
  for b in blocks:
    prefix = "expanded_conv" if b == 0 else f"block_{b}"
    parts = [] if (f"block_{b}", "expand_conv") not in modules else [("expand_conv", CONV, "expand"),
                                                                      ("expand_bn", BN, "expand_BN")]
    parts += [("depthwise_conv", DEPTHWISE, "depthwise"), ("depthwise_bn", BN, "depthwise_BN"),
              ("project_conv", CONV, "project"), ("project_bn", BN, "project_BN")]
    out += [Layer((f"block_{b}", part), kind, f"{prefix}_{suffix}") for part, kind, suffix in parts]
  out += [Layer(("last_conv",), CONV, "Conv_1"), Layer(("last_bn",), BN, "Conv_1_bn"),
          Layer(("classifier",), DENSE, "predictions")]
  return out


_KERAS_RESNET = {"downsample_in": "1x1", "conv_bias": True, "bn_epsilon": 1.001e-5}
_KERAS: dict[str, _Arch] = {
    "vgg16": _Arch("vgg16", ("fc_2",), {}, _keras_vgg),
    "vgg19": _Arch("vgg19", ("fc_2",), {}, _keras_vgg),
    "resnet50": _Arch("resnet50", ("fc",), _KERAS_RESNET, _keras_resnet),
    "resnet101": _Arch("resnet101", ("fc",), _KERAS_RESNET, _keras_resnet),
    "mobilenet_v2": _Arch("mobilenet_v2", ("classifier",), {"padding": "same", "bn_epsilon": 1e-3}, _keras_mobilenet_v2),
}
_KERAS_PREPROCESS = {"vgg16": "caffe", "vgg19": "caffe", "resnet50": "caffe", "resnet101": "caffe", "mobilenet_v2": "tf"}


def keras_preprocess(model: str) -> str | None:
  """What ``keras.applications``' ``preprocess_input`` does for ``model`` (None: not a loadable Keras model)."""
  return _KERAS_PREPROCESS.get(model.lower()) if isinstance(model, str) else None


def implied_options(source: str, model: str) -> dict[str, Any]:
  """The model options a file's weights need: its input normalisation and, for Keras, the architecture's
  differences from torchvision's (padding, BatchNorm epsilon, convolution biases, stride placement).

  Args:
    source: ``"torch"`` or ``"keras"``.
    model: the zoo model the weights are loaded into.
  """
  if source == "torch":
    return {"preprocess": "torchvision"}
  arch = _KERAS.get(model.lower()) if isinstance(model, str) else None
  return {"preprocess": keras_preprocess(model), **(dict(arch.options) if arch else {})}


_KERAS_NOT_LOADABLE = {
    "resnet50v2": "Keras' ResNet50V2 is the pre-activation ResNet (BatchNorm and ReLU before each convolution); "
                  "the zoo's ResNet is post-activation",
    "mobilenet": "Keras' MobileNet is v1 (depthwise-separable blocks without residuals); the zoo has MobileNetV2",
}


# --------------------------------------------------------------------------- #
# Reading files.
# --------------------------------------------------------------------------- #


def _need(module: str, extra: str, what: str) -> Any:
  import importlib  # pylint: disable=g-import-not-at-top

  try:
    return importlib.import_module(module)
  except ImportError:
    raise ImportError(f"{what} needs the {module.split('.')[0]} package: pip install 'jdl[{extra}]' "
                      f"(or pip install {module.split('.')[0]})") from None


def _check_file(path: Any, where: str) -> pathlib.Path:
  if not isinstance(path, (str, os.PathLike)):
    raise TypeError(f"{where}: expected a file path, got {type(path).__name__} {path!r}")
  p = pathlib.Path(os.path.expanduser(os.fspath(path)))
  if not p.is_file():
    raise FileNotFoundError(f"{where}: no such file {str(p)!r}")
  return p


def read_torch_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """A PyTorch state dict as ``{name: float32 array}``, read without running any code from the file.

  ``.safetensors`` files are read with the safetensors library (no PyTorch
  needed); ``.pth``/``.pt``/``.bin`` files with ``torch.load(weights_only=True)``,
  which refuses pickled objects other than tensors and containers. A checkpoint
  that wraps its weights (``{"state_dict": ...}`` or ``{"model": ...}``) and the
  ``module.`` prefix of ``DataParallel`` are unwrapped.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is truncated, corrupt or holds no tensors.
  """
  where = "read_torch_state_dict"
  p = _check_file(path, where)
  if p.suffix == ".safetensors":
    numpy_st = _need("safetensors.numpy", "pretrained", ".safetensors files")
    try:
      raw: Mapping[str, Any] = numpy_st.load_file(str(p))
    except Exception as e:  # pylint: disable=broad-except  # safetensors raises its own error types
      raise ValueError(f"{where}: {str(p)!r} is not a readable .safetensors file (truncated or corrupt?): "
                       f"{type(e).__name__}: {e}") from None
  else:
    torch = _need("torch", "compare", "PyTorch .pth/.pt files")
    try:
      raw = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # pylint: disable=broad-except  # pickle, zip and torch errors alike
      raise ValueError(f"{where}: {str(p)!r} is not a readable PyTorch weights file (truncated, corrupt, or a "
                       f"pickle holding more than tensors, which weights_only=True refuses): "
                       f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}") from None
  for key in ("state_dict", "model", "model_state_dict"):
    if isinstance(raw, Mapping) and len(raw) <= 3 and isinstance(raw.get(key), Mapping):
      raw = raw[key]
      break
  if not isinstance(raw, Mapping):
    raise ValueError(f"{where}: {str(p)!r} holds a {type(raw).__name__}, not a state dict (a dict of tensors)")
  out = {}
  for name, value in raw.items():
    if hasattr(value, "detach"):  # a torch.Tensor
      value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
      continue
    name = name[len("module."):] if name.startswith("module.") else name
    out[name] = value
  if not out:
    raise ValueError(f"{where}: {str(p)!r} holds no tensors")
  return out


@dataclasses.dataclass
class KerasWeights:
  """The layers of a Keras weights file.

  ``named`` maps layer names to their weights (legacy ``.h5`` files keep the
  model's layer names); Keras 3 files name layers after their class, numbered
  in the model's layer order: ``by_kind`` maps each class (``conv2d``,
  ``batch_normalization``...) to its layers' weights in that order. Each layer's
  weights are ``{role: array}`` with roles ``kernel``, ``bias``, ``gamma``,
  ``beta``, ``moving_mean``, ``moving_variance``.
  """

  path: str
  named: dict[str, dict[str, np.ndarray]]
  by_kind: dict[str, list[tuple[str, dict[str, np.ndarray]]]]


_KERAS_ROLES = {
    CONV: ("kernel", "bias"),
    DEPTHWISE: ("kernel", "bias"),
    DENSE: ("kernel", "bias"),
    BN: ("gamma", "beta", "moving_mean", "moving_variance"),
}


def read_keras_weights(path: str | os.PathLike[str]) -> KerasWeights:
  """Reads a Keras weights file: legacy ``.h5`` (the ImageNet downloads), Keras 3 ``.weights.h5`` or ``.keras``.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is truncated, corrupt or not a Keras weights file.
  """
  where = "read_keras_weights"
  p = _check_file(path, where)
  h5py = _need("h5py", "pretrained", "Keras weight files")
  try:
    if p.suffix == ".keras":
      with zipfile.ZipFile(p) as archive:
        if "model.weights.h5" not in archive.namelist():
          raise ValueError(f"{where}: {str(p)!r} is a zip without model.weights.h5; not a .keras file")
        handle: Any = io.BytesIO(archive.read("model.weights.h5"))
    else:
      handle = str(p)
    with h5py.File(handle, "r") as f:
      return _read_h5(f, str(p), h5py)
  except ValueError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # h5py/zip errors on truncated files
    raise ValueError(f"{where}: {str(p)!r} is not a readable Keras weights file (truncated or corrupt?): "
                     f"{type(e).__name__}: {e}") from None


def _role(name: str) -> str:
  leaf = name.split("/")[-1].split(":")[0]
  return "kernel" if leaf == "depthwise_kernel" else leaf


def _read_h5(f: Any, where: str, h5py: Any) -> KerasWeights:
  group = f["model_weights"] if "model_weights" in f else f
  named: dict[str, dict[str, np.ndarray]] = {}
  by_kind: dict[str, list[tuple[str, dict[str, np.ndarray]]]] = {}
  if "layer_names" in group.attrs:  # the legacy format: one group per layer, its weights' names in an attribute
    for layer in group.attrs["layer_names"]:
      layer = layer.decode() if isinstance(layer, bytes) else str(layer)
      g = group[layer]
      names = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs.get("weight_names", [])]
      if names:
        named[layer] = {_role(n): np.asarray(g[n]) for n in names}
    return KerasWeights(where, named, by_kind)
  found: list[tuple[str, str, Any]] = []

  def visit(name: str, obj: Any) -> None:
    parts = name.split("/")
    if isinstance(obj, h5py.Group) and parts[-1] == "vars" and len(parts) >= 2:
      found.append((parts[-2], "/".join(parts[:-1]), obj))

  group.visititems(visit)
  if not found:
    raise ValueError(f"read_keras_weights: {where!r} holds no Keras layers (neither the legacy layout with "
                     "layer_names nor Keras 3's layers/NAME/vars)")
  for layer, full, vars_group in found:
    arrays = [np.asarray(vars_group[k]) for k in sorted(vars_group, key=int)]
    if not arrays:
      continue
    kind, _, number = layer.rpartition("_")
    if not number.isdigit():
      kind, number = layer, "0"
    roles = _KERAS_ROLES.get(kind)
    if roles is None:
      continue
    if kind == BN and len(arrays) != 4:
      raise ValueError(f"read_keras_weights: {full} has {len(arrays)} weights; a BatchNormalization with scale "
                       "and center has 4")
    weights = dict(zip(roles, arrays))
    named[layer] = weights
    by_kind.setdefault(kind, []).append((int(number), full, weights))  # type: ignore[arg-type]
  ordered = {k: [(full, w) for _, full, w in sorted(v, key=lambda t: t[0])] for k, v in by_kind.items()}
  return KerasWeights(where, {}, ordered)


# --------------------------------------------------------------------------- #
# Conversion.
# --------------------------------------------------------------------------- #


def _modules(shapes: Mapping[str, Any]) -> dict[Path, dict[str, tuple[int, ...]]]:
  """``{module path: {leaf: shape}}`` over ``params`` and ``batch_stats``, in the model's creation order."""
  out: dict[Path, dict[str, tuple[int, ...]]] = {}

  def walk(tree: Any, prefix: Path) -> None:
    for key, value in tree.items():
      if hasattr(value, "items"):
        walk(value, (*prefix, key))
      else:
        out.setdefault(prefix, {})[key] = tuple(value.shape)

  walk(shapes.get("params", {}), ())
  for path, leaves in _flat(shapes.get("batch_stats", {})).items():
    out.setdefault(path[:-1], {})[path[-1]] = tuple(leaves.shape)
  return out


def _flat(tree: Any, prefix: Path = ()) -> dict[Path, Any]:
  out = {}
  for key, value in tree.items():
    if hasattr(value, "items"):
      out.update(_flat(value, (*prefix, key)))
    else:
      out[(*prefix, key)] = value
  return out


def _unflat(flat: Mapping[Path, Any]) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for path, value in flat.items():
    node = out
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = value
  return out


def _torch_leaves(layer: Layer, get: Callable[[str], np.ndarray | None]) -> dict[str, np.ndarray | None]:
  """jdl's leaves of one layer from a torch state dict (None where the file lacks a tensor)."""
  p = layer.source
  if layer.kind == BN:
    return {"scale": get(f"{p}.weight"), "bias": get(f"{p}.bias"), "mean": get(f"{p}.running_mean"),
            "var": get(f"{p}.running_var")}
  weight, bias = get(f"{p}.weight"), get(f"{p}.bias")
  if weight is not None and layer.kind == DENSE:
    if layer.flatten is not None and weight.ndim == 2:  # torch flattens (C, H, W), jdl (H, W, C)
      h, w, c = layer.flatten
      if weight.shape[1] == c * h * w:
        weight = weight.reshape(weight.shape[0], c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1)
      else:
        weight = weight.T
    else:
      weight = weight.T
  elif weight is not None and weight.ndim == 4:
    weight = weight.transpose(2, 3, 1, 0)  # (out, in/groups, kh, kw) -> (kh, kw, in/groups, out)
  return {"kernel": weight, "bias": bias}


def _keras_leaves(layer: Layer, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray | None]:
  if layer.kind == BN:
    return {"scale": weights.get("gamma"), "bias": weights.get("beta"), "mean": weights.get("moving_mean"),
            "var": weights.get("moving_variance")}
  kernel = weights.get("kernel")
  if kernel is not None and layer.kind == DEPTHWISE and kernel.ndim == 4:
    kernel = kernel.transpose(0, 1, 3, 2)  # (kh, kw, channels, 1) -> (kh, kw, 1, channels)
  return {"kernel": kernel, "bias": weights.get("bias")}


_COLLECTION = {"mean": "batch_stats", "var": "batch_stats"}


def _mismatch_error(where: str, source: str, missing: list[str], unexpected: list[str], shapes: list[str]) -> ValueError:
  def listed(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:12]) + (f", … ({len(items)} in all)" if len(items) > 12 else "")
    return f"{title} ({len(items)}): {shown}" if items else ""

  parts = [p for p in (listed("missing from the file", missing), listed("unexpected in the file", unexpected),
                       listed("wrongly shaped", shapes)) if p]
  return ValueError(f"{where}: {source} does not fit the model; " + "; ".join(parts))


def convert(layers: Sequence[Layer], modules: Mapping[Path, Mapping[str, tuple[int, ...]]], *,
            leaves_of: Callable[[Layer], dict[str, np.ndarray | None] | None], skip: Sequence[Path] = (),
            unused: Callable[[], Sequence[str]] = list, where: str, source: str) -> dict[Path, np.ndarray]:
  """The model's variables taken from a file: ``{(collection, *path, leaf): array}``.

  Args:
    layers: the model's layers and their names in the file.
    modules: the model's ``{module path: {leaf: shape}}`` (``_modules``).
    leaves_of: a layer's jdl leaves from the file (None where the file lacks
      the layer; None values where it lacks a tensor).
    skip: module paths not taken from the file (a replaced head).
    unused: ``() -> the file's names that no layer took`` (listed as
      unexpected), called once every layer has taken its own.
    where, source: for the error message.

  Raises:
    ValueError: missing, unexpected or wrongly shaped parameters, listed by name.
  """
  out: dict[Path, np.ndarray] = {}
  missing, shapes = [], []
  for layer in layers:
    if layer.path in skip:
      continue
    expected = modules.get(layer.path)
    leaves = leaves_of(layer)
    if expected is None:
      continue
    for leaf, shape in expected.items():
      value = None if leaves is None else leaves.get(leaf)
      name = f"{'/'.join(layer.path)}/{leaf} ({layer.source})"
      if value is None:
        missing.append(name)
      elif tuple(value.shape) != tuple(shape):
        shapes.append(f"{name}: the model has {tuple(shape)}, the file {tuple(value.shape)}")
      else:
        out[(_COLLECTION.get(leaf, "params"), *layer.path, leaf)] = np.asarray(value, np.float32)
  covered = {layer.path for layer in layers}
  for path, leaves in modules.items():
    if path not in covered and path not in skip:
      missing += [f"{'/'.join(path)}/{leaf}" for leaf in leaves]
  extra = list(unused())
  if missing or extra or shapes:
    raise _mismatch_error(where, source, missing, extra, shapes)
  return out


# --------------------------------------------------------------------------- #
# The public loaders.
# --------------------------------------------------------------------------- #


def _arch(table: Mapping[str, _Arch], name: str, who: str) -> _Arch:
  if not isinstance(name, str):
    raise TypeError(f"{who}: expected a model name (a string), got {type(name).__name__} {name!r}")
  key = name.lower()
  if who == "from_keras" and key in _KERAS_NOT_LOADABLE:
    raise ValueError(f"{who}: {name!r} cannot be loaded: {_KERAS_NOT_LOADABLE[key]}")
  if key not in table:
    raise ValueError(f"{who}: no weight mapping for model {name!r}; supported: {', '.join(sorted(table))}")
  return table[key]


def _factory_options(zoo: str) -> dict[str, Any]:
  import inspect  # pylint: disable=g-import-not-at-top

  return {k: v for k, v in _registry.model_options(zoo).items() if v is not inspect.Parameter.empty}


def _modules_of(zoo: str, options: Mapping[str, Any], num_classes: int = 1) -> dict[Path, dict[str, tuple[int, ...]]]:
  """The zoo model's ``{module path: {leaf: shape}}``, traced abstractly (nothing is computed)."""
  module = _registry.create(zoo, num_classes=num_classes, **options)
  shape = (1, *(_registry.default_input_shape(zoo) or (224, 224, 3)))
  return _modules(jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(shape), train=False)))


def _fresh_head(module: nn.Module, head: Path, in_features: int, num_classes: int, seed: int) -> dict[Path, np.ndarray]:
  dense = Dense(num_classes, kernel_init=getattr(module, "kernel_init", "lecun_normal"))
  params = dense.init(jax.random.key(seed), jnp.zeros((1, in_features), jnp.float32))["params"]
  return {("params", *head, k): np.asarray(v) for k, v in params.items()}


def _note(message: str) -> None:
  print(f"jdl: {message}", file=sys.stderr, flush=True)


def _check_num_classes(who: str, num_classes: Any) -> None:
  if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                  or num_classes < 1):
    raise ValueError(f"{who}: num_classes must be a positive int or None (the file's), got {num_classes!r}")


def _build(who: str, arch: _Arch, options: dict[str, Any], defaults: Mapping[str, Any], file_classes: int,
           num_classes: int | None, leaves_of: Callable[[Layer], Any],
           unused_of: Callable[[Sequence[Layer], Sequence[Path]], list[str]], source: str,
           seed: int) -> tuple[nn.Module, dict[str, Any]]:
  """The module and its variables: every layer from the file, the head fresh when ``num_classes`` differs."""
  classes = file_classes if num_classes is None else num_classes
  modules = _modules_of(arch.zoo, options, file_classes)
  layers = arch.layers({**defaults, **options}, modules)
  skip = (arch.head,) if classes != file_classes else ()
  flat = convert(layers, modules, leaves_of=leaves_of, skip=skip, unused=lambda: unused_of(layers, skip), where=who,
                 source=source)
  module = _registry.create(arch.zoo, num_classes=classes, **options)
  if skip:
    flat.update(_fresh_head(module, arch.head, modules[arch.head]["kernel"][0], classes, seed))
    _note(f"{who}: the file's head has {file_classes} classes; {'/'.join(arch.head)} was replaced by a freshly "
          f"initialised one with {classes} (seed {seed})")
  return module, jax.tree.map(jnp.asarray, _unflat(flat))


def _head_layer(arch: _Arch, layers: Sequence[Layer]) -> Layer:
  return next(layer for layer in layers if layer.path == arch.head)


def from_torchvision(name: str, path: str | os.PathLike[str] | Mapping[str, Any], *, num_classes: int | None = None,
                     preprocess: str | None = "torchvision", seed: int = 0,
                     **options: Any) -> tuple[nn.Module, dict[str, Any]]:
  """A zoo model with the weights of a PyTorch state dict that uses torchvision's parameter names.

  Args:
    name: ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``, ``vgg11``…
      ``vgg19`` (and ``_bn``), ``alexnet`` or ``mobilenet_v2``.
    path: a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file, or a state dict
      already in memory (``{name: tensor or array}``).
    num_classes: the head's width; None keeps the file's. Another width
      replaces the head with a freshly initialised one (a note says so).
    preprocess: the input normalisation the model applies first (torchvision's
      ImageNet mean and std by default; None for none).
    seed: the new head's initialisation.
    **options: other model options (``jdl.models.model_options(name)``); the
      hidden widths and pooled size of VGG and AlexNet are read from the file.

  Returns:
    ``(module, variables)``: ``module.apply(variables, x, train=False)`` on NHWC
    images in [0, 1] gives the PyTorch model's eval-mode logits.

  Raises:
    ValueError: an unsupported name, an unreadable file, or a state dict that
      does not fit (missing, unexpected and wrongly shaped parameters listed).
  """
  who = "from_torchvision"
  arch = _arch(_TORCHVISION, name, who)
  _check_num_classes(who, num_classes)
  if isinstance(path, Mapping):
    state = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in path.items()}
    source = "the state dict"
  else:
    state, source = read_torch_state_dict(path), repr(str(path))
  defaults = _factory_options(arch.zoo)
  found: dict[str, Any] = {"preprocess": preprocess}
  if arch.zoo.startswith("vgg") or arch.zoo == "alexnet":  # the hidden widths and pooled size, from the first Linear
    first, channels = (("classifier.0", [c for c in defaults["config"] if c][-1]) if arch.zoo.startswith("vgg")
                       else ("classifier.1", 256))
    weight = state.get(f"{first}.weight")
    if weight is not None and weight.ndim == 2:
      found["hidden"] = int(weight.shape[0])
      pool = int(round((weight.shape[1] / channels) ** 0.5))
      if pool * pool * channels == weight.shape[1]:
        found["pool_size"] = pool
  options = {**{k: v for k, v in found.items() if k not in options}, **options}
  head = _head_layer(arch, arch.layers({**defaults, **options}, _modules_of(arch.zoo, options)))
  head_weight = state.get(f"{head.source}.weight")
  # Without the classifier (a file of another network), the comparison below lists everything that differs.
  file_classes = int(head_weight.shape[0]) if head_weight is not None else (num_classes or 1000)
  taken: set[str] = set()

  def fetch(key: str) -> Any:
    if key in state:
      taken.add(key)
    return state.get(key)

  def unused_of(layers: Sequence[Layer], skip: Sequence[Path]) -> list[str]:
    skipped = {layer.source for layer in layers if layer.path in skip}
    return sorted(k for k in state if k not in taken and not k.endswith("num_batches_tracked")
                  and k.rsplit(".", 1)[0] not in skipped)

  return _build(who, arch, options, defaults, file_classes, num_classes,
                lambda layer: _torch_leaves(layer, fetch), unused_of, source, seed)


def from_keras(name: str, path: str | os.PathLike[str], *, num_classes: int | None = None,
               preprocess: str | None = "auto", seed: int = 0, **options: Any) -> tuple[nn.Module, dict[str, Any]]:
  """A zoo model with the weights of a ``keras.applications`` model's file.

  Args:
    name: ``vgg16``, ``vgg19``, ``resnet50``, ``resnet101`` or ``mobilenet_v2``.
    path: a legacy ``.h5`` weights file (the ImageNet downloads,
      ``model.save_weights`` in Keras 2), a Keras 3 ``.weights.h5`` or a
      ``.keras`` file.
    num_classes: the head's width; None keeps the file's. Another width
      replaces the head with a freshly initialised one (a note says so).
    preprocess: the input normalisation the model applies first; ``"auto"``
      (default) is what the Keras application's ``preprocess_input`` does
      (``"caffe"`` for VGG and ResNet, ``"tf"`` for MobileNetV2).
    seed: the new head's initialisation.
    **options: other model options.

  Returns:
    ``(module, variables)``: ``module.apply(variables, x, train=False)`` on NHWC
    RGB images in [0, 1] gives the Keras model's logits (the model built with
    ``classifier_activation=None``; a softmax of them otherwise).

  Raises:
    ValueError: an unsupported name (Keras' ResNet50V2 and MobileNet v1 are
      other architectures), an unreadable file, or weights that do not fit.
  """
  who = "from_keras"
  arch = _arch(_KERAS, name, who)
  _check_num_classes(who, num_classes)
  weights, source = read_keras_weights(path), repr(str(path))
  defaults = _factory_options(arch.zoo)
  options = {**arch.options, **options}
  found: dict[str, Any] = {"preprocess": _KERAS_PREPROCESS[arch.zoo] if preprocess == "auto" else preprocess}
  probe = arch.layers({**defaults, **options}, _modules_of(arch.zoo, options))
  lookup = _keras_lookup(weights, probe, who, source)
  head = lookup(_head_layer(arch, probe))
  if head is None or "kernel" not in head:
    raise ValueError(f"{who}: {source} has no classifier layer for {arch.zoo} (a model saved with "
                     "include_top=False gives no logits: load it into a model with a head of your own)")
  if arch.zoo.startswith("vgg"):  # the hidden widths and pooled size, from fc1
    fc1 = lookup(next(layer for layer in probe if layer.path == ("fc_0",)))
    if fc1 is not None and "kernel" in fc1:
      flat_in, hidden = fc1["kernel"].shape
      channels = [c for c in defaults["config"] if c][-1]
      pool = int(round((flat_in / channels) ** 0.5))
      found["hidden"] = int(hidden)
      if pool * pool * channels == flat_in:
        found["pool_size"] = pool
  options = {**{k: v for k, v in found.items() if k not in options}, **options}

  def leaves_of(layer: Layer) -> Any:
    found_weights = lookup(layer)
    return None if found_weights is None else _keras_leaves(layer, found_weights)

  return _build(who, arch, options, defaults, int(head["kernel"].shape[1]), num_classes, leaves_of,
                lambda layers, skip: _keras_unused(weights, layers, skip), source, seed)


def _keras_lookup(weights: KerasWeights, layers: Sequence[Layer], who: str,
                  source: str) -> Callable[[Layer], dict[str, np.ndarray] | None]:
  """``layer -> its weights in the file``: by name (legacy files), else the k-th layer of its class."""
  if weights.named:
    return lambda layer: weights.named.get(layer.source)
  position: dict[Path, tuple[str, int]] = {}
  counts: dict[str, int] = {}
  for layer in layers:
    position[layer.path] = (layer.kind, counts.get(layer.kind, 0))
    counts[layer.kind] = counts.get(layer.kind, 0) + 1
  found = {k: len(v) for k, v in weights.by_kind.items() if k in _KERAS_ROLES}
  if {k: v for k, v in found.items() if v} != {k: v for k, v in counts.items() if v}:
    headless = (" (a model saved with include_top=False has no classifier: load it into a model with a head of "
                "your own with init_from, skipping the head)") if not found.get(DENSE) and counts.get(DENSE) else ""
    raise ValueError(f"{who}: {source} does not fit the model: its layers by class {found}, the model needs "
                     f"{counts}{headless}")

  def lookup(layer: Layer) -> dict[str, np.ndarray] | None:
    kind, k = position.get(layer.path, (layer.kind, -1))
    items = weights.by_kind.get(kind, [])
    return items[k][1] if 0 <= k < len(items) else None

  return lookup


def _keras_unused(weights: KerasWeights, layers: Sequence[Layer], skip: Sequence[Path]) -> list[str]:
  if not weights.named:
    return []  # counted per class in _keras_lookup
  wanted = {layer.source for layer in layers if layer.path not in skip}
  skipped = {layer.source for layer in layers if layer.path in skip}
  return sorted(n for n in weights.named if n not in wanted and n not in skipped)


def load_pretrained(model: str, path: str | os.PathLike[str], **kwargs: Any) -> tuple[nn.Module, dict[str, Any]]:
  """``from_torchvision`` or ``from_keras``, chosen by the file's suffix (``.pth``/``.pt``/``.bin``/``.safetensors``
  or ``.h5``/``.hdf5``/``.keras``)."""
  suffix = pathlib.Path(os.fspath(path)).suffix.lower()
  if suffix in TORCH_SUFFIXES:
    return from_torchvision(model, path, **kwargs)
  if suffix in KERAS_SUFFIXES:
    return from_keras(model, path, **kwargs)
  raise ValueError(f"load_pretrained: cannot tell the format of {str(path)!r}; expected a PyTorch "
                   f"({', '.join(TORCH_SUFFIXES)}) or Keras ({', '.join(KERAS_SUFFIXES)}) file")


def matches(path: Path | str, patterns: Sequence[str]) -> bool:
  """Whether a ``'/'``-joined parameter path matches a glob (or lies below a matching prefix)."""
  joined = path if isinstance(path, str) else "/".join(path)
  return any(fnmatch.fnmatchcase(joined, p) or fnmatch.fnmatchcase(joined, p.rstrip("/") + "/*") for p in patterns)
