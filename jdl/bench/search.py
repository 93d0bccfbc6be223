"""Optimizers under test, their search spaces, and how tuning trials are drawn.

An optimizer is a name from ``jdl.optim``'s registry (its factory and default
search space come from there) or a ``BenchOptimizer`` registered here with
``register_optimizer`` (any ``factory(learning_rate=..., **hparams) ->
optax.GradientTransformation``, e.g. a plain optax function).

Trials are drawn by ``grid`` (a log-spaced/linear grid over the tuned
dimensions) or ``quasirandom`` (a shifted Halton sequence mapped through each
dimension's distribution, as AlgoPerf's baselines). Both are deterministic: the
same optimizer, space and K always give the same trials, which is what lets an
interrupted suite resume.

Which hyperparameters can be *traced* (passed as arrays, so trials that differ
only in them share one compiled program, vmapped) is found by trying:
``trace_plan`` builds the optimizer under ``jax.eval_shape`` with array
hyperparameters and falls back to Python constants where the factory needs
them (a factory with Python control flow on a value). jdl.optim's factories
check concrete values only, so every numeric hyperparameter of theirs traces.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdl.registry import Registry, same_definition

Factory = Callable[..., optax.GradientTransformation]
SearchSpace = dict[str, dict[str, Any]]

SEARCH_METHODS = ("grid", "quasirandom")
SCHEDULES = (None, "cosine")
# Built-in variants of jdl.optim's optimizers: (base, schedule).
VARIANTS = {"adam_cosine": ("adam", "cosine"), "momentum_cosine": ("momentum", "cosine")}


@dataclasses.dataclass(frozen=True)
class BenchOptimizer:
  """An optimizer under test.

  Attributes:
    name: the name results and reports use.
    factory: ``factory(learning_rate=..., **hparams) -> GradientTransformation``.
    search_space: hyperparameter → dimension (``jdl.optim.log_uniform`` and
      friends); must include ``learning_rate``.
    fixed: hyperparameters passed to every trial and never tuned.
    schedule: ``None`` (a constant learning rate) or ``"cosine"``: the
      learning rate decays to zero over the workload's step budget,
      ``lr · ½(1 + cos(π·t/T))`` (the factory must accept a schedule, as
      jdl.optim's do).
  """

  name: str
  factory: Factory
  search_space: Mapping[str, Mapping[str, Any]]
  fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  schedule: str | None = None

  def __post_init__(self) -> None:
    if self.schedule not in SCHEDULES:
      raise ValueError(f"optimizer {self.name!r}: schedule must be one of {SCHEDULES}, got {self.schedule!r}")
    if not isinstance(self.name, str) or not self.name:
      raise TypeError(f"optimizer name: expected a non-empty string, got {self.name!r}")
    if not callable(self.factory):
      raise TypeError(f"optimizer {self.name!r}: factory must be callable, got {self.factory!r}")
    import jdl.optim  # pylint: disable=g-import-not-at-top

    jdl.optim.check_search_space(f"optimizer {self.name!r}", self.search_space)


OPTIMIZERS: Registry[BenchOptimizer] = Registry(
    "optimizer", where="register_optimizer", same=lambda old, new: same_definition(old.factory, new.factory)
    and old.search_space == new.search_space and old.fixed == new.fixed)
OPTIMIZERS.seal()  # none is built in: jdl.optim's are found through get_optimizer
_FROM_JDL: dict[str, tuple[Any, BenchOptimizer]] = {}


def register_optimizer(name: str, factory: Factory, *, search_space: Mapping[str, Any],
                       fixed: Mapping[str, Any] | None = None, overwrite: bool = False) -> BenchOptimizer:
  """Registers a GradientTransformation factory for benchmarking; returns its ``BenchOptimizer``.

  Use it from your own file (``jdl bench run --import FILE``)::

    jdl.bench.register_optimizer("lion", optax.lion, search_space={
        "learning_rate": jdl.optim.log_uniform(1e-5, 1e-2), "b1": jdl.optim.uniform(0.85, 0.95)})

  The factory is called directly, ``factory(learning_rate=..., **hparams)``;
  plain optax factories accept arrays, so all K trials of a tuning run share
  one compiled program. A name of ``jdl.optim``'s needs ``overwrite=True`` (yours then shadows it).
  Registering the same factory and spaces again (a file imported twice) is a no-op.

  Raises:
    ValueError: the name is taken (and not ``overwrite``), or a bad search space.
  """
  opt = BenchOptimizer(name=name, factory=factory, search_space=dict(search_space), fixed=dict(fixed or {}))
  import jdl.optim  # pylint: disable=g-import-not-at-top

  if name in jdl.optim.OPTIMIZERS and name not in OPTIMIZERS and not overwrite:
    raise ValueError(f"register_optimizer: {name!r} is jdl.optim's optimizer, which the benchmark would use; pass "
                     "overwrite=True to benchmark yours under that name instead, or choose another name")
  return OPTIMIZERS.register(name, opt, overwrite=overwrite)


def _jdl_factory(name: str, **kwargs: Any) -> optax.GradientTransformation:
  import jdl.optim  # pylint: disable=g-import-not-at-top

  return jdl.optim.create(name, **kwargs)


def get_optimizer(optimizer: str | BenchOptimizer) -> BenchOptimizer:
  """A ``BenchOptimizer`` for a bench-registered name, a ``jdl.optim`` name, or itself.

  Raises:
    ValueError: an unknown name (the message lists the known ones).
  """
  if isinstance(optimizer, BenchOptimizer):
    return optimizer
  if not isinstance(optimizer, str):
    raise TypeError(f"optimizer: expected a name or a BenchOptimizer, got {type(optimizer).__name__} {optimizer!r}")
  if optimizer in OPTIMIZERS:
    return OPTIMIZERS[optimizer]
  if optimizer in VARIANTS:
    base, schedule = VARIANTS[optimizer]
    opt = get_optimizer(base)
    cached = _FROM_JDL.get(optimizer)
    if cached is None or cached[0] is not opt:
      _FROM_JDL[optimizer] = cached = (opt, dataclasses.replace(opt, name=optimizer, schedule=schedule))
    return cached[1]
  import jdl.optim  # pylint: disable=g-import-not-at-top

  if optimizer not in jdl.optim.list_optimizers():
    known = sorted(set(jdl.optim.list_optimizers()) | set(OPTIMIZERS) | set(VARIANTS))
    raise ValueError(f"unknown optimizer {optimizer!r}; known optimizers: {', '.join(known)}")
  # One object per registration, so that compiled programs (keyed by the factory) are reused.
  spec = jdl.optim.get_spec(optimizer)
  cached = _FROM_JDL.get(optimizer)
  if cached is None or cached[0] is not spec:
    opt = BenchOptimizer(name=optimizer, factory=functools.partial(_jdl_factory, optimizer),
                         search_space=jdl.optim.search_space(optimizer))
    _FROM_JDL[optimizer] = cached = (spec, opt)
  return cached[1]


def list_optimizers() -> list[str]:
  """Every optimizer name the benchmark accepts: jdl.optim's and those registered here."""
  import jdl.optim  # pylint: disable=g-import-not-at-top

  return sorted(set(jdl.optim.list_optimizers()) | set(OPTIMIZERS) | set(VARIANTS))


# --------------------------------------------------------------------------- #
# Drawing trials.
# --------------------------------------------------------------------------- #


def tuned_space(opt: BenchOptimizer, tune: Sequence[str] | None) -> SearchSpace:
  """The dimensions of ``opt``'s space that are tuned: all when ``tune`` is None.

  Raises:
    ValueError: ``tune`` names a hyperparameter the space does not have, or
      leaves out the learning rate.
  """
  space = {k: dict(v) for k, v in opt.search_space.items()}
  if tune is None:
    return space
  tune = list(tune)
  unknown = [t for t in tune if t not in space]
  if unknown:
    raise ValueError(f"tune: optimizer {opt.name!r} has no search dimension(s) {unknown}; its space: {sorted(space)}")
  if "learning_rate" not in tune:
    raise ValueError(f"tune: must include 'learning_rate', got {tune}")
  return {k: space[k] for k in space if k in tune}


def round_value(value: float) -> float:
  """Six significant digits: readable hyperparameters and stable run ids."""
  return float(f"{value:.6g}")


def _from_unit(dim: Mapping[str, Any], q: float) -> Any:
  kind = dim["distribution"]
  if kind == "choice":
    values = list(dim["values"])
    return values[min(int(q * len(values)), len(values) - 1)]
  low, high = float(dim["low"]), float(dim["high"])
  if kind == "log_uniform":
    return round_value(math.exp(math.log(low) + q * (math.log(high) - math.log(low))))
  if kind == "uniform":
    return round_value(low + q * (high - low))
  # one_minus_log_uniform: 1 - x is log-uniform in [1 - high, 1 - low].
  a, b = math.log(1.0 - high), math.log(1.0 - low)
  return round_value(1.0 - math.exp(b + q * (a - b)))


def _primes(n: int) -> list[int]:
  out, k = [], 2
  while len(out) < n:
    if all(k % p for p in out):
      out.append(k)
    k += 1
  return out


def halton(num: int, dims: int, *, seed: int = 0) -> np.ndarray:
  """``num`` points of a ``dims``-dimensional Halton sequence in [0, 1), randomly shifted (mod 1).

  The shift (Cranley-Patterson rotation) comes from ``seed``; index 0 is
  skipped.
  """
  points = np.empty((num, dims))
  for d, base in enumerate(_primes(dims)):
    for i in range(num):
      f, r, k = 1.0, 0.0, i + 1
      while k > 0:
        f /= base
        r += f * (k % base)
        k //= base
      points[i, d] = r
  shift = np.random.default_rng(seed).uniform(size=dims)
  return (points + shift[None, :]) % 1.0


def _grid_axis(dim: Mapping[str, Any], n: int) -> list[Any]:
  if dim["distribution"] == "choice":
    return list(dim["values"])
  if n == 1:
    return [_from_unit(dim, 0.5)]
  return [_from_unit(dim, i / (n - 1)) for i in range(n)]


def draw_trials(opt: BenchOptimizer, trials: int, *, method: str = "grid", tune: Sequence[str] | None = None,
                seed: int = 0) -> list[dict[str, Any]]:
  """The hyperparameters of ``opt``'s tuning trials (deterministic).

  Args:
    opt: the optimizer.
    trials: K, the tuning budget.
    method: ``"grid"``: every combination of ``n`` points per continuous tuned
      dimension (ends included; ``n = round((K / choices)^(1/d))``, so K is
      met exactly for a learning-rate-only grid) and every value of each
      ``choice`` dimension. ``"quasirandom"``: K points of a shifted Halton
      sequence.
    tune: the tuned dimensions (None: the whole space). Hyperparameters not
      tuned take the factory's defaults (or ``opt.fixed``).
    seed: the Halton shift.

  Returns:
    one dict per trial, ``opt.fixed`` merged in.
  """
  if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
    raise ValueError(f"trials: expected a positive integer, got {trials!r}")
  if method not in SEARCH_METHODS:
    raise ValueError(f"search: expected one of {SEARCH_METHODS}, got {method!r}")
  space = tuned_space(opt, tune)
  names = sorted(space, key=lambda k: (k != "learning_rate", k))
  if method == "quasirandom":
    points = halton(trials, len(names), seed=seed)
    out = [{k: _from_unit(space[k], q) for k, q in zip(names, row)} for row in points]
  else:
    choices = math.prod(len(space[k]["values"]) for k in names if space[k]["distribution"] == "choice")
    continuous = [k for k in names if space[k]["distribution"] != "choice"]
    n = max(1, round((trials / choices) ** (1.0 / max(len(continuous), 1))))
    axes = [_grid_axis(space[k], n) for k in names]
    out = [dict(zip(names, combo)) for combo in _product(axes)]
  return [{**dict(opt.fixed), **hp} for hp in out]


def _product(axes: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
  combos: list[tuple[Any, ...]] = [()]
  for axis in axes:
    combos = [c + (v,) for c in combos for v in axis]
  return combos


# --------------------------------------------------------------------------- #
# Traced hyperparameters.
# --------------------------------------------------------------------------- #

LR_ARRAY, LR_SCHEDULE, LR_STATIC = "array", "schedule", "static"


@dataclasses.dataclass(frozen=True)
class TracePlan:
  """How hyperparameters enter the compiled program.

  Attributes:
    lr_mode: ``"array"`` (the learning rate is passed as an array),
      ``"schedule"`` (as a constant schedule ``lambda count: lr``, for
      factories that accept schedules but not arrays) or ``"static"``.
    traced: the other hyperparameters passed as arrays; the rest are Python
      constants, and trials that differ in them compile separately.
  """

  lr_mode: str
  traced: tuple[str, ...]

  def traced_names(self) -> tuple[str, ...]:
    lr = ("learning_rate",) if self.lr_mode != LR_STATIC else ()
    return lr + self.traced


def make_tx(opt: BenchOptimizer, plan: TracePlan, static: Mapping[str, Any],
            traced: Mapping[str, Any], steps: int = 1) -> optax.GradientTransformation:
  """Builds the optimizer from constant and (possibly traced) array hyperparameters (``steps``: the budget)."""
  kwargs = dict(static)
  for name, value in traced.items():
    if name == "learning_rate" and plan.lr_mode == LR_SCHEDULE:
      kwargs[name] = _constant_schedule(value)
    else:
      kwargs[name] = value
  if opt.schedule == "cosine":
    kwargs["learning_rate"] = _cosine(kwargs["learning_rate"], steps)
  return opt.factory(**kwargs)


def _cosine(lr: Any, steps: int) -> Callable[[Any], Any]:
  base = lr if callable(lr) else _constant_schedule(lr)
  return lambda count: base(count) * 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(count / steps, 1.0)))


