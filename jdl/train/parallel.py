"""Strategies: where the state and the data live, and how the pure step is compiled.

A strategy never changes what a train step computes, only where it runs. The
same ``train_step(state, batch) -> (state, metrics)`` is compiled by one of:

* ``single``: ``jax.jit`` on the default device, nothing sharded (the fastest
  path on one device, and the code path jdl has always had).
* ``data_parallel``: ``jax.jit`` with ``NamedSharding`` over a 1-D device mesh
  ``('data',)``: the batch is split over the devices, the state replicated;
  XLA inserts the all-reduce of the gradients. BatchNorm statistics are taken
  over the global batch, because the program is written for the global batch.
* ``pmap``: one program per device (``jax.shard_map`` over the same mesh, with
  ``jax.pmap``'s semantics: replicated state, a per-device batch shard,
  explicit ``lax.psum`` of gradients, metrics and BatchNorm statistics over the
  axis ``'data'``). In JAX 0.10 ``jax.pmap`` is itself implemented as
  ``jit(shard_map(..., check_vma=False))`` (jax/_src/pmap.py), but its lowered
  form cannot be compiled ahead of time (``pmap(f).lower(x).compile()(x)``
  fails), its state is a stacked per-device copy and its arguments are
  host-local; jdl writes the ``shard_map`` form directly so the program is
  compiled once, ahead of time, and the state is the same global array as
  under ``data_parallel`` (checkpoints are interchangeable).
* ``model_parallel``: ``jax.jit`` over a 2-D mesh ``('data', 'model')``: the
  batch is split over ``data``; large Dense/Conv kernels (and their optimizer
  moments) are split along their output-feature axis over ``model``; the rest
  is replicated.
* ``auto``: ``single`` on one device, ``data_parallel`` on more.

The fit loop and ``Evaluator`` only talk to a ``Strategy`` through
``place_*`` and ``compile_*``, so the device-resident epoch (one ``lax.scan``
over the steps) runs under every strategy: the training set is replicated on
every device and each device gathers its own slice of every global batch
inside the compiled program, so all strategies visit exactly the batches
``single`` visits.

Multi-process (``jax.distributed``): meshes span every process's devices;
arrays are built with ``jax.make_array_from_callback``, so each process only
transfers the rows its own devices hold.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jdl.data import pipeline
from jdl.registry import Registry
from jdl.train.programs import chunk_program, eval_program

DATA_AXIS = "data"
MODEL_AXIS = "model"
NAMES = ("auto", "single", "data_parallel", "pmap", "model_parallel")  # the built-in ones; names() has all
# Kernels with more elements than this are split over the model axis (64 KiB of float32).
DEFAULT_MIN_KERNEL_SIZE = 2**14

StepFn = Callable[..., Any]


def _bind_axis(fn: StepFn, axis_name: str, what: str) -> StepFn:
  """The step with ``axis_name`` bound: ``make_train_step``/``make_eval_step``'s steps, or a
  function taking an ``axis_name`` keyword."""
  if callable(getattr(fn, "replace", None)) and hasattr(fn, "config"):
    return fn.replace(axis_name=axis_name)
  try:
    params = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    params = {}
  if "axis_name" not in params:
    raise TypeError(f"{what}: the pmap strategy runs one copy of the step per device and needs the step to "
                    f"average across devices itself; expected a step built by jdl.train.make_train_step / "
                    f"make_eval_step, or a function accepting an axis_name keyword, got {fn!r}")
  return functools.partial(fn, axis_name=axis_name)


def _leaf_name(path: tuple[Any, ...]) -> str:
  if not path:
    return ""
  last = path[-1]
  for attr in ("key", "name", "idx"):
    if hasattr(last, attr):
      return str(getattr(last, attr))
  return str(last)


# --------------------------------------------------------------------------- #
# Strategies.
# --------------------------------------------------------------------------- #

class Strategy:
  """How the state and data are placed and the step compiled: the ``single`` strategy.

  Subclasses override the ``place_*`` and ``compile_*`` methods; the fit loop
  and ``Evaluator`` call nothing else. ``single`` is plain ``jax.jit`` with the
  state donated, data on the default device: exactly what a hand-written loop
  does, so it costs nothing on one device.

  Attributes:
    name: the strategy's name (``'single'``, ``'data_parallel'`` ...).
    axis_name: the collective axis the step must reduce over (``pmap`` only;
      None when the compiler does it).
  """

  name: str = "single"
  axis_name: str | None = None

  @property
  def num_devices(self) -> int:
    """Devices the program runs on (all processes together)."""
    return 1

  @property
  def data_parallel_size(self) -> int:
    """How many ways every batch is split."""
    return 1

  def describe(self) -> dict[str, Any]:
    """What the run summary records about the strategy."""
    return {"name": self.name, "num_devices": self.num_devices, "data_parallel_size": self.data_parallel_size}

  def __repr__(self) -> str:
    return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.describe().items())})"

  # Checks -------------------------------------------------------------------

  def check_batch_size(self, batch_size: int, what: str = "batch_size") -> None:
    """Raises unless ``batch_size`` splits evenly over the data-parallel devices."""
    size = self.data_parallel_size
    if isinstance(batch_size, (int, np.integer)) and batch_size >= 1 and batch_size % size:
      raise ValueError(f"{what}: {batch_size} is not divisible by the {size} devices the {self.name} strategy "
                       f"splits every batch over; use a multiple of {size} (e.g. "
                       f"{-(-batch_size // size) * size})")

  def eval_batch_size(self, batch_size: int) -> int:
    """Evaluation batches are padded and masked, so their size is rounded up to split evenly."""
    size = self.data_parallel_size
    return -(-batch_size // size) * size

  # Steps --------------------------------------------------------------------

  def bind_train_step(self, train_step: StepFn) -> StepFn:
    """The train step this strategy compiles (``pmap`` binds its axis name)."""
    return train_step

  def bind_eval_step(self, eval_step: StepFn) -> StepFn:
    return eval_step

  # Placement ----------------------------------------------------------------

  def state_shardings(self, state: Any) -> Any:
    """A tree of shardings like ``state`` (for checkpoint restore targets)."""
    device = jax.local_devices()[0]
    return jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(device), state)

  def place_state(self, state: Any) -> Any:
    """Puts ``state`` where the compiled programs expect it."""
    return state

  def place_data(self, arrays: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """The training set, resident on the device(s) for the whole run."""
    return jax.device_put(dict(arrays))

  def place_eval_blocks(self, blocks: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """``(num_batches, B, ...)`` evaluation blocks."""
    return jax.device_put(dict(blocks))

  def place_indices(self, idx_SxB: np.ndarray) -> jax.Array:
    """The batch indices of an epoch (``(steps, B)``), where the chunk program reads them."""
    return jax.device_put(idx_SxB)

  def index(self, value: int) -> Any:
    """A scalar program argument (the first step of a chunk)."""
    return jnp.int32(value)

  def batches(self, arrays: Mapping[str, np.ndarray], idx_SxB: np.ndarray) -> Iterator[dict[str, jax.Array]]:
    """Streaming: the epoch's batches, transferred two steps ahead of their use."""
    return pipeline.prefetch_to_device(pipeline.host_batches(arrays, idx_SxB))

  # Compilation --------------------------------------------------------------

  def compile_chunk(self, train_step: StepFn, state: Any, data: Any, idx_SxB: Any, length: int):
    """Compiles ``length`` train steps over device-resident data, the state donated."""
    program = chunk_program(train_step, length)
    return jax.jit(program, donate_argnums=0).lower(state, data, idx_SxB, self.index(0)).compile()

  def compile_step(self, train_step: StepFn, state: Any, batch: Any):
    """Compiles one train step on a streamed batch (``batch``: arrays or ``ShapeDtypeStruct``s)."""
    return jax.jit(train_step, donate_argnums=0).lower(state, batch).compile()

  def compile_eval(self, eval_step: StepFn, state: Any, blocks: Any):
    """Compiles the evaluation pass over ``(num_batches, B, ...)`` blocks."""
    return jax.jit(eval_program(eval_step)).lower(state, blocks).compile()


