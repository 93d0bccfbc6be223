"""Transfer learning in a run: start from other weights, freeze what you keep, train the head on cached features.

Three config fields, each a transformation of the state or the step (docs/transfer.md):

* ``init_from``: a jdl run directory, or a PyTorch (``.pth``/``.pt``/
  ``.safetensors``) or Keras (``.h5``/``.keras``) weights file of the run's
  model; every parameter and BatchNorm statistic is taken from it except those
  matching ``init_from_skip`` (a new head), which keep their fresh
  initialisation. What was taken is printed and recorded in ``summary.json``.
* ``optimizer.freeze`` (path globs; ``jdl.optim.freeze``): frozen parameters get
  zero updates and no optimizer state, and a BatchNorm whose parameters are all
  frozen runs in inference mode (its running statistics are used and kept), as
  in Keras when a layer is not trainable.
* ``cache_features``: when everything but one top-level layer (the head) is
  frozen, the backbone's outputs are computed once per split, in one compiled
  pass, and the head trains on them: an epoch costs what the head costs. The
  run's checkpoints still hold the whole network.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jdl import optim as optim_lib
from jdl.train import workdir as workdir_lib

# --------------------------------------------------------------------------- #
# init_from.
# --------------------------------------------------------------------------- #


def _flat(tree: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  out = {}
  for key, value in (tree or {}).items():
    if hasattr(value, "items"):
      out.update(_flat(value, (*prefix, str(key))))
    else:
      out[(*prefix, str(key))] = value
  return out


def _unflat(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for path, value in flat.items():
    node = out
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = value
  return out


def _source_kind(path: pathlib.Path) -> str:
  from jdl.models import pretrained  # pylint: disable=g-import-not-at-top

  if path.is_dir():
    return "run" if (path / workdir_lib.CONFIG).is_file() else "checkpoint"
  suffix = path.suffix.lower()
  if suffix in pretrained.TORCH_SUFFIXES:
    return "torch"
  if suffix in pretrained.KERAS_SUFFIXES:
    return "keras"
  raise ValueError(f"init_from: cannot tell what {str(path)!r} is; expected a jdl run directory or a weights "
                   f"file ({', '.join(pretrained.TORCH_SUFFIXES + pretrained.KERAS_SUFFIXES)})")


def check_init_from(config: ml_collections.ConfigDict) -> pathlib.Path | None:
  """The ``init_from`` path, checked to exist and be of a known kind (None when unset); before any work."""
  value = config.get("init_from", "") or ""
  if not isinstance(value, (str, os.PathLike)):
    raise TypeError(f"init_from: expected a path (a run directory or a weights file), got {value!r}")
  skip = config.get("init_from_skip", ()) or ()
  optim_lib.check_patterns("init_from_skip", "patterns", skip)
  if not value:
    if skip:
      raise ValueError(f"init_from_skip: {tuple(skip)!r} given without init_from")
    return None
  path = pathlib.Path(os.path.expanduser(os.fspath(value)))
  if not path.exists():
    raise FileNotFoundError(f"init_from: no such run directory or weights file {str(path)!r}")
  _check_implied_options(path, config)
  return path


def _check_implied_options(path: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  """A weights file's network computes as it was trained only with the options it implies: say which are missing."""
  from jdl import models  # pylint: disable=g-import-not-at-top
  from jdl.models import pretrained  # pylint: disable=g-import-not-at-top

  kind = _source_kind(path)
  if kind not in ("torch", "keras"):
    return  # a jdl run: its own config says
  implied = pretrained.implied_options(kind, config.model.name)
  options = config.model.options.to_dict()
  try:
    defaults = models.model_options(config.model.name)
  except ValueError:
    return  # an unknown model: config.check names it
  wanted = implied.pop("preprocess", None)
  if wanted is not None and options.get("preprocess") is None:
    raise ValueError(f"init_from: the weights in {str(path)!r} were trained on inputs normalised as {wanted!r}; "
                     f"set model.options.preprocess={wanted!r} (or 'none' to feed them unnormalised)")
  differ = {k: v for k, v in implied.items() if options.get(k, defaults.get(k)) != v}
  if differ:
    what = ", ".join(f"model.options.{k}={v!r}" for k, v in differ.items())
    raise ValueError(f"init_from: the {kind.title()} network in {str(path)!r} differs from the zoo's "
                     f"{config.model.name!r} as configured; set {what} so that it computes as it was trained")