def _constant_schedule(value: Any) -> Callable[[Any], Any]:
  return lambda count: value


def _builds(opt: BenchOptimizer, plan: TracePlan, sample: Mapping[str, Any]) -> bool:
  """Whether ``opt`` builds and updates with ``plan``'s hyperparameters as arrays (abstractly)."""
  names = plan.traced_names()
  static = {k: v for k, v in sample.items() if k not in names}
  arrays = {k: jnp.asarray(float(sample[k]), jnp.float32) for k in names}

  def update(hp):
    tx = make_tx(opt, plan, static, hp)
    params = {"w": jnp.zeros((3,), jnp.float32)}
    state = tx.init(params)
    updates, _ = tx.update(params, state, params)
    return updates

  try:
    jax.eval_shape(update, arrays)
  except Exception:  # pylint: disable=broad-except  # any failure means "not traceable"
    return False
  return True


def trace_plan(opt: BenchOptimizer, sample: Mapping[str, Any]) -> TracePlan:
  """Finds which of ``sample``'s hyperparameters ``opt`` accepts as arrays.

  Args:
    opt: the optimizer.
    sample: one trial's hyperparameters (with ``learning_rate``).

  Returns:
    the ``TracePlan``: the learning rate as an array if the factory takes one,
    else as a constant schedule, else static; then each other numeric
    hyperparameter that can be added as an array.
  """
  plan = TracePlan(LR_STATIC, ())
  for mode in (LR_ARRAY, LR_SCHEDULE):
    if _builds(opt, TracePlan(mode, ()), sample):
      plan = TracePlan(mode, ())
      break
  numeric = [k for k, v in sorted(sample.items())
             if k != "learning_rate" and isinstance(v, (int, float)) and not isinstance(v, bool)
             and opt.search_space.get(k, {}).get("distribution") not in (None, "choice")]
  if numeric and _builds(opt, TracePlan(plan.lr_mode, tuple(numeric)), sample):
    return TracePlan(plan.lr_mode, tuple(numeric))
  traced: list[str] = []
  for name in numeric:
    if _builds(opt, TracePlan(plan.lr_mode, (*traced, name)), sample):
      traced.append(name)
  return TracePlan(plan.lr_mode, tuple(traced))
