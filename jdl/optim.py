"""Optimizers and learning-rate schedules by name, as optax ``GradientTransformation`` chains.

Three layers, each usable on its own:

* ``create(name, *, learning_rate, **hyperparams)``: one optimizer from the
  registry (``list_optimizers()``), an ``optax.chain`` of ``scale_by_*``
  transforms ending in ``scale_by_learning_rate``. ``learning_rate`` is a float
  or an ``optax.Schedule``.
* ``schedule(name, *, learning_rate, total_steps=None, **kwargs)``: a
  learning-rate schedule from the registry (``list_schedules()``), a function
  of the optimizer's update count.
* ``from_config(cfg, *, total_steps=None)``: the whole pipeline the train
  engine uses, in this order::

    MultiSteps(                       # accumulate_steps > 1
      partition(frozen → zero,        # freeze patterns given
                trainable → chain(clip_by_global_norm, base optimizer(schedule))))

Users add optimizers with the ``register(name)`` decorator and schedules with
``register_schedule(name)``. Every optimizer carries a default hyperparameter
search space, as plain data (``search_space(name)``).

Schedule-free optimizers train one sequence of parameters and evaluate another:
call ``eval_params(opt_state, params)`` before evaluating; it returns ``params``
unchanged for every other optimizer, so a train loop can always call it.

Parameter paths are the ``'/'``-joined keys of the parameter tree the optimizer
sees (``{"Dense_0": {"kernel": ...}}`` → ``"Dense_0/kernel"``); patterns are
shell globs (``fnmatch``), and a pattern also matches everything below it
(``"Dense_0"`` matches ``"Dense_0/kernel"``).
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import inspect
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdl.registry import Registry, same_definition
from optax import contrib

Factory = Callable[..., optax.GradientTransformation]
ScheduleFactory = Callable[..., optax.Schedule]
SearchSpace = dict[str, dict[str, Any]]

_DISTRIBUTIONS = ("log_uniform", "uniform", "one_minus_log_uniform", "choice")


# --------------------------------------------------------------------------- #
# Argument checks (build time, before any tracing).
# --------------------------------------------------------------------------- #


def _is_real(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_traced(value: Any) -> bool:
  """Whether ``value`` is an abstract array (under ``jit``/``vmap``), whose value cannot be checked.

  Hyperparameters may be traced: trials that differ only in them then share
  one compiled program (``jdl.bench``'s vmapped runs). They are checked when
  they are concrete, here or where they were drawn.
  """
  return isinstance(value, jax.core.Tracer)


def _scalar(value: Any) -> Any:
  """A concrete 0-d array becomes its Python number (so it is checked); others pass unchanged."""
  if isinstance(value, (jax.Array, np.ndarray, np.generic)) and not _is_traced(value) and np.ndim(value) == 0:
    item = np.asarray(value).item()
    return item if not isinstance(item, bool) else value
  return value


def _nonzero(value: Any) -> bool:
  """``value != 0`` for a concrete number; a traced value counts as non-zero (its term is kept)."""
  return True if _is_traced(value) else bool(value)


def _check_real(
    where: str,
    arg: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
  """Checks that ``value`` is a finite real number in the given interval (a traced array passes)."""
  value = _scalar(value)
  if _is_traced(value):
    return value
  if not _is_real(value):
    raise TypeError(f"{where}: {arg} must be a real number, got {value!r} ({type(value).__name__})")
  value = float(value)
  lo = "-inf" if low is None else f"{low:g}"
  hi = "inf" if high is None else f"{high:g}"
  interval = f"{'(' if low is None or low_open else '['}{lo}, {hi}{')' if high is None or high_open else ']'}"
  bad = not math.isfinite(value)
  if low is not None:
    bad |= value <= low if low_open else value < low
  if high is not None:
    bad |= value >= high if high_open else value > high
  if bad:
    raise ValueError(f"{where}: {arg} must be in {interval}, got {value!r}")
  return value


def _check_unit(where: str, arg: str, value: Any) -> float:
  """A decay rate: ``0 <= value < 1``."""
  return _check_real(where, arg, value, low=0.0, high=1.0, high_open=True)


def _check_nonneg(where: str, arg: str, value: Any) -> float:
  return _check_real(where, arg, value, low=0.0)


def _check_int(where: str, arg: str, value: Any, *, low: int) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(f"{where}: {arg} must be an integer, got {value!r} ({type(value).__name__})")
  if value < low:
    raise ValueError(f"{where}: {arg} must be >= {low}, got {value!r}")
  return int(value)


def _check_learning_rate(where: str, learning_rate: Any) -> float | optax.Schedule:
  learning_rate = _scalar(learning_rate)
  if callable(learning_rate) or _is_traced(learning_rate):
    return learning_rate
  if not _is_real(learning_rate):
    raise TypeError(
        f"{where}: learning_rate must be a real number >= 0 or an optax schedule, got "
        f"{learning_rate!r} ({type(learning_rate).__name__})")
  return _check_nonneg(where, "learning_rate", learning_rate)


def _bind(where: str, fn: Callable[..., Any], args: Mapping[str, Any]) -> None:
  """Checks that ``fn`` accepts ``args``; names the accepted arguments otherwise."""
  sig = inspect.signature(fn)
  try:
    sig.bind(**args)
  except TypeError as e:
    accepted = [
        p.name for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    raise TypeError(f"{where}: {e}; accepted arguments: {', '.join(accepted)}") from None


def _unknown(kind: str, name: Any, known: Mapping[str, Any]) -> ValueError:
  return ValueError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(known))}")


# --------------------------------------------------------------------------- #
# Parameter paths and masks.
# --------------------------------------------------------------------------- #


def param_paths(tree: Any) -> Any:
  """Returns a tree like ``tree`` whose leaves are their ``'/'``-joined key paths.

  Args:
    tree: a parameter pytree (nested dicts from flax, lists, tuples ...).

  Returns:
    the same structure with each leaf replaced by a string such as
    ``"Dense_0/kernel"``.
  """
  return jax.tree_util.tree_map_with_path(
      lambda path, _: jax.tree_util.keystr(path, simple=True, separator="/"), tree)


def _matches(path: str, pattern: str) -> bool:
  return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern + "/*")


def _check_patterns(where: str, arg: str, patterns: Any) -> tuple[str, ...]:
  if isinstance(patterns, str):
    patterns = (patterns,)
  if not isinstance(patterns, Sequence) or not all(isinstance(p, str) and p for p in patterns):
    raise TypeError(f"{where}: {arg} must be a list of non-empty glob strings, got {patterns!r}")
  return tuple(patterns)


def path_mask(patterns: str | Sequence[str], *, where: str = "path_mask") -> Callable[[Any], Any]:
  """Builds ``mask_fn(params) -> tree of bools``: True where a path matches a pattern.

  The result plugs into optax masks (``optax.masked``, ``weight_decay_mask`` ...).
  A pattern that matches no parameter is an error (a typo would otherwise
  silently do nothing); it is raised when the mask first sees the parameters.

  Args:
    patterns: glob patterns over ``'/'``-joined parameter paths; a pattern also
      matches everything below it.
    where: the name used in error messages.

  Returns:
    the mask function.
  """
  patterns = _check_patterns(where, "patterns", patterns)

  def mask_fn(params: Any) -> Any:
    paths = param_paths(params)
    all_paths = jax.tree.leaves(paths)
    for pattern in patterns:
      if not any(_matches(p, pattern) for p in all_paths):
        shown = ", ".join(all_paths[:20]) + (" ..." if len(all_paths) > 20 else "")
        raise ValueError(f"{where}: pattern {pattern!r} matches no parameter; parameter paths: {shown}")
    return jax.tree.map(lambda p: any(_matches(p, pat) for pat in patterns), paths)

  return mask_fn


def freeze(inner: optax.GradientTransformation, patterns: str | Sequence[str]) -> optax.GradientTransformation:
  """Applies ``inner`` to trainable parameters and zero updates to frozen ones.

  Built with ``optax.partition``: frozen leaves go through
  ``optax.set_to_zero()``, so their updates are exactly 0 (the parameters stay
  bit-identical) and ``inner`` keeps no state for them (no moments, no weight
  decay, and they do not count in ``inner``'s global-norm clipping).

  Args:
    inner: the transformation for trainable parameters.
    patterns: glob patterns over ``'/'``-joined parameter paths to freeze.

  Returns:
    the partitioned transformation.
  """
  mask_fn = path_mask(patterns, where="freeze")

  def labels(params: Any) -> Any:
    return jax.tree.map(lambda frozen: "frozen" if frozen else "trainable", mask_fn(params))

  return optax.partition({"trainable": inner, "frozen": optax.set_to_zero()}, labels)


def _weight_decay_mask(where: str, exclude: Any) -> Callable[[Any], Any] | None:
  """``weight_decay_exclude`` patterns → optax mask (True = decay this leaf)."""
  exclude = _check_patterns(where, "weight_decay_exclude", exclude)
  if not exclude:
    return None
  excluded = path_mask(exclude, where=f"{where} weight_decay_exclude")
  return lambda params: jax.tree.map(lambda x: not x, excluded(params))


# --------------------------------------------------------------------------- #
# Skipping non-finite updates.
# --------------------------------------------------------------------------- #


class SkipNonfiniteState(NamedTuple):
  """``skip_nonfinite``'s state: the inner optimizer's, the current run of skips, and all skips so far."""

  inner_state: Any
  consecutive: jax.Array
  skipped: jax.Array


def _all_finite(tree: Any) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype,
                                                                                         jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def skip_nonfinite(inner: optax.GradientTransformation, max_consecutive: int = 10
                   ) -> optax.GradientTransformationExtraArgs:
  """Skips updates whose gradients or resulting update are not finite (NaN or ±inf).

  A skipped step changes neither the parameters (its update is zero) nor the
  inner optimizer's state; ``SkipNonfiniteState.skipped`` counts the skips.
  Like ``optax.apply_if_finite``, it gives up after ``max_consecutive`` skips
  in a row and applies the next update as it is, so a run that has really
  diverged still fails loudly. Unlike it, the *update* is checked too: a
  finite gradient times a huge learning rate that overflows is skipped as well.

  Args:
    inner: the optimizer.
    max_consecutive: skips in a row before giving up (>= 1).

  Returns:
    the wrapped optimizer (``config.nonfinite = "skip"`` in ``jdl train``).
  """
  max_consecutive = _check_int("skip_nonfinite", "max_consecutive", max_consecutive, low=1)

  def init_fn(params):
    # Two arrays, not one twice: each leaf of a donated state must be its own buffer.
    return SkipNonfiniteState(inner.init(params), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

  def update_fn(updates, state, params=None, **extra_args):
    new_updates, new_inner = optax.with_extra_args_support(inner).update(updates, state.inner_state, params,
                                                                          **extra_args)
    finite = _all_finite(updates) & _all_finite(new_updates)
    apply = finite | (state.consecutive >= max_consecutive)
    out_updates = jax.tree.map(lambda u: jnp.where(apply, u, jnp.zeros_like(u)), new_updates)
    out_inner = jax.tree.map(lambda a, b: jnp.where(apply, a, b), new_inner, state.inner_state)
    consecutive = jnp.where(finite, 0, state.consecutive + 1).astype(jnp.int32)
    skipped = (state.skipped + jnp.where(apply, 0, 1)).astype(jnp.int32)
    return out_updates, SkipNonfiniteState(out_inner, consecutive, skipped)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def skipped_steps(opt_state: Any) -> jax.Array | None:
  """The number of updates ``skip_nonfinite`` has skipped so far, or None without the wrapper."""
  found = _find_state(opt_state, SkipNonfiniteState)
  return None if found is None else found.skipped


def _find_state(state: Any, state_type: type) -> Any:
  if isinstance(state, state_type):
    return state
  children = state.values() if isinstance(state, Mapping) else state if isinstance(state, (tuple, list)) else ()
  for child in children:
    found = _find_state(child, state_type)
    if found is not None:
      return found
  return None


# --------------------------------------------------------------------------- #
# Search spaces (plain data).
# --------------------------------------------------------------------------- #


def log_uniform(low: float, high: float) -> dict[str, Any]:
  """A search dimension: ``exp(uniform(log low, log high))``, ``0 < low < high``."""
  return {"distribution": "log_uniform", "low": low, "high": high}


def uniform(low: float, high: float) -> dict[str, Any]:
  """A search dimension: ``uniform(low, high)``."""
  return {"distribution": "uniform", "low": low, "high": high}


def one_minus_log_uniform(low: float, high: float) -> dict[str, Any]:
  """A search dimension for decay rates near 1: ``1 - x`` is log-uniform in ``[1 - high, 1 - low]``."""
  return {"distribution": "one_minus_log_uniform", "low": low, "high": high}


def choice(*values: Any) -> dict[str, Any]:
  """A search dimension: one of ``values``."""
  return {"distribution": "choice", "values": list(values)}


def check_search_space(where: str, space: Any) -> SearchSpace:
  """Checks a search space (``{hyperparameter: dimension}``, see ``log_uniform`` and friends); returns a copy.

  Used by ``register`` and by the benchmark's ``register_optimizer``, so a
  space means the same everywhere: every dimension a known distribution with
  valid bounds, a ``learning_rate`` dimension, log-uniform.

  Raises:
    TypeError: ``space`` is not a dict.
    ValueError: a bad dimension, named with ``where``.
  """
  if not isinstance(space, Mapping):
    raise TypeError(f"{where}: search_space must be a dict, got {type(space).__name__} {space!r}")
  for arg, dim in space.items():
    if not isinstance(dim, Mapping) or dim.get("distribution") not in _DISTRIBUTIONS:
      raise ValueError(
          f"{where}: search_space[{arg!r}] must be a dict with 'distribution' in {_DISTRIBUTIONS}, got {dim!r}")
    kind = dim["distribution"]
    if kind == "choice":
      if not isinstance(dim.get("values"), Sequence) or not dim["values"]:
        raise ValueError(f"{where}: search_space[{arg!r}] needs a non-empty 'values' list, got {dim!r}")
      continue
    low, high = dim.get("low"), dim.get("high")
    if not (_is_real(low) and _is_real(high) and low < high):
      raise ValueError(f"{where}: search_space[{arg!r}] needs real low < high, got {dim!r}")
    if kind == "log_uniform" and low <= 0:
      raise ValueError(f"{where}: search_space[{arg!r}] is log_uniform and needs low > 0, got {dim!r}")
    if kind == "one_minus_log_uniform" and not 0 <= low < high < 1:
      raise ValueError(f"{where}: search_space[{arg!r}] is one_minus_log_uniform and needs 0 <= low < high < 1, "
                       f"got {dim!r}")
  if "learning_rate" not in space:
    raise ValueError(f"{where}: search_space must include 'learning_rate', got keys {sorted(space)}")
  if space["learning_rate"]["distribution"] != "log_uniform":
    raise ValueError(f"{where}: the learning rate's dimension must be log_uniform, got {space['learning_rate']!r}")
  return copy.deepcopy(dict(space))


# --------------------------------------------------------------------------- #
# The optimizer registry.
# --------------------------------------------------------------------------- #


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """A registered optimizer.

  Attributes:
    name: the registry name.
    factory: ``factory(learning_rate, **hyperparams) -> GradientTransformation``.
    learning_rate: the default learning rate (used by ``from_config`` when the
      config gives none).
    search_space: hyperparameter name → search dimension (see ``log_uniform``,
      ``uniform``, ``one_minus_log_uniform``, ``choice``).
  """

  name: str
  factory: Factory
  learning_rate: float
  search_space: SearchSpace


OPTIMIZERS: Registry[OptimizerSpec] = Registry(
    "optimizer", same=lambda old, new: same_definition(old.factory, new.factory))


def register(
    name: str,
    factory: Factory | None = None,
    *,
    learning_rate: float = 1e-3,
    search_space: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Any:
  """Registers an optimizer factory under ``name``; use it from your own file.

  The factory takes the learning rate (a float or an ``optax.Schedule``) and
  keyword hyperparameters, and returns a ``GradientTransformation``::

    @jdl.optim.register("signsgd", search_space={"learning_rate": jdl.optim.log_uniform(1e-5, 1e-2)})
    def signsgd(learning_rate, *, weight_decay: float = 0.0) -> optax.GradientTransformation:
      return optax.chain(optax.scale_by_sign(), optax.add_decayed_weights(weight_decay),
                         optax.scale_by_learning_rate(learning_rate))

  or as a call, ``jdl.optim.register("signsgd", signsgd)``.

  Args:
    name: the name configs use (``cfg.optimizer.name``).
    factory: the factory; omitted, ``register`` returns a decorator.
    learning_rate: default learning rate for configs that give none.
    search_space: default hyperparameter search space; must include
      ``learning_rate``. Defaults to ``{"learning_rate": log_uniform(1e-5, 1e-1)}``.
    overwrite: allow replacing an existing registration (a built-in one too).

  Returns:
    ``factory`` (or a decorator that registers and returns it unchanged).
    Registering the same factory again (or its file imported again) is a no-op.
  """
  if not isinstance(name, str) or not name:
    raise TypeError(f"register: name must be a non-empty string, got {name!r}")
  where = f"register({name!r})"
  learning_rate = _check_nonneg(where, "learning_rate", learning_rate)
  space = check_search_space(where, search_space if search_space is not None else
                              {"learning_rate": log_uniform(1e-5, 1e-1)})

  def decorator(factory: Factory) -> Factory:
    if not callable(factory):
      raise TypeError(f"{where}: the factory must be callable, got {factory!r}")
    params = inspect.signature(factory).parameters
    if "learning_rate" not in params and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
      raise TypeError(f"{where}: the factory must accept a learning_rate argument, got parameters {list(params)}")
    for arg in space:
      if arg != "learning_rate":
        _bind(f"{where} search_space", factory, {"learning_rate": 1.0, arg: None})
    OPTIMIZERS.register(name, OptimizerSpec(name, factory, learning_rate, space), overwrite=overwrite)
    return factory

  return decorator if factory is None else decorator(factory)


def list_optimizers() -> list[str]:
  """Returns the registered optimizer names, sorted."""
  return OPTIMIZERS.names()


def get_spec(name: str) -> OptimizerSpec:
  """Returns the registration of optimizer ``name`` (factory, default lr, search space)."""
  return OPTIMIZERS[name]


def search_space(name: str) -> SearchSpace:
  """Returns a copy of optimizer ``name``'s default hyperparameter search space.

  Args:
    name: a registered optimizer.

  Returns:
    hyperparameter → dimension dict, e.g. ``{"learning_rate": {"distribution":
    "log_uniform", "low": 1e-5, "high": 1e-2}, "b1": {"distribution":
    "uniform", "low": 0.8, "high": 0.95}, ...}``. Distributions:
    ``log_uniform``/``uniform`` (``low``, ``high``), ``one_minus_log_uniform``
    (``1 - x`` log-uniform; for decay rates near 1), ``choice`` (``values``).
  """
  return copy.deepcopy(get_spec(name).search_space)


def create(name: str, *, learning_rate: float | optax.Schedule, **hyperparams: Any) -> optax.GradientTransformation:
  """Builds the optimizer ``name`` with its hyperparameters.

  Args:
    name: a registered optimizer (``list_optimizers()``).
    learning_rate: a float ``>= 0`` or an ``optax.Schedule`` of the update count.
    **hyperparams: the optimizer's own hyperparameters (see its docstring).

  Returns:
    the optimizer, an ``optax.GradientTransformation``.

  Raises:
    ValueError: unknown name (the message lists the known ones), or a
      hyperparameter out of range.
    TypeError: an argument the optimizer does not take, or of the wrong type.
  """
  spec = get_spec(name)
  where = f"optimizer {name!r}"
  learning_rate = _check_learning_rate(where, learning_rate)
  _bind(where, spec.factory, {"learning_rate": learning_rate, **hyperparams})
  return spec.factory(learning_rate=learning_rate, **hyperparams)


# --------------------------------------------------------------------------- #
# Built-in optimizers. g = gradient, p = parameters, lr = learning rate, t = step (from 1).
# --------------------------------------------------------------------------- #


def _lr(learning_rate: float | optax.Schedule) -> optax.GradientTransformation:
  return optax.scale_by_learning_rate(learning_rate)


def _decay(weight_decay: float, mask: Any = None) -> list[optax.GradientTransformation]:
  return [optax.add_decayed_weights(weight_decay, mask)] if _nonzero(weight_decay) else []


_ADAM_SPACE = {
    "learning_rate": log_uniform(1e-5, 1e-2),
    "b1": uniform(0.8, 0.95),
    "b2": one_minus_log_uniform(0.9, 0.9999),
    "eps": log_uniform(1e-10, 1e-6),
}
_ADAMW_SPACE = {**_ADAM_SPACE, "weight_decay": log_uniform(1e-5, 1e-1)}


@register("sgd", learning_rate=0.01, search_space={"learning_rate": log_uniform(1e-3, 1.0),
                                                    "weight_decay": log_uniform(1e-6, 1e-2)})
def sgd(learning_rate: float | optax.Schedule, *, weight_decay: float = 0.0) -> optax.GradientTransformation:
  """Plain gradient descent: ``p ← p - lr·(g + wd·p)``.

  Args:
    learning_rate: step size.
    weight_decay: L2 coefficient ``wd`` added to the gradient.

  Returns:
    ``chain(add_decayed_weights, scale_by_learning_rate)``.
  """
  wd = _check_nonneg("sgd", "weight_decay", weight_decay)
  return optax.chain(*_decay(wd), _lr(learning_rate))


@register("momentum", learning_rate=0.01, search_space={"learning_rate": log_uniform(1e-4, 1.0),
                                                         "momentum": uniform(0.8, 0.99)})
def momentum(learning_rate: float | optax.Schedule, *, momentum: float = 0.9,
             weight_decay: float = 0.0) -> optax.GradientTransformation:
  """Heavy-ball momentum: ``v ← μ·v + g``, ``p ← p - lr·v`` (``g`` includes ``wd·p``).

  Args:
    learning_rate: step size.
    momentum: ``μ`` in ``[0, 1)``.
    weight_decay: L2 coefficient added to the gradient.

  Returns:
    ``chain(add_decayed_weights, trace(μ), scale_by_learning_rate)``.
  """
  mu = _check_unit("momentum", "momentum", momentum)
  wd = _check_nonneg("momentum", "weight_decay", weight_decay)
  return optax.chain(*_decay(wd), optax.trace(decay=mu), _lr(learning_rate))


@register("nesterov", learning_rate=0.01, search_space={"learning_rate": log_uniform(1e-4, 1.0),
                                                         "momentum": uniform(0.8, 0.99)})
def nesterov(learning_rate: float | optax.Schedule, *, momentum: float = 0.9,
             weight_decay: float = 0.0) -> optax.GradientTransformation:
  """Nesterov momentum (Sutskever form): ``v ← μ·v + g``, ``p ← p - lr·(g + μ·v)``.

  Args:
    learning_rate: step size.
    momentum: ``μ`` in ``[0, 1)``.
    weight_decay: L2 coefficient added to the gradient.

  Returns:
    ``chain(add_decayed_weights, trace(μ, nesterov=True), scale_by_learning_rate)``.
  """
  mu = _check_unit("nesterov", "momentum", momentum)
  wd = _check_nonneg("nesterov", "weight_decay", weight_decay)
  return optax.chain(*_decay(wd), optax.trace(decay=mu, nesterov=True), _lr(learning_rate))


@register("adagrad", learning_rate=0.01, search_space={"learning_rate": log_uniform(1e-3, 1.0),
                                                        "initial_accumulator_value": log_uniform(1e-3, 1.0)})
def adagrad(learning_rate: float | optax.Schedule, *, initial_accumulator_value: float = 0.1,
            eps: float = 1e-7) -> optax.GradientTransformation:
  """Adagrad: ``G ← G + g²``, ``p ← p - lr·g/√(G + ε)`` with ``G₀ = initial_accumulator_value``.

  Args:
    learning_rate: step size.
    initial_accumulator_value: ``G₀ >= 0`` (Keras default 0.1).
    eps: ``ε`` inside the square root.

  Returns:
    ``chain(scale_by_rss, scale_by_learning_rate)``.
  """
  g0 = _check_nonneg("adagrad", "initial_accumulator_value", initial_accumulator_value)
  eps = _check_nonneg("adagrad", "eps", eps)
  return optax.chain(optax.scale_by_rss(initial_accumulator_value=g0, eps=eps), _lr(learning_rate))


@register("rmsprop", learning_rate=1e-3, search_space={"learning_rate": log_uniform(1e-5, 1e-2),
                                                        "decay": one_minus_log_uniform(0.8, 0.999),
                                                        "momentum": uniform(0.0, 0.95)})
def rmsprop(learning_rate: float | optax.Schedule, *, decay: float = 0.9, eps: float = 1e-8,
            momentum: float = 0.0, centered: bool = False) -> optax.GradientTransformation:
  """RMSProp: ``v ← ρ·v + (1-ρ)·g²``, ``u = g/(√v + ε)``, ``p ← p - lr·u``.

  Centered: also ``m ← ρ·m + (1-ρ)·g`` and ``u = g/(√(v - m²) + ε)``. With
  momentum ``μ > 0``: ``b ← μ·b + u``, ``p ← p - lr·b``. ``ε`` is outside the
  square root (as PyTorch and Keras).

  Args:
    learning_rate: step size.
    decay: ``ρ`` in ``[0, 1)``.
    eps: ``ε``.
    momentum: ``μ`` in ``[0, 1)``; 0 disables the momentum buffer.
    centered: divide by the gradient's standard deviation instead of its RMS.

  Returns:
    ``chain(scale_by_rms | scale_by_stddev, [trace(μ)], scale_by_learning_rate)``.
  """
  rho = _check_unit("rmsprop", "decay", decay)
  eps = _check_nonneg("rmsprop", "eps", eps)
  mu = _check_unit("rmsprop", "momentum", momentum)
  if not isinstance(centered, bool):
    raise TypeError(f"rmsprop: centered must be a bool, got {centered!r}")
  scale = optax.scale_by_stddev if centered else optax.scale_by_rms
  parts = [scale(decay=rho, eps=eps, eps_in_sqrt=False)]
  if _nonzero(mu):
    parts.append(optax.trace(decay=mu))
  return optax.chain(*parts, _lr(learning_rate))


def _adam_args(where: str, b1: float, b2: float, eps: float) -> tuple[float, float, float]:
  return _check_unit(where, "b1", b1), _check_unit(where, "b2", b2), _check_nonneg(where, "eps", eps)


@register("adam", learning_rate=1e-3, search_space=_ADAM_SPACE)
def adam(learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8) -> optax.GradientTransformation:
  """Adam: ``m ← β₁m + (1-β₁)g``, ``v ← β₂v + (1-β₂)g²``, ``p ← p - lr·m̂/(√v̂ + ε)``.

  ``m̂ = m/(1-β₁ᵗ)`` and ``v̂ = v/(1-β₂ᵗ)`` are the bias-corrected moments.

  Args:
    learning_rate: step size.
    b1: ``β₁`` in ``[0, 1)``.
    b2: ``β₂`` in ``[0, 1)``.
    eps: ``ε``.

  Returns:
    ``chain(scale_by_adam, scale_by_learning_rate)``.
  """
  b1, b2, eps = _adam_args("adam", b1, b2, eps)
  return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps), _lr(learning_rate))


@register("adamw", learning_rate=1e-3, search_space=_ADAMW_SPACE)
def adamw(learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 1e-4, weight_decay_exclude: Sequence[str] = ()) -> optax.GradientTransformation:
  """AdamW (decoupled weight decay): ``p ← p - lr·(m̂/(√v̂ + ε) + λ·p)``.

  Args:
    learning_rate: step size.
    b1: ``β₁``.
    b2: ``β₂``.
    eps: ``ε``.
    weight_decay: ``λ``.
    weight_decay_exclude: path patterns not decayed (e.g. ``["*bias", "*scale"]``).

  Returns:
    ``chain(scale_by_adam, add_decayed_weights, scale_by_learning_rate)``.
  """
  b1, b2, eps = _adam_args("adamw", b1, b2, eps)
  wd = _check_nonneg("adamw", "weight_decay", weight_decay)
  mask = _weight_decay_mask("adamw", weight_decay_exclude)
  return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps), *_decay(wd, mask), _lr(learning_rate))


@register("nadam", learning_rate=1e-3, search_space=_ADAM_SPACE)
def nadam(learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8) -> optax.GradientTransformation:
  """NAdam: Adam with a Nesterov look-ahead first moment.

  ``p ← p - lr·(β₁m/(1-β₁ᵗ⁺¹) + (1-β₁)g/(1-β₁ᵗ))/(√v̂ + ε)``.

  Args:
    learning_rate: step size.
    b1: ``β₁``.
    b2: ``β₂``.
    eps: ``ε``.

  Returns:
    ``chain(scale_by_adam(nesterov=True), scale_by_learning_rate)``.
  """
  b1, b2, eps = _adam_args("nadam", b1, b2, eps)
  return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps, nesterov=True), _lr(learning_rate))


@register("nadamw", learning_rate=1e-3, search_space=_ADAMW_SPACE)
def nadamw(learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
           weight_decay: float = 1e-4, weight_decay_exclude: Sequence[str] = ()) -> optax.GradientTransformation:
  """NAdamW: the NAdam direction plus decoupled weight decay ``lr·λ·p``.

  Args:
    learning_rate: step size.
    b1: ``β₁``.
    b2: ``β₂``.
    eps: ``ε``.
    weight_decay: ``λ``.
    weight_decay_exclude: path patterns not decayed.

  Returns:
    ``chain(scale_by_adam(nesterov=True), add_decayed_weights, scale_by_learning_rate)``.
  """
  b1, b2, eps = _adam_args("nadamw", b1, b2, eps)
  wd = _check_nonneg("nadamw", "weight_decay", weight_decay)
  mask = _weight_decay_mask("nadamw", weight_decay_exclude)
  return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps, nesterov=True), *_decay(wd, mask),
                     _lr(learning_rate))


@register("radam", learning_rate=1e-3, search_space=_ADAM_SPACE)
def radam(learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          threshold: float = 5.0) -> optax.GradientTransformation:
  """RAdam: Adam whose adaptive step is rectified while ``v`` is unreliable.

  ``ρ∞ = 2/(1-β₂) - 1``, ``ρₜ = ρ∞ - 2tβ₂ᵗ/(1-β₂ᵗ)``; if ``ρₜ >= threshold``:
  ``p ← p - lr·rₜ·m̂/(√v̂ + ε)`` with ``rₜ = √((ρₜ-4)(ρₜ-2)ρ∞/((ρ∞-4)(ρ∞-2)ρₜ))``,
  else the momentum step ``p ← p - lr·m̂``.

  Args:
    learning_rate: step size.
    b1: ``β₁``.
    b2: ``β₂``.
    eps: ``ε``.
    threshold: ``ρₜ`` above which the adaptive step is used.

  Returns:
    ``chain(scale_by_radam, scale_by_learning_rate)``.
  """
  b1, b2, eps = _adam_args("radam", b1, b2, eps)
  threshold = _check_nonneg("radam", "threshold", threshold)
  return optax.chain(optax.scale_by_radam(b1=b1, b2=b2, eps=eps, threshold=threshold), _lr(learning_rate))


@register("lamb", learning_rate=1e-3, search_space={**_ADAM_SPACE, "learning_rate": log_uniform(1e-4, 1e-1),
                                                     "weight_decay": log_uniform(1e-5, 1e-1)})
def lamb(learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
         weight_decay: float = 0.0, weight_decay_exclude: Sequence[str] = ()) -> optax.GradientTransformation:
  """LAMB: the AdamW direction ``u = m̂/(√v̂ + ε) + λp`` rescaled per layer by a trust ratio.

  ``p ← p - lr·(‖p‖/‖u‖)·u`` (ratio 1 when either norm is 0).

  Args:
    learning_rate: step size.
    b1: ``β₁``.
    b2: ``β₂``.
    eps: ``ε``.
    weight_decay: ``λ``.
    weight_decay_exclude: path patterns not decayed.

  Returns:
    ``chain(scale_by_adam, add_decayed_weights, scale_by_trust_ratio, scale_by_learning_rate)``.
  """
  b1, b2, eps = _adam_args("lamb", b1, b2, eps)
  wd = _check_nonneg("lamb", "weight_decay", weight_decay)
  mask = _weight_decay_mask("lamb", weight_decay_exclude)
  return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps), *_decay(wd, mask), optax.scale_by_trust_ratio(),
                     _lr(learning_rate))


@register("lion", learning_rate=1e-4, search_space={"learning_rate": log_uniform(1e-6, 1e-3),
                                                     "b1": uniform(0.8, 0.95),
                                                     "b2": one_minus_log_uniform(0.9, 0.999),
                                                     "weight_decay": log_uniform(1e-4, 1.0)})
def lion(learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.99, weight_decay: float = 0.0,
         weight_decay_exclude: Sequence[str] = ()) -> optax.GradientTransformation:
  """Lion: ``p ← p - lr·(sign(β₁m + (1-β₁)g) + λp)``, then ``m ← β₂m + (1-β₂)g``.

  Every coordinate moves by ``lr`` per step, so Lion wants a learning rate
  3-10x smaller than Adam's.

  Args:
    learning_rate: step size.
    b1: interpolation ``β₁`` for the update direction.
    b2: ``β₂`` for the momentum.
    weight_decay: ``λ``.
    weight_decay_exclude: path patterns not decayed.

  Returns:
    ``chain(scale_by_lion, add_decayed_weights, scale_by_learning_rate)``.
  """
  b1 = _check_unit("lion", "b1", b1)
  b2 = _check_unit("lion", "b2", b2)
  wd = _check_nonneg("lion", "weight_decay", weight_decay)
  mask = _weight_decay_mask("lion", weight_decay_exclude)
  return optax.chain(optax.scale_by_lion(b1=b1, b2=b2), *_decay(wd, mask), _lr(learning_rate))


@register("adafactor", learning_rate=1e-2, search_space={"learning_rate": log_uniform(1e-4, 1e-1),
                                                          "decay_rate": uniform(0.6, 0.9)})
def adafactor(learning_rate: float | optax.Schedule, *, decay_rate: float = 0.8, clipping_threshold: float | None = 1.0,
              multiply_by_parameter_scale: bool = True, min_dim_size_to_factor: int = 128,
              momentum: float | None = None, weight_decay_rate: float | None = None,
              eps: float = 1e-30) -> optax.GradientTransformation:
  """Adafactor: RMS scaling with factored second moments for large matrices.

  ``β₂ₜ = 1 - t^(-decay_rate)``; for a matrix, row and column means of
  ``g² + ε`` are tracked (``R ← β₂ₜR + (1-β₂ₜ)·rowmean``, same for ``C``) and
  ``v̂ = R Cᵀ / mean(R)``; vectors keep a full ``v``. ``u = g/√v̂`` is clipped
  to block-RMS ``<= clipping_threshold`` and ``p ← p - lr·max(1e-3, rms(p))·u``
  (the ``rms(p)`` factor only with ``multiply_by_parameter_scale``).

  Args:
    learning_rate: relative step size.
    decay_rate: exponent of the second-moment decay schedule.
    clipping_threshold: block-RMS clip of the update (``>= 1``), or None.
    multiply_by_parameter_scale: scale steps by the parameter's RMS.
    min_dim_size_to_factor: factor only when two dims are at least this big.
    momentum: optional EMA of updates (costs a full-size buffer).
    weight_decay_rate: optional decoupled decay.
    eps: regulariser added to ``g²``.

  Returns:
    ``optax.adafactor``'s chain.
  """
  decay_rate = _check_real("adafactor", "decay_rate", decay_rate, low=0.0, low_open=True, high=1.0)
  if clipping_threshold is not None:
    clipping_threshold = _check_real("adafactor", "clipping_threshold", clipping_threshold, low=1.0)
  min_dim = _check_int("adafactor", "min_dim_size_to_factor", min_dim_size_to_factor, low=1)
  if momentum is not None:
    momentum = _check_unit("adafactor", "momentum", momentum)
  if weight_decay_rate is not None:
    weight_decay_rate = _check_nonneg("adafactor", "weight_decay_rate", weight_decay_rate)
  return optax.adafactor(
      learning_rate=learning_rate, min_dim_size_to_factor=min_dim, decay_rate=decay_rate,
      multiply_by_parameter_scale=bool(multiply_by_parameter_scale), clipping_threshold=clipping_threshold,
      momentum=momentum, weight_decay_rate=weight_decay_rate, eps=_check_nonneg("adafactor", "eps", eps))


@register("muon", learning_rate=0.02, search_space={"learning_rate": log_uniform(1e-3, 1e-1),
                                                     "beta": uniform(0.8, 0.99)})
def muon(learning_rate: float | optax.Schedule, *, beta: float = 0.95, ns_steps: int = 5, nesterov: bool = True,
         weight_decay: float = 0.0, adam_b1: float = 0.9, adam_b2: float = 0.999,
         adam_learning_rate: float | optax.Schedule | None = None) -> optax.GradientTransformation:
  """Muon (``optax.contrib.muon``): momentum orthogonalised by Newton-Schulz, for 2-D weights.

  For each matrix: ``m ← βm + (1-β)g`` (Nesterov: use ``βm̂ + (1-β)ĝ``),
  ``O = NewtonSchulz(m)`` ≈ ``U Vᵀ`` of ``m = U S Vᵀ``,
  ``p ← p - lr·(√max(1, fan_out/fan_in)·O + λp)``. Parameters that are not
  matrices (biases, scales, vectors) get AdamW (``adam_b1``, ``adam_b2``) instead.

  Args:
    learning_rate: step size of the matrix updates.
    beta: momentum ``β``.
    ns_steps: Newton-Schulz iterations.
    nesterov: Nesterov momentum.
    weight_decay: ``λ`` on the matrices.
    adam_b1: AdamW ``β₁`` for non-matrix parameters.
    adam_b2: AdamW ``β₂`` for non-matrix parameters.
    adam_learning_rate: AdamW step size; None uses ``learning_rate``.

  Returns:
    ``optax.contrib.muon``'s partitioned transformation.
  """
  beta = _check_unit("muon", "beta", beta)
  ns_steps = _check_int("muon", "ns_steps", ns_steps, low=1)
  wd = _check_nonneg("muon", "weight_decay", weight_decay)
  adam_b1 = _check_unit("muon", "adam_b1", adam_b1)
  adam_b2 = _check_unit("muon", "adam_b2", adam_b2)
  if adam_learning_rate is not None:
    adam_learning_rate = _check_learning_rate("muon", adam_learning_rate)
  return contrib.muon(learning_rate, ns_steps=ns_steps, beta=beta, weight_decay=wd, nesterov=bool(nesterov),
                      adam_b1=adam_b1, adam_b2=adam_b2, adam_learning_rate=adam_learning_rate)


@register("schedule_free_adamw", learning_rate=2.5e-3, search_space={
    "learning_rate": log_uniform(1e-4, 1e-1), "b1": one_minus_log_uniform(0.8, 0.98),
    "b2": one_minus_log_uniform(0.9, 0.9999), "weight_decay": log_uniform(1e-5, 1e-1)})
def schedule_free_adamw(learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.999,
                        eps: float = 1e-8, weight_decay: float = 0.0,
                        weight_lr_power: float = 2.0) -> optax.GradientTransformation:
  """Schedule-free AdamW (``optax.contrib.schedule_free_adamw``): no decay schedule needed.

  ``z ← z - lr·(g/(√v̂ + ε) + λy)`` (momentum-free AdamW step at ``y``),
  ``x ← (1-cₜ)x + cₜz`` with ``cₜ = lrₜ²/Σᵢ lrᵢ²`` (``weight_lr_power`` 2),
  ``y = (1-β₁)z + β₁x``. Training parameters are ``y``; **evaluate at ``x``**:
  ``jdl.optim.eval_params(opt_state, params)``. Use a constant or
  ``warmup_constant`` schedule, not a decaying one.

  Args:
    learning_rate: step size (a float or a warmup schedule).
    b1: interpolation ``β₁`` in ``(0, 1)``.
    b2: ``β₂``.
    eps: ``ε``.
    weight_decay: ``λ``.
    weight_lr_power: exponent of the learning rate in the averaging weights.

  Returns:
    the ``optax.contrib.schedule_free`` transformation.
  """
  b1 = _check_real("schedule_free_adamw", "b1", b1, low=0.0, low_open=True, high=1.0, high_open=True)
  b2 = _check_unit("schedule_free_adamw", "b2", b2)
  eps = _check_nonneg("schedule_free_adamw", "eps", eps)
  wd = _check_nonneg("schedule_free_adamw", "weight_decay", weight_decay)
  power = _check_nonneg("schedule_free_adamw", "weight_lr_power", weight_lr_power)
  return contrib.schedule_free_adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=wd, weight_lr_power=power)


@register("schedule_free_sgd", learning_rate=1.0, search_space={
    "learning_rate": log_uniform(1e-2, 10.0), "b1": one_minus_log_uniform(0.8, 0.98)})
def schedule_free_sgd(learning_rate: float | optax.Schedule, *, b1: float = 0.9, weight_decay: float = 0.0,
                      weight_lr_power: float = 2.0) -> optax.GradientTransformation:
  """Schedule-free SGD: ``z ← z - lr·(g + λy)`` at ``y``; ``x`` and ``y`` as in ``schedule_free_adamw``.

  Evaluate at ``jdl.optim.eval_params(opt_state, params)``.

  Args:
    learning_rate: step size.
    b1: interpolation ``β₁`` in ``(0, 1)``.
    weight_decay: ``λ``.
    weight_lr_power: exponent of the learning rate in the averaging weights.

  Returns:
    the ``optax.contrib.schedule_free`` transformation.
  """
  b1 = _check_real("schedule_free_sgd", "b1", b1, low=0.0, low_open=True, high=1.0, high_open=True)
  wd = _check_nonneg("schedule_free_sgd", "weight_decay", weight_decay)
  power = _check_nonneg("schedule_free_sgd", "weight_lr_power", weight_lr_power)
  return contrib.schedule_free_sgd(learning_rate, b1=b1, weight_decay=wd if _nonzero(wd) else None,
                                   weight_lr_power=power)


EvalParamsFn = Callable[[Any, Any], Any]
_EVAL_PARAMS: dict[type, EvalParamsFn] = {}


def register_eval_params(state_type: type, fn: EvalParamsFn) -> None:
  """Declares that an optimizer whose state contains a ``state_type`` is evaluated at ``fn(state, params)``.

  The hook of averaging optimizers (schedule-free, EMA, Polyak or SWA
  averages): training updates one sequence of parameters and evaluation should
  use another. Every evaluation in jdl (``make_eval_step``, hence ``fit``'s
  evaluations, the best-checkpoint choice, the test metrics and the benchmark
  curves) calls ``eval_params``, which finds a registered state anywhere in
  the optimizer state (under ``chain``, clipping, freezing, ``MultiSteps``)
  and applies its ``fn``.

  Args:
    state_type: the optimizer-state class to look for (e.g. a ``NamedTuple``).
    fn: ``(that state, params) -> params to evaluate``.
  """
  if not isinstance(state_type, type):
    raise TypeError(f"register_eval_params: state_type must be a class, got {state_type!r}")
  if not callable(fn):
    raise TypeError(f"register_eval_params: fn must be callable (state, params) -> params, got {fn!r}")
  _EVAL_PARAMS[state_type] = fn


def _find_eval_state(state: Any) -> tuple[Any, EvalParamsFn] | None:
  for state_type, fn in _EVAL_PARAMS.items():
    if isinstance(state, state_type):
      return state, fn
  children = state.values() if isinstance(state, Mapping) else state if isinstance(state, (tuple, list)) else ()
  for child in children:
    found = _find_eval_state(child)
    if found is not None:
      return found
  return None


def eval_params(opt_state: Any, params: Any) -> Any:
  """Returns the parameters to evaluate (and checkpoint for inference) with.

  For every optimizer without a registered evaluation hook
  (``register_eval_params``) this is ``params`` itself. For schedule-free
  optimizers the trained parameters are ``y = (1-β₁)z + β₁x`` and the
  evaluation parameters are ``x = (y - (1-β₁)z)/β₁``. Frozen parameters are
  returned unchanged.

  Args:
    opt_state: the optimizer state (as returned by ``tx.init``/``tx.update``);
      None gives ``params``.
    params: the current (training) parameters.

  Returns:
    a tree like ``params``.
  """
  found = _find_eval_state(opt_state)
  if found is None:
    return params
  state, fn = found
  return fn(state, params)


def _schedule_free_x(state: contrib.ScheduleFreeState, params: Any) -> Any:
  b1 = state.b1

  def one(y: Any, z: Any) -> Any:
    if isinstance(z, optax.MaskedNode):
      return y
    return ((y - (1.0 - b1) * z) / b1).astype(jnp.asarray(y).dtype)

  return jax.tree.map(one, params, state.z)


register_eval_params(contrib.ScheduleFreeState, _schedule_free_x)


# --------------------------------------------------------------------------- #
# Schedules. All count optimizer updates (t = 0, 1, ...).
# --------------------------------------------------------------------------- #

SCHEDULES: Registry[ScheduleFactory] = Registry("schedule", where="register_schedule")


def register_schedule(name: str, factory: ScheduleFactory | None = None, *, overwrite: bool = False) -> Any:
  """Registers a schedule factory ``factory(learning_rate, total_steps, **kwargs) -> optax.Schedule``.

  Args:
    name: the name configs use (``cfg.schedule.name``).
    factory: the factory; omitted, ``register_schedule`` returns a decorator.
    overwrite: allow replacing an existing registration (a built-in one too).

  Returns:
    ``factory`` (or a decorator that registers and returns it unchanged).
  """
  return SCHEDULES.register(name, overwrite=overwrite) if factory is None else SCHEDULES.register(
      name, factory, overwrite=overwrite)


def list_schedules() -> list[str]:
  """Returns the registered schedule names, sorted."""
  return SCHEDULES.names()


def schedule(name: str, *, learning_rate: float, total_steps: int | None = None, **kwargs: Any) -> optax.Schedule:
  """Builds the learning-rate schedule ``name``.

  Args:
    name: a registered schedule (``list_schedules()``).
    learning_rate: the base (peak) learning rate, ``>= 0``.
    total_steps: the number of optimizer updates of the run; the default for
      the schedule's ``decay_steps`` (schedules that decay need one of the two).
    **kwargs: the schedule's own arguments (see its docstring).

  Returns:
    ``fn(count) -> learning rate``.
  """
  where = f"schedule {name!r}"
  learning_rate = _check_nonneg(where, "learning_rate", learning_rate)
  if total_steps is not None:
    total_steps = _check_int(where, "total_steps", total_steps, low=1)
  factory = SCHEDULES.entry(name, "schedule").obj
  _bind(where, factory, {"learning_rate": learning_rate, "total_steps": total_steps, **kwargs})
  return factory(learning_rate=learning_rate, total_steps=total_steps, **kwargs)


def _decay_steps(where: str, decay_steps: int | None, total_steps: int | None) -> int:
  if decay_steps is None:
    if total_steps is None:
      raise ValueError(f"{where}: decay_steps is required when total_steps is unknown "
                       f"(got decay_steps=None, total_steps=None)")
    return total_steps
  return _check_int(where, "decay_steps", decay_steps, low=1)


@register_schedule("constant")
def _constant(learning_rate: float, total_steps: int | None) -> optax.Schedule:
  """``lr(t) = lr``."""
  del total_steps
  return optax.constant_schedule(learning_rate)


@register_schedule("step_decay")
def _step_decay(learning_rate: float, total_steps: int | None, *, boundaries: Sequence[int] | None = None,
                step_size: int | None = None, decay_rate: float | Sequence[float] = 0.1) -> optax.Schedule:
  """Staircase: ``lr(t) = lr·Π_{bᵢ <= t} rᵢ``.

  Give either ``boundaries`` (steps where the rate is multiplied by
  ``decay_rate``, or by ``decay_rate[i]`` at ``boundaries[i]``), or
  ``step_size`` (``lr(t) = lr·r^⌊t/step_size⌋``).
  """
  del total_steps
  where = "schedule 'step_decay'"
  if (boundaries is None) == (step_size is None):
    raise ValueError(f"{where}: give exactly one of boundaries and step_size, got boundaries={boundaries!r}, "
                     f"step_size={step_size!r}")
  if step_size is not None:
    step_size = _check_int(where, "step_size", step_size, low=1)
    rate = _check_nonneg(where, "decay_rate", decay_rate)
    return lambda count: learning_rate * jnp.power(rate, jnp.floor_divide(count, step_size).astype(jnp.float32))
  if isinstance(boundaries, (str, bytes)) or not isinstance(boundaries, Sequence) or not boundaries:
    raise TypeError(f"{where}: boundaries must be a non-empty list of steps, got {boundaries!r}")
  bounds = [_check_int(where, "boundaries", b, low=1) for b in boundaries]
  if any(b >= c for b, c in zip(bounds, bounds[1:])):
    raise ValueError(f"{where}: boundaries must be strictly increasing, got {boundaries!r}")
  if _is_real(decay_rate):
    rates = [decay_rate] * len(bounds)
  elif isinstance(decay_rate, Sequence) and len(decay_rate) == len(bounds):
    rates = list(decay_rate)
  else:
    raise ValueError(f"{where}: decay_rate must be a number or a list of len(boundaries)={len(bounds)} numbers, "
                     f"got {decay_rate!r}")
  rates = [_check_nonneg(where, "decay_rate", r) for r in rates]
  values = np.asarray(learning_rate * np.cumprod([1.0, *rates]), np.float32)
  bounds_arr = np.asarray(bounds, np.int32)
  return lambda count: jnp.asarray(values)[jnp.searchsorted(bounds_arr, count, side="right")]


@register_schedule("exponential")
def _exponential(learning_rate: float, total_steps: int | None, *, decay_rate: float = 0.1,
                 decay_steps: int | None = None, staircase: bool = False,
                 end_value: float | None = None) -> optax.Schedule:
  """``lr(t) = lr·decay_rate^(t/decay_steps)`` (``⌊t/decay_steps⌋`` with ``staircase``), floored at ``end_value``.

  ``decay_steps`` defaults to ``total_steps``: the rate reaches
  ``lr·decay_rate`` at the end of the run.
  """
  where = "schedule 'exponential'"
  steps = _decay_steps(where, decay_steps, total_steps)
  rate = _check_real(where, "decay_rate", decay_rate, low=0.0, low_open=True)
  if end_value is not None:
    end_value = _check_nonneg(where, "end_value", end_value)
  return optax.exponential_decay(learning_rate, transition_steps=steps, decay_rate=rate, staircase=bool(staircase),
                                 end_value=end_value)


@register_schedule("cosine")
def _cosine(learning_rate: float, total_steps: int | None, *, decay_steps: int | None = None,
            end_value: float = 0.0) -> optax.Schedule:
  """Cosine annealing: ``lr(t) = e + (lr - e)·½(1 + cos(π·min(t, T)/T))``.

  ``T = decay_steps`` (default ``total_steps``), ``e = end_value``.
  """
  where = "schedule 'cosine'"
  steps = _decay_steps(where, decay_steps, total_steps)
  end = _check_nonneg(where, "end_value", end_value)
  alpha = end / learning_rate if learning_rate else 0.0
  return optax.cosine_decay_schedule(learning_rate, decay_steps=steps, alpha=alpha)


@register_schedule("warmup_cosine")
def _warmup_cosine(learning_rate: float, total_steps: int | None, *, warmup_steps: int,
                   decay_steps: int | None = None, init_value: float = 0.0,
                   end_value: float = 0.0) -> optax.Schedule:
  """Linear warmup ``init_value → lr`` over ``warmup_steps``, then cosine ``lr → end_value``.

  ``decay_steps`` is the whole length, warmup included (default ``total_steps``):
  the cosine runs for ``decay_steps - warmup_steps`` updates.
  """
  where = "schedule 'warmup_cosine'"
  warmup = _check_int(where, "warmup_steps", warmup_steps, low=0)
  steps = _decay_steps(where, decay_steps, total_steps)
  if steps <= warmup:
    raise ValueError(f"{where}: decay_steps (warmup included) must be > warmup_steps={warmup}, got {steps}")
  return optax.warmup_cosine_decay_schedule(
      init_value=_check_nonneg(where, "init_value", init_value), peak_value=learning_rate, warmup_steps=warmup,
      decay_steps=steps, end_value=_check_nonneg(where, "end_value", end_value))


@register_schedule("warmup_constant")
def _warmup_constant(learning_rate: float, total_steps: int | None, *, warmup_steps: int,
                     init_value: float = 0.0) -> optax.Schedule:
  """Linear warmup ``init_value → lr`` over ``warmup_steps``, then constant (for schedule-free)."""
  del total_steps
  where = "schedule 'warmup_constant'"
  return optax.warmup_constant_schedule(init_value=_check_nonneg(where, "init_value", init_value),
                                        peak_value=learning_rate,
                                        warmup_steps=_check_int(where, "warmup_steps", warmup_steps, low=0))


@register_schedule("sgdr")
def _sgdr(learning_rate: float, total_steps: int | None, *, cycle_steps: int, cycle_mult: float = 1.0,
          decay_factor: float = 1.0, end_value: float = 0.0) -> optax.Schedule:
  """Cosine annealing with warm restarts (SGDR).

  Cycle ``i`` starts at ``sᵢ`` and lasts ``Tᵢ = ⌊cycle_steps·cycle_multⁱ⌋``;
  inside it ``lr(t) = e + (lr·decay_factorⁱ - e)·½(1 + cos(π(t - sᵢ)/Tᵢ))``.
  """
  where = "schedule 'sgdr'"
  t0 = _check_int(where, "cycle_steps", cycle_steps, low=1)
  mult = _check_real(where, "cycle_mult", cycle_mult, low=1.0)
  gamma = _check_nonneg(where, "decay_factor", decay_factor)
  end = _check_nonneg(where, "end_value", end_value)
  # Cycle starts up to the end of the run (or int32's range); the last cycle is held at its end value.
  limit = total_steps if total_steps is not None else int(np.iinfo(np.int32).max)
  starts, lengths = [0], [t0]
  while mult > 1.0 and starts[-1] + lengths[-1] < limit:
    if len(starts) >= 100_000:
      raise ValueError(f"{where}: cycle_mult={cycle_mult!r} makes over 100000 cycles; raise it or give total_steps")
    starts.append(starts[-1] + lengths[-1])
    lengths.append(max(1, int(t0 * mult ** (len(starts) - 1))))
  starts_arr, lengths_arr = np.asarray(starts, np.int32), np.asarray(lengths, np.float32)

  def fn(count: Any) -> jax.Array:
    count = jnp.asarray(count)
    if mult == 1.0:
      cycle = count // t0
      t_cur, period = count - cycle * t0, float(t0)
    else:
      cycle = jnp.searchsorted(starts_arr, count, side="right") - 1
      t_cur, period = count - jnp.asarray(starts_arr)[cycle], jnp.asarray(lengths_arr)[cycle]
    peak = learning_rate * jnp.power(gamma, cycle.astype(jnp.float32))
    frac = jnp.minimum(t_cur.astype(jnp.float32) / period, 1.0)
    return end + (peak - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))

  return fn


@register_schedule("one_cycle")
def _one_cycle(learning_rate: float, total_steps: int | None, *, decay_steps: int | None = None,
               pct_start: float = 0.3, div_factor: float = 25.0, final_div_factor: float = 1e4) -> optax.Schedule:
  """One-cycle (cosine): ``lr/div_factor → lr`` at ``⌊pct_start·T⌋``, then down to the end.

  The end value, at ``T``, is ``lr/(div_factor·final_div_factor)``. Both phases are cosine interpolations; ``T = decay_steps`` (default ``total_steps``).
  """
  where = "schedule 'one_cycle'"
  steps = _decay_steps(where, decay_steps, total_steps)
  pct = _check_real(where, "pct_start", pct_start, low=0.0, low_open=True, high=1.0, high_open=True)
  if not 0 < int(pct * steps) < steps:
    raise ValueError(f"{where}: pct_start·decay_steps must fall strictly inside (0, {steps}), got "
                     f"pct_start={pct_start!r}")
  return optax.cosine_onecycle_schedule(
      steps, learning_rate, pct_start=pct, div_factor=_check_real(where, "div_factor", div_factor, low=1.0),
      final_div_factor=_check_real(where, "final_div_factor", final_div_factor, low=1.0))


@register_schedule("linear")
def _linear(learning_rate: float, total_steps: int | None, *, decay_steps: int | None = None,
            end_value: float = 0.0) -> optax.Schedule:
  """Linear decay: ``lr(t) = lr + (end_value - lr)·min(t, T)/T``, ``T = decay_steps`` (default ``total_steps``)."""
  where = "schedule 'linear'"
  steps = _decay_steps(where, decay_steps, total_steps)
  return optax.linear_schedule(learning_rate, _check_nonneg(where, "end_value", end_value), steps)


# --------------------------------------------------------------------------- #
# The config-level builder.
# --------------------------------------------------------------------------- #

CONFIG_KEYS = ("name", "learning_rate", "hparams", "schedule", "clip_global_norm", "accumulate_steps", "freeze",
               "groups")
GROUP_KEYS = ("params", "learning_rate_scale", "start_epoch")


def param_groups(inner: optax.GradientTransformation, groups: Mapping[str, Any], *, updates_per_epoch: int | None = None,
                 where: str = "groups") -> optax.GradientTransformation:
  """``inner`` with its learning rate scaled per parameter group, and groups that start late.

  Fine-tuning's classic recipe: the new head at the full rate, the pretrained
  layers at a tenth of it, the lowest ones not at all, or only from a later
  epoch on (gradual unfreezing). Each group runs its own copy of ``inner``
  (its own moments) whose updates are multiplied by ``learning_rate_scale``
  (for optax's optimizers, exactly a learning rate that many times smaller:
  the rate is their last factor), and by 0 before ``start_epoch``. Parameters
  in no group use ``inner`` as it is.

  Args:
    inner: the optimizer.
    groups: ``{name: {"params": globs, "learning_rate_scale": float (1.0),
      "start_epoch": int (0)}}``; a parameter belongs to the first group whose
      globs match its ``'/'``-joined path.
    updates_per_epoch: optimizer updates per epoch (needed for ``start_epoch``).
    where: the name used in error messages.

  Returns:
    the partitioned transformation.
  """
  checked: dict[str, tuple[tuple[str, ...], float, int]] = {}
  for name, group in groups.items():
    group = _as_dict(where, f"groups.{name}", group)
    unknown = sorted(set(group) - set(GROUP_KEYS))
    if unknown:
      raise ValueError(f"{where}: group {name!r} has unknown keys {unknown}; known keys: {', '.join(GROUP_KEYS)}")
    if name in ("default", "frozen", "trainable"):
      raise ValueError(f"{where}: {name!r} is reserved; name the group otherwise")
    patterns = _check_patterns(where, f"groups.{name}.params", group.get("params", ()))
    if not patterns:
      raise ValueError(f"{where}: group {name!r} needs params (path globs)")
    scale = _check_real(where, f"groups.{name}.learning_rate_scale", group.get("learning_rate_scale", 1.0), low=0.0)
    start = _check_int(where, f"groups.{name}.start_epoch", group.get("start_epoch", 0), low=0)
    if start and updates_per_epoch is None:
      raise ValueError(f"{where}: group {name!r} starts at epoch {start}; pass updates_per_epoch")
    checked[name] = (patterns, scale, start)
  if not checked:
    return inner
  masks = {name: path_mask(patterns, where=f"{where} group {name!r}") for name, (patterns, _, _) in checked.items()}

  def labels(params: Any) -> Any:
    marks = {name: jax.tree.leaves(mask(params)) for name, mask in masks.items()}
    flat, treedef = jax.tree.flatten(params)
    return jax.tree.unflatten(treedef, [next((n for n in checked if marks[n][i]), "default") for i in range(len(flat))])

  transforms: dict[str, optax.GradientTransformation] = {"default": inner}
  for name, (_, scale, start) in checked.items():
    if start:
      first = start * updates_per_epoch
      factor = optax.scale_by_schedule(lambda count, s=scale, f=first: jnp.where(count < f, 0.0, s))
    else:
      factor = optax.scale(scale)
    transforms[name] = optax.chain(inner, factor)
  return optax.partition(transforms, labels)


def _as_dict(where: str, arg: str, value: Any) -> dict[str, Any]:
  if hasattr(value, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict
    value = value.to_dict()
  if not isinstance(value, Mapping):
    raise TypeError(f"{where}: {arg} must be a dict or ConfigDict, got {value!r} ({type(value).__name__})")
  return dict(value)


def _learning_rate(where: str, cfg: Mapping[str, Any], spec: OptimizerSpec, total_steps: int | None
                   ) -> tuple[float | optax.Schedule, int]:
  """The config's learning rate (a float, or its schedule of updates) and its accumulate_steps."""
  lr = cfg.get("learning_rate")
  lr = spec.learning_rate if lr is None else _check_nonneg(where, "learning_rate", lr)
  accumulate = cfg.get("accumulate_steps")
  accumulate = 1 if accumulate is None else _check_int(where, "accumulate_steps", accumulate, low=1)
  if total_steps is not None:
    total_steps = _check_int(where, "total_steps", total_steps, low=1)
    updates = total_steps // accumulate
    if updates < 1:
      raise ValueError(f"{where}: total_steps={total_steps} is fewer than accumulate_steps={accumulate}")
  else:
    updates = None

  sched_cfg = cfg.get("schedule") or None  # an empty group means a constant rate
  if sched_cfg is None:
    learning_rate: float | optax.Schedule = lr
  else:
    sched_cfg = {"name": sched_cfg} if isinstance(sched_cfg, str) else _as_dict(where, "schedule", sched_cfg)
    if "name" not in sched_cfg:
      raise ValueError(f"{where}: schedule needs a 'name'; known schedules: {', '.join(list_schedules())}")
    sched_kwargs = {k: v for k, v in sched_cfg.items() if k != "name"}
    for reserved in ("learning_rate", "total_steps"):
      if reserved in sched_kwargs:
        raise ValueError(f"{where}: schedule.{reserved} is set by from_config (the config's learning_rate and "
                         f"total_steps), got schedule.{reserved}={sched_kwargs[reserved]!r}")
    learning_rate = schedule(sched_cfg["name"], learning_rate=lr, total_steps=updates, **sched_kwargs)
  return learning_rate, accumulate


def learning_rate_fn(cfg: Mapping[str, Any] | Any, *, total_steps: int | None = None) -> Callable[[int], float]:
  """``fn(step) -> learning rate`` of the optimizer ``from_config(cfg, total_steps=...)`` builds.

  ``step`` counts train-step calls (as ``logs["step"]``); with
  ``accumulate_steps=k`` the rate is the schedule's at update ``step // k``.
  ``jdl train`` logs it every epoch as ``learning_rate``.
  """
  cfg = _as_dict("learning_rate_fn", "cfg", cfg)
  learning_rate, accumulate = _learning_rate("learning_rate_fn", cfg, get_spec(cfg["name"]), total_steps)
  if not callable(learning_rate):
    return lambda step: float(learning_rate)
  return lambda step: float(learning_rate(int(step) // accumulate))


def from_config(cfg: Mapping[str, Any] | Any, *, total_steps: int | None = None,
                steps_per_epoch: int | None = None) -> optax.GradientTransformation:
  """Builds the training optimizer from a config.

  ``cfg`` (a dict or ``ml_collections.ConfigDict``)::

    {"name": "rmsprop",                 # list_optimizers()
     "learning_rate": 1e-3,             # default: the optimizer's registered one
     "hparams": {"centered": True},     # the optimizer's hyperparameters
     "schedule": {"name": "warmup_cosine", "warmup_steps": 100},   # or "cosine", or None
     "clip_global_norm": 1.0,           # or None
     "accumulate_steps": 4,             # MultiSteps over 4 micro-batches; 1 = off
     "freeze": ["encoder", "*/bias"],   # path globs; frozen params never change
     "groups": {"backbone": {"params": ["layer*"], "learning_rate_scale": 0.1, "start_epoch": 2}}}

  The chain, innermost first: base optimizer (its learning rate is the
  schedule, whose peak is ``learning_rate``), per group (``param_groups``) →
  global-norm clip → freezing partition (frozen parameters get zero updates
  and no state) → ``optax.MultiSteps``.

  Steps: schedules count optimizer *updates*. ``total_steps`` is the number of
  train-step calls (``epochs × steps_per_epoch``); with ``accumulate_steps=k``
  the schedule's default length is ``total_steps // k`` updates. Explicit
  schedule step arguments (``warmup_steps``, ``decay_steps`` ...) are updates.

  Args:
    cfg: the optimizer config; unknown keys are an error.
    total_steps: train-step calls of the run, or None when unknown (then
      decaying schedules need an explicit ``decay_steps``).
    steps_per_epoch: train-step calls per epoch (for the groups' ``start_epoch``).

  Returns:
    the ``optax.GradientTransformation`` (a ``MultiSteps`` transformation when
    ``accumulate_steps > 1``: its ``update`` returns zeros until the k-th call).
  """
  where = "from_config"
  cfg = _as_dict(where, "cfg", cfg)
  unknown = sorted(set(cfg) - set(CONFIG_KEYS))
  if unknown:
    raise ValueError(f"{where}: unknown config keys {unknown}; known keys: {', '.join(CONFIG_KEYS)}")
  if "name" not in cfg:
    raise ValueError(f"{where}: cfg needs a 'name'; known optimizers: {', '.join(list_optimizers())}")
  spec = get_spec(cfg["name"])
  hparams = _as_dict(where, "hparams", cfg.get("hparams") or {})
  if "learning_rate" in hparams:
    raise ValueError(f"{where}: give learning_rate at the top level of the config, not in hparams "
                     f"(got hparams.learning_rate={hparams['learning_rate']!r})")
  learning_rate, accumulate = _learning_rate(where, cfg, spec, total_steps)

  tx = create(spec.name, learning_rate=learning_rate, **hparams)
  groups = cfg.get("groups") or {}
  if groups:
    groups = _as_dict(where, "groups", groups)
    tx = param_groups(tx, groups, where=f"{where}: groups",
                      updates_per_epoch=None if steps_per_epoch is None else max(1, steps_per_epoch // accumulate))
  clip = cfg.get("clip_global_norm")
  if clip is not None:
    clip = _check_real(where, "clip_global_norm", clip, low=0.0, low_open=True)
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  patterns = _check_patterns(where, "freeze", cfg.get("freeze") or ())
  if patterns:
    tx = freeze(tx, patterns)
  if accumulate > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=accumulate).gradient_transformation()
  return tx


OPTIMIZERS.seal()  # the optimizers and schedules above are built in; later ones are the user's
SCHEDULES.seal()