def _source_variables(path: pathlib.Path, config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The variables ``path`` holds, as numpy arrays."""
  kind = _source_kind(path)
  if kind == "checkpoint":
    raise ValueError(f"init_from: {str(path)!r} is a directory without a run's config.json; give the run directory "
                     "(the one holding config.json and checkpoints/)")
  if kind == "run":
    from jdl.train import runs  # pylint: disable=g-import-not-at-top

    return jax.tree.map(np.asarray, runs.load_run(path).variables)
  from jdl import models  # pylint: disable=g-import-not-at-top

  structural = {k: v for k, v in config.model.options.to_dict().items() if k not in ("num_classes", "preprocess")}
  loader = models.from_torchvision if kind == "torch" else models.from_keras
  try:
    _, variables = loader(config.model.name, path, **structural)
  except ValueError as e:
    raise ValueError(f"init_from: {e}") from None
  return jax.tree.map(np.asarray, variables)


@dataclasses.dataclass
class InitReport:
  """What ``init_from`` took: counts of arrays and values, and the paths left to their initialisation."""

  source: str
  taken_arrays: int
  taken_values: int
  total_arrays: int
  total_values: int
  kept: list[str]

  def message(self) -> str:
    kept = f"; kept the fresh initialisation of {', '.join(self.kept[:8])}" + (" …" if len(self.kept) > 8 else "") \
        + " (init_from_skip)" if self.kept else ""
    return (f"init_from: took {self.taken_arrays} of {self.total_arrays} arrays ({self.taken_values:,} of "
            f"{self.total_values:,} values) from {self.source}{kept}")

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def apply_init_from(config: ml_collections.ConfigDict, state: Any, tx: Any) -> tuple[Any, InitReport | None]:
  """``state`` with its parameters and collections taken from ``config.init_from`` (the optimizer state rebuilt).

  Raises:
    ValueError: the source does not fit the model (every missing, unexpected or
      wrongly shaped array named, with the ``init_from_skip`` that would leave
      it out), or the weights expect an input normalisation the config lacks.
  """
  path = check_init_from(config)
  if path is None:
    return state, None
  skip = tuple(config.get("init_from_skip", ()) or ())
  source = _source_variables(path, config)
  target = _flat({"params": state.params, **(state.model_state or {})})
  given = _flat(source)
  skipped = lambda p: optim_lib.matches("/".join(p[1:]), skip)  # noqa: E731
  for pattern in skip:
    if not any(optim_lib.matches("/".join(p[1:]), pattern) for p in target):
      raise ValueError(f"init_from_skip: pattern {pattern!r} matches no parameter of the model")
  missing, shapes, out, kept = [], [], {}, []
  for p, leaf in target.items():
    name = "/".join(p) if p[0] != "params" else "/".join(p[1:])
    if skipped(p):
      out[p] = leaf
      kept.append(name)
    elif p not in given:
      missing.append(name)
    elif tuple(given[p].shape) != tuple(leaf.shape):
      shapes.append(f"{name}: the model has {tuple(leaf.shape)}, the source {tuple(given[p].shape)}")
    else:
      out[p] = jnp.asarray(given[p], leaf.dtype)
  unexpected = ["/".join(p) if p[0] != "params" else "/".join(p[1:]) for p in given
                if p not in target and not skipped(p)]
  if missing or shapes or unexpected:
    parts = [f"{title} ({len(items)}): {', '.join(items[:10])}{' …' if len(items) > 10 else ''}"
             for title, items in (("missing from the source", missing), ("wrongly shaped", shapes),
                                  ("not in the model", unexpected)) if items]
    layers = sorted({s.split(":")[0].rsplit("/", 1)[0] for s in shapes})
    hint = (f"; to train {', '.join(layers)} afresh (a new head), add it to init_from_skip, e.g. "
            f"init_from_skip=({layers[0]!r},)") if layers else ""
    raise ValueError(f"init_from: {str(path)!r} does not fit model {config.model.name!r}; " + "; ".join(parts) + hint)
  variables = _unflat(out)
  params = variables.pop("params")
  total_values = sum(int(np.prod(v.shape)) for v in target.values())
  kept_values = sum(int(np.prod(target[p].shape)) for p in target if skipped(p))
  report = InitReport(source=str(path), taken_arrays=len(target) - len(kept), taken_values=total_values - kept_values,
                      total_arrays=len(target), total_values=total_values, kept=sorted(kept))
  from jdl.train.state import distinct_buffers  # pylint: disable=g-import-not-at-top

  new_state = state.replace(params=params, opt_state=tx.init(params), model_state=variables or state.model_state)
  return distinct_buffers(new_state), report


# --------------------------------------------------------------------------- #
# Frozen BatchNorm layers run in inference mode.
# --------------------------------------------------------------------------- #


def _module_frozen(module: nn.Module, patterns: Sequence[str]) -> bool:
  path = "/".join(str(p) for p in module.path)
  leaves = [f"{path}/{leaf}" for leaf, on in (("scale", module.use_scale), ("bias", module.use_bias)) if on] or [path]
  return all(optim_lib.matches(leaf, patterns) for leaf in leaves)


def frozen_batch_norm(apply_fn: Callable[..., Any], patterns: Sequence[str]) -> Callable[..., Any]:
  """``apply_fn`` with every BatchNorm whose parameters match ``patterns`` in inference mode.

  Such a layer normalises with its running statistics and leaves them as they
  are, in training too: a frozen backbone computes the same features in
  training as in evaluation (Keras' behaviour for a layer with
  ``trainable = False``; PyTorch users call ``.eval()`` on it).
  """
  patterns = tuple(patterns)
  if not patterns:
    return apply_fn

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != "__call__" or not isinstance(module, nn.BatchNorm) or not _module_frozen(module, patterns):
      return next_fun(*args, **kwargs)
    if kwargs.get("use_running_average") is not None or module.use_running_average is None:
      return next_fun(*args, **{**kwargs, "use_running_average": True})
    if module.use_running_average:
      return next_fun(*args, **kwargs)
    object.__setattr__(module, "use_running_average", True)  # this apply's own bound copy, for this call only
    try:
      return next_fun(*args, **kwargs)
    finally:
      object.__setattr__(module, "use_running_average", False)

  def apply(*args: Any, **kwargs: Any) -> Any:
    with nn.intercept_methods(interceptor):
      return apply_fn(*args, **kwargs)

  return apply


# --------------------------------------------------------------------------- #
# Cached features of a frozen backbone.
# --------------------------------------------------------------------------- #


@dataclasses.dataclass
class CachedFeatures:
  """The head, and each split's features: what the head's training reads instead of images."""

  head_name: str
  head: nn.Module
  splits: dict[str, dict[str, np.ndarray]]
  dim: int
  seconds: float

  def apply_fn(self, variables: Mapping[str, Any], x: jax.Array, train: bool = False, rngs: Any = None,
               mutable: Any = False, **kwargs: Any) -> Any:
    """The model's ``apply`` on features: the head alone (the frozen rest's collections pass through)."""
    del train, rngs, kwargs
    outputs = self.head.apply({"params": variables["params"][self.head_name]}, x)
    if mutable:
      return outputs, {k: variables[k] for k in (mutable if isinstance(mutable, (list, tuple)) else [mutable])
                       if k in variables}
    return outputs

  def to_json(self) -> dict[str, Any]:
    return {"head": self.head_name, "dim": self.dim, "seconds": round(self.seconds, 3),
            "examples": {role: int(len(next(iter(a.values())))) for role, a in self.splits.items()}}


def check_cache_features(config: ml_collections.ConfigDict, params: Any) -> str | None:
  """The head's name when ``config.cache_features`` is on (None when off); a clear error when it cannot be."""
  if not config.get("cache_features", False):
    return None
  if not isinstance(config.cache_features, bool):
    raise TypeError(f"cache_features: expected true or false, got {config.cache_features!r}")
  patterns = optim_lib.check_patterns("optimizer.freeze", "patterns", config.optimizer.get("freeze", ()) or ())
  settings = {"augment": config.get("augment", ""), "adversarial.method": config.adversarial.get("method", ""),
              "ensemble.members": config.ensemble.get("members", 1) if config.ensemble.get("members", 1) != 1 else 0,
              "quantization.enabled": config.quantization.get("enabled", False),
              "diagnostics.enabled": config.diagnostics.get("enabled", False)}
  conflicts = [f"{key}={value!r}" for key, value in settings.items() if value]
  if conflicts:
    raise ValueError(f"cache_features: the backbone's features are computed once, so the inputs cannot change from "
                     f"epoch to epoch and the network must be the plain one; it cannot be combined with "
                     f"{', '.join(conflicts)}")
  trainable = sorted({path.split("/")[0] for path in jax.tree.leaves(optim_lib.param_paths(params))
                      if not optim_lib.matches(path, patterns)})
  if len(trainable) != 1:
    raise ValueError(f"cache_features: the trainable parameters must be one top-level layer (the head), with "
                     f"optimizer.freeze covering the rest; trainable now: {', '.join(trainable) or 'none'}")
  return trainable[0]