def _put(value: Any, sharding: jax.sharding.Sharding) -> jax.Array:
  """Places one array with ``sharding``, transferring only the shards this process holds."""
  if isinstance(value, jax.Array):
    if value.sharding == sharding:
      return value
    if not value.is_fully_addressable:
      return jax.device_put(value, sharding)
  if sharding.is_fully_addressable:
    return jax.device_put(value, sharding)
  host = np.asarray(value)
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


class MeshStrategy(Strategy):
  """``jax.jit`` with ``NamedSharding``s over a device mesh: ``data_parallel`` and ``model_parallel``.

  The batch is split along the mesh's ``'data'`` axis; the state is
  replicated, except for the leaves ``state_spec`` shards. The training set is
  replicated, and each device gathers its slice of every batch (the batch
  indices are constrained to the ``'data'`` axis, so no device gathers
  examples it does not train on).

  Args:
    mesh: the device mesh; its first axis is ``'data'``.
    name: the strategy's name.
  """

  def __init__(self, mesh: Mesh, name: str):
    if mesh.axis_names[0] != DATA_AXIS:
      raise ValueError(f"mesh: expected the first axis to be {DATA_AXIS!r}, got axes {mesh.axis_names}")
    self.mesh = mesh
    self.name = name
    self.replicated = NamedSharding(mesh, P())
    self.batch_sharding = NamedSharding(mesh, P(DATA_AXIS))
    self.blocks_sharding = NamedSharding(mesh, P(None, DATA_AXIS))
    self._indices: dict[int, jax.Array] = {}

  @property
  def num_devices(self) -> int:
    return self.mesh.size

  @property
  def data_parallel_size(self) -> int:
    return self.mesh.shape[DATA_AXIS]

  def describe(self) -> dict[str, Any]:
    return {**super().describe(), "mesh": dict(self.mesh.shape)}

  def state_spec(self, path: tuple[Any, ...], leaf: Any) -> P:
    """The partition spec of one state leaf: replicated here."""
    del path, leaf
    return P()

  def state_shardings(self, state: Any) -> Any:
    return jax.tree_util.tree_map_with_path(lambda path, leaf: NamedSharding(self.mesh, self.state_spec(path, leaf)),
                                            state)

  def place_state(self, state: Any) -> Any:
    return jax.tree.map(_put, state, self.state_shardings(state))

  def place_data(self, arrays: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    return {k: _put(v, self.replicated) for k, v in arrays.items()}

  def place_eval_blocks(self, blocks: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    return {k: _put(v, self.blocks_sharding) for k, v in blocks.items()}

  def place_indices(self, idx_SxB: np.ndarray) -> jax.Array:
    return _put(idx_SxB, self.replicated)

  def index(self, value: int) -> Any:
    if value not in self._indices:  # a handful per run (the chunk starts); placed once each
      self._indices[value] = _put(np.int32(value), self.replicated)
    return self._indices[value]

  def batches(self, arrays: Mapping[str, np.ndarray], idx_SxB: np.ndarray) -> Iterator[dict[str, jax.Array]]:
    batch_size = idx_SxB.shape[1]

    def placed() -> Iterator[dict[str, jax.Array]]:
      for idx_B in idx_SxB:
        if self.batch_sharding.is_fully_addressable:
          yield jax.device_put({k: np.asarray(v)[idx_B] for k, v in arrays.items()}, self.batch_sharding)
        else:  # each process reads only the rows of its own devices
          yield {k: jax.make_array_from_callback((batch_size,) + np.shape(v)[1:], self.batch_sharding,
                                                 lambda index, v=v: np.asarray(v)[idx_B[index[0]]])
                 for k, v in arrays.items()}

    queue: list[dict[str, jax.Array]] = []
    for batch in placed():  # transfers are asynchronous: keep two in flight
      queue.append(batch)
      if len(queue) > 2:
        yield queue.pop(0)
    yield from queue

  def compile_chunk(self, train_step: StepFn, state: Any, data: Any, idx_SxB: Any, length: int):
    state_sh = self.state_shardings(state)
    data_sh = jax.tree.map(lambda _: self.replicated, data)
    program = chunk_program(train_step, length,
                            lambda idx_B: jax.lax.with_sharding_constraint(idx_B, self.batch_sharding))
    jitted = jax.jit(program, in_shardings=(state_sh, data_sh, self.replicated, self.replicated),
                     out_shardings=(state_sh, self.replicated), donate_argnums=0)
    return jitted.lower(state, data, idx_SxB, self.index(0)).compile()

  def compile_step(self, train_step: StepFn, state: Any, batch: Any):
    state_sh = self.state_shardings(state)
    batch_sh = jax.tree.map(lambda _: self.batch_sharding, batch)
    jitted = jax.jit(train_step, in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, self.replicated),
                     donate_argnums=0)
    return jitted.lower(state, batch).compile()

  def compile_eval(self, eval_step: StepFn, state: Any, blocks: Any):
    state_sh = self.state_shardings(state)
    blocks_sh = jax.tree.map(lambda _: self.blocks_sharding, blocks)
    jitted = jax.jit(eval_program(eval_step), in_shardings=(state_sh, blocks_sh), out_shardings=self.replicated)
    return jitted.lower(state, blocks).compile()


class ModelParallelStrategy(MeshStrategy):
  """A ``('data', 'model')`` mesh: batch over ``data``, large kernels split over ``model``.

  A state leaf is split along its last (output-feature) axis over ``model``
  when it is a ``kernel`` (a Dense or Conv weight, or an optimizer moment of
  one: they share the parameter's path) with at least 2 dimensions, more than
  ``min_kernel_size`` elements, and an output width divisible by the model
  axis size. Everything else is replicated. XLA inserts the collectives the
  split matmuls need; the result is the single-device one.

  Args:
    mesh: a 2-D mesh with axes ``('data', 'model')``.
    min_kernel_size: kernels with more elements than this are split.
  """

  def __init__(self, mesh: Mesh, min_kernel_size: int = DEFAULT_MIN_KERNEL_SIZE):
    if mesh.axis_names != (DATA_AXIS, MODEL_AXIS):
      raise ValueError(f"mesh: expected axes {(DATA_AXIS, MODEL_AXIS)}, got {mesh.axis_names}")
    super().__init__(mesh, "model_parallel")
    self.min_kernel_size = min_kernel_size

  @property
  def model_parallel_size(self) -> int:
    return self.mesh.shape[MODEL_AXIS]

  def describe(self) -> dict[str, Any]:
    return {**super().describe(), "min_kernel_size": self.min_kernel_size}

  def state_spec(self, path: tuple[Any, ...], leaf: Any) -> P:
    shape = np.shape(leaf)
    if (_leaf_name(path) == "kernel" and len(shape) >= 2 and int(np.prod(shape)) > self.min_kernel_size
        and shape[-1] % self.model_parallel_size == 0):
      return P(*([None] * (len(shape) - 1)), MODEL_AXIS)
    return P()

  def sharded_paths(self, state: Any) -> list[str]:
    """The state leaves split over the model axis, as ``jax.tree_util.keystr`` paths."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
      if self.state_spec(path, leaf) != P():
        out.append(jax.tree_util.keystr(path))
    return out


class PmapStrategy(MeshStrategy):
  """One program per device with explicit collectives (``jax.pmap``'s semantics).

  The step runs on each device's shard of the batch and reduces over the axis
  ``'data'`` itself (``make_train_step(axis_name=...)``: psum of gradients,
  metrics and loss sums; BatchNorm statistics averaged over the axis). The
  epoch's ``lax.scan`` runs inside the per-device program: every device holds
  the training set and gathers its own slice of each global batch, so one
  compiled program runs a whole chunk of steps with no host round trip.
  Dropout masks differ from ``single``'s (each device draws its own, from the
  step's key folded with the device index); everything else is equal.
  """

  axis_name = DATA_AXIS

  def __init__(self, mesh: Mesh):
    if mesh.axis_names != (DATA_AXIS,):
      raise ValueError(f"mesh: expected the single axis {DATA_AXIS!r}, got axes {mesh.axis_names}")
    super().__init__(mesh, "pmap")

  def bind_train_step(self, train_step: StepFn) -> StepFn:
    return _bind_axis(train_step, DATA_AXIS, "train_step")

  def bind_eval_step(self, eval_step: StepFn) -> StepFn:
    return _bind_axis(eval_step, DATA_AXIS, "eval_step")

  def _per_device(self, fn, in_specs, out_specs):
    return jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)

  def compile_chunk(self, train_step: StepFn, state: Any, data: Any, idx_SxB: Any, length: int):
    local = idx_SxB.shape[1] // self.data_parallel_size

    def indices(idx_B):
      return jax.lax.dynamic_slice_in_dim(idx_B, jax.lax.axis_index(DATA_AXIS) * local, local)

    program = self._per_device(chunk_program(train_step, length, indices),
                               in_specs=(P(), P(), P(), P()), out_specs=(P(), P()))
    state_sh = self.state_shardings(state)
    data_sh = jax.tree.map(lambda _: self.replicated, data)
    jitted = jax.jit(program, in_shardings=(state_sh, data_sh, self.replicated, self.replicated),
                     out_shardings=(state_sh, self.replicated), donate_argnums=0)
    return jitted.lower(state, data, idx_SxB, self.index(0)).compile()

  def compile_step(self, train_step: StepFn, state: Any, batch: Any):
    program = self._per_device(train_step, in_specs=(P(), P(DATA_AXIS)), out_specs=(P(), P()))
    state_sh = self.state_shardings(state)
    batch_sh = jax.tree.map(lambda _: self.batch_sharding, batch)
    jitted = jax.jit(program, in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, self.replicated),
                     donate_argnums=0)
    return jitted.lower(state, batch).compile()

  def compile_eval(self, eval_step: StepFn, state: Any, blocks: Any):
    program = self._per_device(eval_program(eval_step), in_specs=(P(), P(None, DATA_AXIS)), out_specs=P())
    state_sh = self.state_shardings(state)
    blocks_sh = jax.tree.map(lambda _: self.blocks_sharding, blocks)
    jitted = jax.jit(program, in_shardings=(state_sh, blocks_sh), out_shardings=self.replicated)
    return jitted.lower(state, blocks).compile()


# --------------------------------------------------------------------------- #
# Construction.
# --------------------------------------------------------------------------- #

def _mesh(shape: tuple[int, ...], names: tuple[str, ...], devices: list[Any]) -> Mesh:
  # jax.devices() is ordered by process, so trailing axes stay within a process (fast links).
  return Mesh(np.asarray(devices, dtype=object).reshape(shape), names, axis_types=(AxisType.Auto,) * len(names))


def _single(devices: list[Any]) -> Strategy:
  del devices
  return Strategy()


def _data_parallel(devices: list[Any]) -> Strategy:
  return MeshStrategy(_mesh((len(devices),), (DATA_AXIS,), devices), "data_parallel")


def _pmap(devices: list[Any]) -> Strategy:
  return PmapStrategy(_mesh((len(devices),), (DATA_AXIS,), devices))


def _model_parallel(devices: list[Any], *, model_axis_size: int = 2,
                    min_kernel_size: int = DEFAULT_MIN_KERNEL_SIZE) -> Strategy:
  if isinstance(model_axis_size, bool) or not isinstance(model_axis_size, (int, np.integer)) or model_axis_size < 1:
    raise ValueError(f"model_axis_size: expected a positive integer, got {model_axis_size!r}")
  if len(devices) % model_axis_size:
    raise ValueError(f"model_axis_size: {model_axis_size} does not divide the {len(devices)} devices; "
                     f"expected a divisor of {len(devices)}")
  if isinstance(min_kernel_size, bool) or not isinstance(min_kernel_size, (int, np.integer)) or min_kernel_size < 0:
    raise ValueError(f"min_kernel_size: expected a non-negative integer, got {min_kernel_size!r}")
  mesh = _mesh((len(devices) // model_axis_size, model_axis_size), (DATA_AXIS, MODEL_AXIS), devices)
  return ModelParallelStrategy(mesh, int(min_kernel_size))


def _check_factory(name: str, factory: Any, meta: Any) -> None:
  del meta
  if not callable(factory):
    raise TypeError(f"register({name!r}): expected a factory (devices) -> Strategy, got {factory!r}")
  if name == "auto":
    raise ValueError("register: 'auto' is not a strategy but the choice between single and data_parallel")


STRATEGIES: Registry[Callable[..., Strategy]] = Registry("strategy", check=_check_factory, plural="strategies")
STRATEGIES.register("single", _single)
STRATEGIES.register("data_parallel", _data_parallel)
STRATEGIES.register("pmap", _pmap)
STRATEGIES.register("model_parallel", _model_parallel)
STRATEGIES.seal()


def register(name: str, factory: Callable[..., Strategy] | None = None, *, overwrite: bool = False) -> Any:
  """Registers a strategy factory ``factory(devices) -> Strategy`` under ``name`` (``config.strategy``).

  A strategy subclasses :class:`Strategy` (or :class:`MeshStrategy`) and
  overrides how the state and data are placed and the step compiled. Omitted,
  ``factory`` makes ``register`` a decorator. The factory receives the devices
  (``jax.devices()`` by default); ``model_axis_size`` and ``min_kernel_size``
  are passed to factories that accept them.
  """
  return STRATEGIES.register(name, overwrite=overwrite) if factory is None else STRATEGIES.register(
      name, factory, overwrite=overwrite)


def names() -> list[str]:
  """The strategy names ``config.strategy`` takes: ``auto`` and the registered ones."""
  return ["auto", *STRATEGIES.names()]


def create(
    name: str = "auto",
    *,
    devices: list[Any] | None = None,
    model_axis_size: int = 2,
    min_kernel_size: int = DEFAULT_MIN_KERNEL_SIZE,
) -> Strategy:
  """Builds a strategy by name.

  Args:
    name: ``'auto'`` (``single`` on one device, ``data_parallel`` on more),
      ``'single'``, ``'data_parallel'``, ``'pmap'``, ``'model_parallel'``, or
      a name registered with :func:`register`.
    devices: the devices to use (default: ``jax.devices()``, every process's).
    model_axis_size: ``model_parallel`` only: devices each kernel is split
      over; must divide the device count.
    min_kernel_size: ``model_parallel`` only: kernels with more elements are split.

  Returns:
    The ``Strategy``.
  """
  if not isinstance(name, str):
    raise TypeError(f"strategy: expected one of {', '.join(names())}, got {name!r} ({type(name).__name__})")
  if name != "auto" and name not in STRATEGIES:
    raise ValueError(f"strategy: expected one of {', '.join(names())}, got {name!r}")
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("devices: expected at least one device, got none")
  if name == "auto":
    name = "single" if len(devices) == 1 else "data_parallel"
  factory = STRATEGIES[name]
  options = {"model_axis_size": model_axis_size, "min_kernel_size": min_kernel_size}
  accepted = inspect.signature(factory).parameters
  strategy = factory(devices, **{k: v for k, v in options.items() if k in accepted})
  if not isinstance(strategy, Strategy):
    raise TypeError(f"strategy {name!r}: its factory returned {type(strategy).__name__}, not a Strategy")
  return strategy


def get(strategy: Strategy | str | None) -> Strategy:
  """``strategy`` itself, ``create(strategy)`` for a name, or ``single`` for None."""
  if strategy is None:
    return Strategy()
  if isinstance(strategy, Strategy):
    return strategy
  return create(strategy)


def from_config(config: Any) -> Strategy:
  """The strategy a run config names (``config.strategy``, ``config.model_parallel``)."""
  mp = config.get("model_parallel") or {}
  return create(config.strategy, model_axis_size=mp.get("axis_size", 2),
                min_kernel_size=mp.get("min_kernel_size", DEFAULT_MIN_KERNEL_SIZE))
