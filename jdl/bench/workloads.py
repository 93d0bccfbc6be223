"""Benchmark workloads: data + model + loss + target metric + step budget, by name.

A ``Workload`` is static description (cheap to create and to hash into a run
id); its ``build()`` loads the data and returns a ``Problem``, the arrays and
functions the engine trains on. Every problem, including the 2-D test
functions and the noisy quadratic, is a Flax module trained by jdl's own
``train_step``, so one engine runs them all.

Register your own from your own file and pass it to ``jdl bench run --import
FILE``::

  import jdl.bench

  jdl.bench.register_workload(jdl.bench.dataset_workload(
      "iris_mlp", dataset="iris", model="mlp", model_options={"hidden": (16,)},
      metric="accuracy", target=0.9, steps=300, eval_every=30, batch_size=16))
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jdl.registry import Registry
from jdl.train import step as step_lib

Arrays = dict[str, np.ndarray]
LossFn = Callable[[Any, Mapping[str, jax.Array]], jax.Array]
MetricsFn = Callable[[Any, Mapping[str, jax.Array]], dict[str, jax.Array]]

VALID_SPLIT = "train[90%:]"
TRAIN_SPLIT = "train[:90%]"
MIN_VALID = 100  # fewer validation examples than this and one example moves the metric by more than 1%


def splits(valid_percent: int) -> tuple[str, str]:
  """The training and validation splits carved from ``train``: ``("train[:P%]", "train[P%:]")``, P = 100 - valid_percent."""
  if isinstance(valid_percent, bool) or not isinstance(valid_percent, int) or not 0 < valid_percent < 100:
    raise ValueError(f"valid_percent: expected an integer percentage in 1..99, got {valid_percent!r}")
  return f"train[:{100 - valid_percent}%]", f"train[{100 - valid_percent}%:]"


@dataclasses.dataclass(frozen=True)
class Problem:
  """What the engine trains: a model, its loss and metrics, and three data splits.

  Attributes:
    model: a linen module called as ``model.apply(variables, x, train=...)``.
    loss_fn: ``(outputs, batch) -> per-example loss``.
    example_metrics: ``(outputs, batch) -> {name: per-example values}``;
      evaluated on the validation and test sets (means) and on every training
      batch.
    input_key: the key of the model's input in the batches.
    train: training arrays (a dict with a common leading axis).
    valid: validation arrays (tuning decisions and time-to-target use these).
    test: test arrays (reported, never used for decisions).
  """

  model: nn.Module
  loss_fn: LossFn
  example_metrics: MetricsFn
  input_key: str
  train: Arrays
  valid: Arrays
  test: Arrays


@dataclasses.dataclass(frozen=True)
class Surface:
  """A 2-D test function for trajectory plots: ``fn(u, v)`` on numpy arrays."""

  fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
  bounds: tuple[tuple[float, float], tuple[float, float]]
  start: tuple[float, float]
  minimum: tuple[float, float] | None = None
  log_levels: bool = True


@dataclasses.dataclass(frozen=True)
class Workload:
  """A benchmark task: data, model, loss, target metric and step budget.

  Attributes:
    name: the registry name.
    build: ``() -> Problem`` (loads data; called once per process and cached).
    metric: the evaluation metric that decides tuning and time-to-target: a key
      of ``example_metrics`` or ``"loss"``.
    mode: ``"max"`` (accuracy) or ``"min"`` (a loss).
    target: the validation value to reach (``>= target`` for ``max``, ``<=``
      for ``min``).
    steps: the step budget of every run.
    eval_every: steps between evaluations (divides ``steps``).
    batch_size: training batch size.
    eval_batch_size: evaluation batch size.
    config: JSON-able facts that identify the data and model (hashed into run
      ids, so a changed workload never reuses old results).
    description: one line for reports.
    surface: for 2-D test functions, what trajectory plots draw.
    vmap_runs: train runs together as one vmapped program. Set it False for
      convolutional models: vmap turns per-run kernels into a grouped
      convolution, which XLA's CPU backend runs several times slower than
      one convolution per run (suites ignore it on GPU/TPU).
    precision: the compute dtype policy (``jdl.train.precision``), as
      ``config.precision`` of ``jdl train``.
    streamed: ``jdl.metrics`` specs (``"f1:macro"``, ``"auroc"``) streamed
      over the validation and test sets like ``config.metrics``; their keys
      can be the workload's ``metric``.
    toy: a test function rather than a learning problem (the 2-D surfaces;
      ``quadratic_deep``, DeepOBS' test problem, is scored): reports show it
      apart and leave it out of the score.
    variant_of: a held-out variant of that workload (AlgoPerf's idea: the
      architecture changed a little); reports check that the ranking survives
      on the variants and leave them out of the score.
    test_every_eval: evaluate the test set at every evaluation too (default:
      only at the end of a run; the test set never decides anything, and on
      the larger workloads it costs more than training).
  """

  name: str
  build: Callable[[], Problem]
  metric: str
  mode: str
  target: float
  steps: int
  eval_every: int
  batch_size: int
  eval_batch_size: int = 1000
  config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  description: str = ""
  surface: Surface | None = None
  vmap_runs: bool = True
  precision: str = "float32"
  streamed: tuple[str, ...] = ()
  toy: bool = False
  variant_of: str | None = None
  test_every_eval: bool = False

  def __post_init__(self) -> None:
    where = f"workload {self.name!r}"
    from jdl import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
    from jdl.train import precision as precision_lib  # pylint: disable=g-import-not-at-top

    precision_lib.get_policy(self.precision)  # raises on an unknown name
    object.__setattr__(self, "streamed", tuple(self.streamed))
    metrics_lib.parse_specs(self.streamed)
    if not isinstance(self.name, str) or not self.name:
      raise TypeError(f"workload name: expected a non-empty string, got {self.name!r}")
    if not callable(self.build):
      raise TypeError(f"{where}: build must be a function returning a Problem, got {self.build!r}")
    if self.mode not in ("max", "min"):
      raise ValueError(f"{where}: mode must be 'max' or 'min', got {self.mode!r}")
    if not isinstance(self.target, (int, float)) or not math.isfinite(self.target):
      raise TypeError(f"{where}: target must be a finite number, got {self.target!r}")
    for arg in ("steps", "eval_every", "batch_size", "eval_batch_size"):
      value = getattr(self, arg)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: {arg} must be a positive integer, got {value!r}")
    if self.steps % self.eval_every:
      raise ValueError(f"{where}: eval_every must divide steps, got steps={self.steps}, "
                       f"eval_every={self.eval_every}")

  def spec(self) -> dict[str, Any]:
    """The JSON-able identity of the workload (part of every run id)."""
    spec = {"name": self.name, "metric": self.metric, "mode": self.mode, "target": self.target,
            "steps": self.steps, "eval_every": self.eval_every, "batch_size": self.batch_size,
            "config": _jsonable(dict(self.config))}
    if self.precision != "float32":
      spec["precision"] = self.precision
    if self.streamed:
      spec["streamed"] = list(self.streamed)
    if self.test_every_eval:
      spec["test_every_eval"] = True
    if self.toy:
      spec["toy"] = True
    if self.variant_of:
      spec["variant_of"] = self.variant_of
    return spec

  def with_budget(self, **changes: Any) -> Workload:
    """A copy with some of ``steps``, ``eval_every``, ``batch_size``, ``target``, ``test_every_eval`` changed."""
    allowed = {"steps", "eval_every", "batch_size", "target", "eval_batch_size", "test_every_eval"}
    unknown = sorted(set(changes) - allowed)
    if unknown:
      raise ValueError(f"workload {self.name!r}: cannot override {unknown}; allowed: {sorted(allowed)}")
    return dataclasses.replace(self, **changes)

  def reached(self, value: float | None) -> bool:
    """Whether a validation value meets the target."""
    if value is None or not math.isfinite(value):
      return False
    return value >= self.target if self.mode == "max" else value <= self.target


def _jsonable(value: Any) -> Any:
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in sorted(value.items())}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, (str, int, float, bool)) or value is None:
    return value
  if isinstance(value, np.generic):
    return value.item()
  return repr(value)


# --------------------------------------------------------------------------- #
# The registry.
# --------------------------------------------------------------------------- #

WORKLOADS: Registry[Workload] = Registry("workload", where="register_workload",
                                         same=lambda old, new: old.spec() == new.spec())


def register_workload(workload: Workload, *, overwrite: bool = False) -> Workload:
  """Registers ``workload`` under its name; returns it (so it also works as a decorator's last step).

  Registering a workload with the same specification again is a no-op.

  Raises:
    TypeError: ``workload`` is not a ``Workload``.
    ValueError: the name is taken by another workload and ``overwrite`` is False.
  """
  if not isinstance(workload, Workload):
    raise TypeError(f"register_workload: expected a Workload, got {type(workload).__name__} {workload!r}")
  return WORKLOADS.register(workload.name, workload, overwrite=overwrite)


def list_workloads() -> list[str]:
  """The registered workload names, sorted."""
  return WORKLOADS.names()


def get_workload(name: str) -> Workload:
  """The workload registered as ``name``.

  Raises:
    ValueError: unknown name (the message lists the known ones).
  """
  return WORKLOADS.entry(name, "workload").obj


_PROBLEMS: dict[tuple[str, int], tuple[Callable[[], Problem], Problem]] = {}


def build(workload: Workload) -> Problem:
  """``workload.build()``, cached per process (the engine's compiled programs are keyed by the result).

  Budget changes (``with_budget``) keep the same build function, so they share
  the loaded data.
  """
  key = (workload.name, id(workload.build))
  if key not in _PROBLEMS:
    problem = workload.build()
    if not isinstance(problem, Problem):
      raise TypeError(f"workload {workload.name!r}: build() must return a Problem, got {type(problem).__name__}")
    _PROBLEMS[key] = (workload.build, problem)  # keeps build alive, so its id stays unique
  return _PROBLEMS[key][1]


# --------------------------------------------------------------------------- #
# Workloads on jdl datasets and models.
# --------------------------------------------------------------------------- #


def _build_dataset_problem(dataset: str, model: str, model_options: Mapping[str, Any], loss: str,
                           loss_options: Mapping[str, Any], metrics: str, num_outputs: int | None,
                           valid_percent: int = 10, min_valid: int = MIN_VALID) -> Problem:
  from jdl import data  # pylint: disable=g-import-not-at-top
  import jdl.losses  # pylint: disable=g-import-not-at-top
  import jdl.models  # pylint: disable=g-import-not-at-top

  from jdl.data import pipeline  # pylint: disable=g-import-not-at-top

  info = data.info(dataset)
  outputs = num_outputs if num_outputs is not None else (info.num_classes or 1)
  train_split, valid_split = splits(valid_percent)
  valid = data.load(dataset, valid_split)
  if pipeline.num_examples(valid) < min_valid:
    raise ValueError(f"workload on {dataset!r}: its validation split {valid_split!r} has "
                     f"{pipeline.num_examples(valid)} examples, fewer than min_valid={min_valid} (below "
                     f"{MIN_VALID}, one example moves the metric by more than 1%); give the workload a larger "
                     "valid_percent, or a smaller min_valid to accept it")
  return Problem(
      model=jdl.models.create(model, num_classes=outputs, **dict(model_options)),
      loss_fn=jdl.losses.get(loss, **dict(loss_options)),
      example_metrics=step_lib.EXAMPLE_METRICS[metrics],
      input_key=info.input_key,
      train=data.load(dataset, train_split),
      valid=valid,
      test=data.load(dataset, "test"),
  )


def dataset_workload(
    name: str,
    *,
    dataset: str,
    model: str,
    model_options: Mapping[str, Any] | None = None,
    loss: str = "sparse_categorical_crossentropy",
    loss_options: Mapping[str, Any] | None = None,
    metrics: str = "accuracy",
    num_outputs: int | None = None,
    metric: str = "accuracy",
    mode: str = "max",
    target: float,
    steps: int,
    eval_every: int,
    batch_size: int,
    eval_batch_size: int = 1000,
    description: str = "",
    vmap_runs: bool = True,
    precision: str = "float32",
    streamed: tuple[str, ...] = (),
    valid_percent: int = 10,
    min_valid: int = MIN_VALID,
    toy: bool = False,
    variant_of: str | None = None,
) -> Workload:
  """A workload on a ``jdl.data`` dataset and a ``jdl.models`` model.

  Training uses ``"train[:90%]"``, validation ``"train[90%:]"`` (other
  fractions with ``valid_percent``; at least ``MIN_VALID`` validation examples
  are required) and the test split is ``"test"``.

  Args:
    name: the workload's name.
    dataset: a ``jdl.data.list_datasets()`` name.
    model: a ``jdl.models.list_models()`` name.
    model_options: the model's options.
    loss: a ``jdl.losses`` name.
    loss_options: the loss's options.
    metrics: per-example metrics: ``"accuracy"``, ``"binary_accuracy"`` (one
      logit) or ``"none"`` (loss only).
    num_outputs: the model's output width (default: the dataset's number of
      classes, 1 for regression).
    metric, mode, target: the validation metric, its direction and target.
    steps, eval_every, batch_size, eval_batch_size: the budget.
    description: one line for reports.
    vmap_runs, precision, streamed, toy, variant_of: see ``Workload``.
    valid_percent: the share of ``train`` held out for validation.
    min_valid: the fewest validation examples accepted (checked when the
      data is loaded).

  Returns:
    the ``Workload`` (not registered; see ``register_workload``).
  """
  if metrics not in step_lib.EXAMPLE_METRICS:
    raise ValueError(f"dataset_workload {name!r}: metrics must be one of {sorted(step_lib.EXAMPLE_METRICS)}, "
                     f"got {metrics!r}")
  options = dict(model_options or {})
  loss_opts = dict(loss_options or {})
  train_split, valid_split = splits(valid_percent)
  config = {"dataset": dataset, "model": model, "model_options": options, "loss": loss, "loss_options": loss_opts,
            "metrics": metrics, "num_outputs": num_outputs, "splits": [train_split, valid_split, "test"]}
  build_fn = functools.partial(_build_dataset_problem, dataset, model, _Frozen(options), loss, _Frozen(loss_opts),
                               metrics, num_outputs, valid_percent, min_valid)
  return Workload(name=name, build=build_fn, metric=metric, mode=mode, target=target, steps=steps,
                  eval_every=eval_every, batch_size=batch_size, eval_batch_size=eval_batch_size, config=config,
                  description=description or f"{model} on {dataset}", vmap_runs=vmap_runs, precision=precision,
                  streamed=tuple(streamed), toy=toy, variant_of=variant_of)


class _Frozen(dict):
  """A dict usable inside a hashable ``functools.partial`` (workloads are cache keys)."""

  def __hash__(self) -> int:  # type: ignore[override]
    return hash(repr(sorted(self.items())))


# --------------------------------------------------------------------------- #
# 2-D test functions (DeepOBS' noisy ``two_d`` problems) and the noisy quadratic.
# --------------------------------------------------------------------------- #


def rosenbrock(u: Any, v: Any) -> Any:
  """``(1 - u)² + 100 (v - u²)²``; minimum 0 at (1, 1)."""
  return (1.0 - u) ** 2 + 100.0 * (v - u ** 2) ** 2


def beale(u: Any, v: Any) -> Any:
  """``(1.5 - u + uv)² + (2.25 - u + uv²)² + (2.625 - u + uv³)²``; minimum 0 at (3, 0.5)."""
  return (1.5 - u + u * v) ** 2 + (2.25 - u + u * v ** 2) ** 2 + (2.625 - u + u * v ** 3) ** 2


_QUAD_ANGLE = math.pi / 6
_QUAD_EIGS = (1.0, 20.0)


def ill_conditioned_quadratic(u: Any, v: Any) -> Any:
  """``½ (u, v) H (u, v)ᵀ`` with eigenvalues 1 and 20, axes rotated by 30°; minimum 0 at (0, 0)."""
  c, s = math.cos(_QUAD_ANGLE), math.sin(_QUAD_ANGLE)
  a = c * u + s * v
  b = -s * u + c * v
  return 0.5 * (_QUAD_EIGS[0] * a ** 2 + _QUAD_EIGS[1] * b ** 2)


class Surface2D(nn.Module):
  """A point ``(u, v)`` on a 2-D function, with DeepOBS' noise ``u·ξ₁ + v·ξ₂`` per example.

  The input is the noise ``ξ``, shape ``(batch, 2)``; the outputs are a dict
  with the per-example loss ``value`` and the position (``u``, ``v``,
  broadcast per example so that the train step's metrics trace the path).
  """

  fn: Callable[[Any, Any], Any]
  start: tuple[float, float]

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    del train
    u = self.param("u", lambda key: jnp.asarray(self.start[0], jnp.float32))
    v = self.param("v", lambda key: jnp.asarray(self.start[1], jnp.float32))
    value_B = self.fn(u, v) + x[:, 0] * u + x[:, 1] * v
    ones_B = jnp.ones_like(value_B)
    return {"value": value_B, "u": u * ones_B, "v": v * ones_B}


def _surface_loss(outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> jax.Array:
  del batch
  return outputs["value"]


def _surface_metrics(outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  del batch
  return {"u": outputs["u"], "v": outputs["v"]}


def _noise(seed: int, n: int, scale: float, dim: int) -> np.ndarray:
  return np.random.default_rng(seed).normal(0.0, scale, (n, dim)).astype(np.float32)


def _build_surface(fn: Callable[[Any, Any], Any], start: tuple[float, float], noise: float, n: int) -> Problem:
  return Problem(
      model=Surface2D(fn=fn, start=start),
      loss_fn=_surface_loss,
      example_metrics=_surface_metrics,
      input_key="inputs",
      train={"inputs": _noise(42, n, noise, 2)},
      valid={"inputs": _noise(44, n, noise, 2)},
      test={"inputs": np.zeros((n, 2), np.float32)},  # the noiseless function
  )


def surface_workload(name: str, fn: Callable[[Any, Any], Any], *, start: tuple[float, float],
                     bounds: tuple[tuple[float, float], tuple[float, float]], target: float, steps: int,
                     eval_every: int, batch_size: int = 128, noise: float = 1.0, n: int = 10_000,
                     minimum: tuple[float, float] | None = None, description: str = "") -> Workload:
  """A 2-D test-function workload (DeepOBS' stochastic ``two_d`` form).

  The loss of example ``ξ`` is ``fn(u, v) + u·ξ₁ + v·ξ₂`` with ``ξ ~ N(0,
  noise²)``: train and validation sets of ``n`` draws (seeds 42 and 44); the
  test set is ``ξ = 0``, the noiseless function. The metric is the loss
  (minimised); ``fn`` must work on jax and numpy arrays.
  """
  config = {"function": getattr(fn, "__name__", repr(fn)), "start": list(start), "noise": noise, "n": n}
  return Workload(
      name=name, build=functools.partial(_build_surface, fn, tuple(start), noise, n), metric="loss", mode="min",
      target=target, steps=steps, eval_every=eval_every, batch_size=batch_size, eval_batch_size=n, config=config,
      description=description or f"{getattr(fn, '__name__', 'function')} from {tuple(start)}",
      surface=Surface(fn=fn, bounds=bounds, start=tuple(start), minimum=minimum), toy=True)


class NoisyQuadratic(nn.Module):
  """``½ (θ - x)ᵀ H (θ - x)`` per example ``x``, with ``θ`` initialised to ones (DeepOBS' quadratic)."""

  hessian: Any  # a numpy (d, d) array, treated as a constant

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    hessian = jnp.asarray(self.hessian, jnp.float32)
    theta_D = self.param("theta", nn.initializers.ones, (hessian.shape[0],), jnp.float32)
    d_BxD = theta_D[None, :] - x
    return 0.5 * jnp.sum(d_BxD * (d_BxD @ hessian), axis=1)


def deep_hessian(dim: int = 100, seed: int = 42) -> np.ndarray:
  """A Hessian with a deep-learning-like spectrum: 90% of eigenvalues in [0, 1], 10% in [30, 60].

  As DeepOBS' ``quadratic_deep``: eigenvalues drawn uniformly in those
  intervals and a random rotation (here the Q of a Gaussian matrix's QR, with
  its sign fixed), both from a fixed seed.
  """
  rng = np.random.default_rng(seed)
  big = dim // 10
  eigenvalues = np.concatenate([rng.uniform(0.0, 1.0, dim - big), rng.uniform(30.0, 60.0, big)])
  q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
  q = q * np.sign(np.diag(r))[None, :]
  return (q.T @ np.diag(eigenvalues) @ q).astype(np.float32)


class _HashableArray:
  """A constant array as a hashable, comparable module field."""

  def __init__(self, array: np.ndarray):
    self.array = array
    self._key = hash(array.tobytes())

  def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
    return self.array if dtype is None else self.array.astype(dtype)

  def __hash__(self) -> int:
    return self._key

  def __eq__(self, other: object) -> bool:
    return isinstance(other, _HashableArray) and np.array_equal(self.array, other.array)


def _identity_loss(outputs: jax.Array, batch: Mapping[str, jax.Array]) -> jax.Array:
  del batch
  return outputs


def _build_quadratic(dim: int, n: int, noise: float) -> Problem:
  hessian = _HashableArray(deep_hessian(dim))
  return Problem(
      model=NoisyQuadratic(hessian=hessian),
      loss_fn=_identity_loss,
      example_metrics=step_lib.no_metrics,
      input_key="inputs",
      train={"inputs": _noise(42, n, noise, dim)},
      valid={"inputs": _noise(44, n, noise, dim)},
      test={"inputs": _noise(43, n, noise, dim)},
  )


# --------------------------------------------------------------------------- #
# Built-in workloads.
# --------------------------------------------------------------------------- #


def _register_builtins() -> None:
  reg = register_workload
  reg(surface_workload("rosenbrock", rosenbrock, start=(-0.5, 1.5), bounds=((-1.0, 1.5), (-0.3, 1.7)),
                       minimum=(1.0, 1.0), target=0.05, steps=400, eval_every=20,
                       description="noisy Rosenbrock (DeepOBS two_d_rosenbrock), start (-0.5, 1.5)"))
  reg(surface_workload("beale", beale, start=(-4.5, 4.5), bounds=((-5.0, 5.0), (-5.0, 5.0)),
                       minimum=(3.0, 0.5), target=0.5, steps=1000, eval_every=50,
                       description="noisy Beale (DeepOBS two_d_beale), start (-4.5, 4.5)"))
  reg(surface_workload("noisy_quadratic", ill_conditioned_quadratic, start=(-3.0, 2.0),
                       bounds=((-4.0, 4.0), (-3.0, 3.0)), minimum=(0.0, 0.0), target=0.01, steps=200,
                       eval_every=10, description="ill-conditioned 2-D quadratic (eigenvalues 1, 20) with "
                       "gradient noise"))
  reg(Workload(name="quadratic_deep", build=functools.partial(_build_quadratic, 100, 1000, 0.6), metric="loss",
               mode="min", target=87.0, steps=700, eval_every=35, batch_size=128,
               config={"dim": 100, "n": 1000, "noise": 0.6, "hessian": "deep_hessian(100, seed=42)"},
               description="DeepOBS quadratic_deep: 100-D noisy quadratic, deep-learning-like spectrum, "
               "batch 128, 100 epochs"))

  # Every workload evaluates at least 20 times per run, so that time to target is not quantised away.
  mnist1d = {"dataset": "mnist1d", "batch_size": 100, "eval_every": 100}
  reg(dataset_workload("mnist1d_logreg", model="logreg", target=0.32, steps=2000, **mnist1d,
                       description="logistic regression on MNIST-1D"))
  reg(dataset_workload("mnist1d_mlp", model="mlp", model_options={"hidden": (100, 100)}, target=0.6,
                       steps=3000, **{**mnist1d, "eval_every": 150}, description="MLP 40-100-100-10 (ReLU) on MNIST-1D"))
  reg(dataset_workload("mnist1d_cnn", model="cnn1d", target=0.80, steps=1000, **{**mnist1d, "eval_every": 50},
                       description="the MNIST-1D paper's 1-D CNN (3 convs, 25 channels)"))
  reg(dataset_workload("mnist1d_gru", model="gru", model_options={"hidden": 32}, target=0.85, steps=1000,
                       **{**mnist1d, "eval_every": 50}, description="GRU (32 units) over the 40 steps of MNIST-1D"))
  reg(dataset_workload("fmnist_mlp", dataset="fashion_mnist", model="mlp", model_options={"hidden": (512,)},
                       target=0.85, steps=840, eval_every=42, batch_size=128,
                       description="the course MLP 784-512-10 on Fashion-MNIST, 2 epochs"))
  reg(dataset_workload("fmnist_cnn", dataset="fashion_mnist", model="cnn_small",
                       model_options={"features": (8, 16), "kernel_size": 3}, target=0.8, steps=400,
                       eval_every=20, batch_size=64, vmap_runs=False,
                       description="2-conv CNN (8, 16 channels, 3x3, BatchNorm, dropout) on Fashion-MNIST, 400 steps"))
  # The scikit-learn tables are small: a quarter (diabetes: 30%) of train validates, at least MIN_VALID examples.
  reg(dataset_workload("digits_logreg", dataset="digits", model="logreg", target=0.95, steps=400, eval_every=20,
                       batch_size=32, valid_percent=25, description="logistic regression on scikit-learn's 8x8 digits"))
  reg(dataset_workload("breast_cancer_mlp", dataset="breast_cancer", model="mlp", model_options={"hidden": (16,)},
                       loss="binary_crossentropy", metrics="binary_accuracy", num_outputs=1, target=0.97,
                       steps=300, eval_every=15, batch_size=32, valid_percent=25,
                       description="binary classification (one logit, MLP 30-16-1) on breast cancer"))
  reg(dataset_workload("diabetes_mlp", dataset="diabetes", model="mlp", model_options={"hidden": (32,)},
                       loss="mse", metrics="none", num_outputs=1, metric="loss", mode="min", target=0.45,
                       steps=400, eval_every=20, batch_size=32, valid_percent=30,
                       description="regression (MLP 10-32-1, MSE on the standardised target) on diabetes"))
  # Held-out variants (AlgoPerf's idea): the architecture changed a little; the ranking should survive.
  reg(dataset_workload("mnist1d_mlp_deep", model="mlp", model_options={"hidden": (64, 64, 64)}, target=0.6,
                       steps=3000, **{**mnist1d, "eval_every": 150}, variant_of="mnist1d_mlp",
                       description="held-out variant of mnist1d_mlp: three hidden layers of 64"))
  reg(dataset_workload("mnist1d_lstm", model="lstm", model_options={"hidden": 32}, target=0.85, steps=1000,
                       **{**mnist1d, "eval_every": 50}, variant_of="mnist1d_gru",
                       description="held-out variant of mnist1d_gru: an LSTM (32 units)"))
  # A residual network on images (the `gpu` suite; about 15 s a run on a 2-core CPU).
  reg(dataset_workload("fmnist_resnet", dataset="fashion_mnist", model="resnet18",
                       model_options={"stage_sizes": (1, 1, 1, 1), "width": 8, "stem": "small"}, target=0.8,
                       steps=400, eval_every=20, batch_size=64, vmap_runs=False,
                       description="a small ResNet (4 stages of one basic block, 8-64 channels) on Fashion-MNIST"))
  # Larger budgets for an accelerator (the `gpu` suite).
  reg(dataset_workload("fmnist_cnn_large", dataset="fashion_mnist", model="cnn_small", target=0.91, steps=4220,
                       eval_every=211, batch_size=128, vmap_runs=False,
                       description="2-conv CNN (32, 64 channels, 5x5) on Fashion-MNIST, 10 epochs"))
  reg(dataset_workload("mnist_lenet5", dataset="mnist", model="lenet5", model_options={"padding": 2},
                       target=0.985, steps=4690, eval_every=134, batch_size=128, vmap_runs=False,
                       description="LeNet-5 on MNIST, 10 epochs"))
  reg(dataset_workload("mnist1d_gru_large", model="gru", model_options={"hidden": 128}, target=0.85, steps=12000,
                       dataset="mnist1d", batch_size=100, eval_every=600,
                       description="GRU (128 units) on MNIST-1D, 12000 steps"))


_register_builtins()
WORKLOADS.seal()