def cache_features(model: nn.Module, variables: Mapping[str, Any], head_name: str,
                   splits: Mapping[str, Mapping[str, np.ndarray]], input_key: str, batch_size: int,
                   scale: Callable[[Any], Any]) -> CachedFeatures:
  """Runs the frozen network once over every split and keeps the head's inputs.

  Args:
    model: the whole network.
    variables: its variables (``params`` and collections).
    head_name: the top-level layer that stays trainable.
    splits: ``{role: arrays}``; each split's ``input_key`` is replaced by the
      features, its other arrays kept.
    input_key: the inputs' key.
    batch_size: examples per compiled call.
    scale: the steps' input scaling (uint8 images to [0, 1]).

  Raises:
    ValueError: the head is not called on one array (it cannot be cut there).
  """
  captured: dict[str, Any] = {}

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name == "__call__" and tuple(module.path) == (head_name,):
      if len(args) != 1 or not hasattr(args[0], "shape") or args[0].ndim != 2:
        raise ValueError(f"cache_features: {head_name} must be called on one (batch, features) array to cut the "
                         f"network there; it was called with {len(args)} argument(s)")
      captured["head"] = module.clone(parent=None)
      captured["x"] = args[0]
    return next_fun(*args, **kwargs)

  def features(x: jax.Array) -> jax.Array:
    with nn.intercept_methods(interceptor):
      model.apply(variables, scale(x), train=False)
    return captured.pop("x")

  start = time.perf_counter()
  compiled = jax.jit(features)
  # One batch shape for every split (short batches padded): one compilation.
  size = max(1, min(batch_size, max(len(arrays[input_key]) for arrays in splits.values())))
  out: dict[str, dict[str, np.ndarray]] = {}
  for role, arrays in splits.items():
    x = arrays[input_key]
    chunks = []
    for begin in range(0, len(x), size):
      part = x[begin:begin + size]
      padded = np.concatenate([part, np.repeat(part[-1:], size - len(part), axis=0)]) if len(part) < size else part
      chunks.append(np.asarray(compiled(padded))[:len(part)])
    out[role] = {**arrays, input_key: np.concatenate(chunks).astype(np.float32)}
  head = captured["head"]  # cloned, unbound, when the program was traced
  dim = int(next(iter(out.values()))[input_key].shape[1])
  return CachedFeatures(head_name=head_name, head=head, splits=out, dim=dim, seconds=time.perf_counter() - start)
