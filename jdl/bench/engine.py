"""Trains many runs of one workload and optimizer as one compiled program, on jdl's engine.

The runs of a sweep are ``jdl train`` runs: the same initial state
(``create_train_state``), the same data order (``jdl.data.pipeline.batch_indices``),
the same train and eval steps (``make_train_step`` / ``make_eval_step``, with
the workload's precision and streamed metrics, evaluated at the optimizer's
``eval_params``) and the same programs (``jdl.train.programs``). What the
benchmark adds is the run axis: runs that share the optimizer's constant
hyperparameters (see ``search.trace_plan``) differ only in arrays (their
seeds, their traced hyperparameters, their data order), so their train states
are stacked along a leading axis and the programs are ``jax.vmap``-ed over it
and compiled once each:

* ``init(seed) -> state`` (one program per problem, shared by every optimizer);
* ``chunk(states, hparams, data, idx) -> (states, metrics)``: ``eval_every``
  steps of ``programs.chunk_program`` (``idx`` is ``(runs, steps, batch)``,
  each run its own data order);
* ``evaluate(states, blocks) -> sums``: ``programs.eval_program`` over the
  padded, masked evaluation batches.

With ``devices=n`` (``jdl bench run --devices``) the run axis is sharded
over ``n`` local devices (a ``("runs",)`` mesh): each device trains its share of
the runs, the data is replicated, and the program size is rounded up to a
multiple of ``n``. A run's numbers do not depend on the device it lands on.

Only the chunk calls are timed (``jax.block_until_ready`` after each), so
time-to-target excludes evaluation and compilation; compile time is reported
apart. With ``vmap=False`` the same per-run programs are compiled without the
run axis and the runs go one after another (the baseline of
``benchmarks/seeds_vmap.py``); they then equal ``jdl train`` bitwise on the CPU.

A run whose training or validation loss becomes NaN/Inf is marked ``diverged``
at the first such step (``programs.first_nonfinite``); the others continue.
Nothing raises for it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jdl.bench import search
from jdl.bench.workloads import Problem, Workload

STATUS_OK, STATUS_DIVERGED = "ok", "diverged"


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run: its optimizer hyperparameters and seed (initialisation, data order, dropout)."""

  hparams: Mapping[str, Any]
  seed: int


@dataclasses.dataclass
class RunResult:
  """What one run produced.

  Attributes:
    spec: the run.
    status: ``"ok"`` or ``"diverged"``.
    diverged_at_step: the first step with a non-finite loss, or None.
    curves: lists over evaluation points (step 0 included): ``step``,
      ``seconds`` (training wall time so far, evaluation and compilation excluded, per run:
      the program's time divided by its real runs), ``train_loss`` (mean over
      the steps since the previous point; None at step 0), ``valid_<metric>``
      and ``test_<metric>`` (None where not finite or not evaluated).
    trajectory: for 2-D workloads, ``{"u": [...], "v": [...]}`` at every step.
    summary: ``final_valid``, ``best_valid``, ``final_test`` (the test set is
      evaluated at the end of the run only, unless the workload's
      ``test_every_eval``), ``steps_to_target``, ``seconds_to_target`` (None
      when not reached).
    timing: ``compile_seconds`` (of this run's program; 0 when it was
      compiled before), ``train_seconds`` and ``eval_seconds`` of the whole
      program, ``runs_in_program`` (real runs), ``program_size`` (with padding),
      ``vmapped``.
  """

  spec: RunSpec
  status: str
  diverged_at_step: int | None
  curves: dict[str, list[Any]]
  trajectory: dict[str, list[float | None]] | None
  summary: dict[str, Any]
  timing: dict[str, Any]


# --------------------------------------------------------------------------- #
# Programs.
# --------------------------------------------------------------------------- #


_PROGRAMS: dict[Any, Any] = {}
_PLACED: dict[Any, Any] = {}


@dataclasses.dataclass(frozen=True)
class _Placement:
  """Where a program's runs live: one device (``mesh=None``) or sharded along ``("runs",)``."""

  mesh: Any = None

  @property
  def devices(self) -> int:
    return 1 if self.mesh is None else self.mesh.size

  @property
  def key(self) -> Any:
    return None if self.mesh is None else tuple(d.id for d in self.mesh.devices.flat)

  def runs(self) -> Any:
    """The sharding of arrays with a leading run axis (None: the default device)."""
    from jax.sharding import NamedSharding, PartitionSpec  # pylint: disable=g-import-not-at-top

    return None if self.mesh is None else NamedSharding(self.mesh, PartitionSpec("runs"))

  def replicated(self) -> Any:
    from jax.sharding import NamedSharding, PartitionSpec  # pylint: disable=g-import-not-at-top

    return None if self.mesh is None else NamedSharding(self.mesh, PartitionSpec())

  def put(self, tree: Any, sharding: Any) -> Any:
    return jax.device_put(tree) if sharding is None else jax.device_put(tree, sharding)


SINGLE = _Placement()


def placement(devices: int | None) -> _Placement:
  """The placement of ``devices`` local devices (None or 1: one device)."""
  available = jax.local_devices()
  if devices is None or devices == 1:
    return SINGLE
  if isinstance(devices, bool) or not isinstance(devices, int) or not 1 <= devices <= len(available):
    raise ValueError(f"devices: expected an int from 1 to the {len(available)} local device(s), got {devices!r}")
  from jax.sharding import Mesh  # pylint: disable=g-import-not-at-top

  return _Placement(Mesh(np.asarray(available[:devices]), ("runs",)))


def _placed(problem: Problem, what: str, eval_batch_size: int = 0, where: _Placement = SINGLE) -> Any:
  """Device copies of the training arrays, or the ``(num_batches, B, ...)`` padded, masked eval blocks, per problem
  (replicated over ``where``'s devices)."""
  from jdl.data import pipeline  # pylint: disable=g-import-not-at-top

  key = (id(problem), what, eval_batch_size, where.key)
  if key not in _PLACED:
    if what == "train":
      _PLACED[key] = (problem, where.put(dict(problem.train), where.replicated()))
    else:
      arrays = getattr(problem, what)
      # Evaluator's blocks: batches of min(eval_batch_size, n), the last one padded and masked.
      blocks = pipeline.padded_eval_batches(arrays, min(eval_batch_size, pipeline.num_examples(arrays)))
      _PLACED[key] = (problem, where.put(blocks, where.replicated()))
  return _PLACED[key][1]


def _compiled(key: Any, build: Any) -> tuple[Any, float, bool]:
  """``build()`` compiled once per ``key``; returns it, its compile seconds and whether it was cached."""
  if key in _PROGRAMS:
    return _PROGRAMS[key], 0.0, True
  start = time.perf_counter()
  _PROGRAMS[key] = build()
  return _PROGRAMS[key], time.perf_counter() - start, False


def _steps(workload: Workload, problem: Problem, tx: Any = None) -> tuple[Any, Any]:
  """The workload's train step (with ``tx``) and eval step: ``jdl train``'s, with the same options."""
  from jdl.train import step as step_lib  # pylint: disable=g-import-not-at-top

  common = {"apply_fn": problem.model.apply, "loss_fn": problem.loss_fn, "input_key": problem.input_key,
            "example_metrics": problem.example_metrics, "precision": workload.precision}
  train = step_lib.make_train_step(**common, tx=tx) if tx is not None else None
  return train, step_lib.make_eval_step(**common, metrics=workload.streamed)


def _init_program(workload: Workload, problem: Problem) -> tuple[tuple[Any, Any], float]:
  """``(seed -> TrainState, its output's shapes)``: the state without optimizer state.

  One program per problem and precision, shared by every optimizer:
  ``create_train_state`` with ``optax.identity()`` on the sample input ``jdl
  train`` uses, so the parameters, model state and rng of seed ``s`` are those
  any jdl run with seed ``s`` starts from (the optimizer state is added by
  ``start``).
  """
  import optax  # pylint: disable=g-import-not-at-top
  from jdl.train import precision as precision_lib  # pylint: disable=g-import-not-at-top
  from jdl.train import step as step_lib  # pylint: disable=g-import-not-at-top
  from jdl.train.state import create_train_state  # pylint: disable=g-import-not-at-top

  key = problem.input_key
  sample_input = step_lib.scale_images({key: np.asarray(problem.train[key][:1])}, key)[key]
  scaled = precision_lib.get_policy(workload.precision).needs_loss_scaling

  def init(seed):
    state = create_train_state(problem.model, optax.identity(), sample_input, seed=seed)
    return step_lib.with_loss_scale(state) if scaled else state

  seed = jax.ShapeDtypeStruct((), jnp.int32)
  prog, seconds, _ = _compiled(("init", id(problem), scaled),
                               lambda: (jax.jit(init).lower(seed).compile(), jax.eval_shape(init, seed)))
  return prog, seconds


def _lead(tree: Any, size: int, vmapped: bool, where: _Placement = SINGLE) -> Any:
  lead = (size,) if vmapped else ()
  sharding = where.runs()
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(lead + x.shape, x.dtype, sharding=sharding), tree)


def _eval_state(state: Any) -> Any:
  """The state an evaluation needs: the optimizer's evaluation parameters, no optimizer state.

  ``jdl.optim.eval_params`` is applied here, at the end of each chunk, so that
  the evaluation program does not depend on the optimizer and one serves
  every optimizer of a workload.
  """
  import jdl.optim  # pylint: disable=g-import-not-at-top
  from jdl.train.state import TrainState  # pylint: disable=g-import-not-at-top

  return TrainState(step=state.step, params=jdl.optim.eval_params(state.opt_state, state.params), opt_state=None,
                    model_state=state.model_state, rng=state.rng)


def _eval_program(workload: Workload, problem: Problem, what: str, size: int, vmapped: bool,
                  where: _Placement = SINGLE) -> tuple[Any, float]:
  """``(eval_states, blocks) -> sums`` over the ``what`` split (``"valid"`` or ``"test"``), shared by every optimizer."""
  from jdl.train import programs  # pylint: disable=g-import-not-at-top

  _, eval_step = _steps(workload, problem)
  run = programs.eval_program(eval_step)

  def build():
    (_, one), _ = _init_program(workload, problem)
    states = _lead(jax.eval_shape(_eval_state, one), size, vmapped, where)
    fn = jax.vmap(run, in_axes=(0, None)) if vmapped else run
    return jax.jit(fn).lower(states, _placed(problem, what, workload.eval_batch_size, where)).compile()

  prog, seconds, _ = _compiled(("eval", id(problem), what, workload.precision, workload.streamed, size,
                                workload.eval_batch_size, vmapped, where.key), build)
  return prog, seconds


def _train_programs(workload: Workload, problem: Problem, opt: search.BenchOptimizer, plan: search.TracePlan,
                    static: Mapping[str, Any], size: int, vmapped: bool,
                    where: _Placement = SINGLE) -> tuple[Any, Any, float]:
  """``start(base_states, hparams) -> (states, eval_states)`` (adds the optimizer state) and
  ``chunk(states, hparams, data, idx) -> (states, metrics, eval_states)``."""
  from jdl.train import programs  # pylint: disable=g-import-not-at-top

  length = workload.eval_every

  def tx_of(hp):
    return search.make_tx(opt, plan, static, hp, workload.steps)

  def start_one(base, hp):
    state = base.replace(opt_state=tx_of(hp).init(base.params))
    return state, _eval_state(state)

  def chunk_one(state, hp, data, idx_LxB):
    train_step, _ = _steps(workload, problem, tx_of(hp))
    state, metrics = programs.chunk_program(train_step, length)(state, data, idx_LxB, jnp.int32(0))
    return state, metrics, _eval_state(state)

  static_key = tuple(sorted((k, repr(v)) for k, v in static.items()))
  key = ("train", id(problem), workload.precision, opt.name, id(opt.factory), opt.schedule, plan, static_key, size,
         length, workload.steps, workload.batch_size, vmapped, where.key)

  def build():
    (_, one), _ = _init_program(workload, problem)
    base = _lead(one, size, vmapped, where)
    runs = where.runs()
    hp = {k: jax.ShapeDtypeStruct((size,) if vmapped else (), jnp.float32, sharding=runs)
          for k in plan.traced_names()}
    idx = jax.ShapeDtypeStruct(((size,) if vmapped else ()) + (length, workload.batch_size), jnp.int32,
                               sharding=runs)
    start_fn = jax.vmap(start_one) if vmapped else start_one
    chunk_fn = jax.vmap(chunk_one, in_axes=(0, 0, None, 0)) if vmapped else chunk_one
    out = {} if runs is None else {"out_shardings": runs}  # every output has the run axis first
    start_c = jax.jit(start_fn, **out).lower(base, hp).compile()
    states, _ = jax.eval_shape(start_fn, base, hp)
    states = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=runs), states)
    chunk_c = jax.jit(chunk_fn, donate_argnums=0, **out).lower(states, hp, _placed(problem, "train", where=where),
                                                        idx).compile()
    return start_c, chunk_c

  (start_c, chunk_c), seconds, _ = _compiled(key, build)
  return start_c, chunk_c, seconds


# --------------------------------------------------------------------------- #
# Training.
# --------------------------------------------------------------------------- #


def _finite_or_none(x: float) -> float | None:
  x = float(x)
  return x if math.isfinite(x) else None


def _per_run_means(sums: Mapping[str, Any], size: int, vmapped: bool) -> dict[str, np.ndarray]:
  """``{metric: [runs]}``: ``programs.eval_means`` of every run's (vmapped) sums."""
  from jdl.train import programs  # pylint: disable=g-import-not-at-top

  lead = (lambda x: np.asarray(x)) if vmapped else (lambda x: np.asarray(x)[None])
  sums = {k: v if k == "metrics" else lead(v) for k, v in sums.items()}
  out = programs.eval_means({k: v for k, v in sums.items() if k != "metrics"})  # every run at once
  if sums.get("metrics"):
    rows = [programs.eval_means({"count": 1.0, "metrics": jax.tree.map(lambda x, r=r: lead(x)[r],
                                                                       sums["metrics"])}) for r in range(size)]
    out.update({k: np.asarray([row[k] for row in rows], np.float64) for k in rows[0]})
  return out


def _group_static(plan: search.TracePlan, hp: Mapping[str, Any]) -> dict[str, Any]:
  names = plan.traced_names()
  return {k: v for k, v in hp.items() if k not in names}


def train_runs(workload: Workload, problem: Problem, optimizer: search.BenchOptimizer | str,
               runs: Sequence[RunSpec], *, vmap: bool = True, program_size: int | None = None,
               plan: search.TracePlan | None = None, devices: int | None = None) -> list[RunResult]:
  """Trains ``runs`` on ``workload``; returns one ``RunResult`` per run, in order.

  Runs are grouped by their constant (untraced) hyperparameters; each group is
  trained as programs of ``program_size`` runs (default: the group's size),
  padded by repeating its last run, so that differently sized groups can share
  one compiled program. With ``devices`` the runs of a program are sharded
  over that many local devices (vmapped only; the program size is rounded up
  to a multiple of it).

  Args:
    workload: the budget, target and metric.
    problem: ``workloads.build(workload)``.
    optimizer: a ``BenchOptimizer`` or a name.
    runs: the runs.
    vmap: train each group as one vmapped program (True) or run by run.
    program_size: runs per program (vmapped only).
    plan: which hyperparameters are traced (default: ``search.trace_plan``).
    devices: local devices to shard the run axis over (default: one).

  Returns:
    the results, in the order of ``runs``.
  """
  opt = search.get_optimizer(optimizer)
  where = placement(devices)
  if where.devices > 1 and not vmap:
    raise ValueError(f"devices: runs one after another (vmap=False) use one device, got devices={devices}")
  if not runs:
    return []
  for r in runs:
    if "learning_rate" not in r.hparams:
      raise ValueError(f"runs: every run needs a learning_rate, got hparams {dict(r.hparams)!r}")
  plan = plan or search.trace_plan(opt, runs[0].hparams)
  groups: dict[Any, list[int]] = {}
  for i, r in enumerate(runs):
    static = _group_static(plan, r.hparams)
    groups.setdefault(tuple(sorted((k, repr(v)) for k, v in static.items())), []).append(i)
  results: list[RunResult | None] = [None] * len(runs)
  for members in groups.values():
    group = [runs[i] for i in members]
    static = _group_static(plan, group[0].hparams)
    size = max(program_size or len(group), 1)
    if not vmap:
      size = 1
    step = size
    size = -(-size // where.devices) * where.devices  # whole shards; the extra places repeat the last run
    for start in range(0, len(group), step):
      part = group[start:start + step]
      out = _train_program(workload, problem, opt, plan, static, part, size, vmap, where)
      for j, res in enumerate(out):
        results[members[start + j]] = res
  return [r for r in results if r is not None]


def _train_program(workload: Workload, problem: Problem, opt: search.BenchOptimizer, plan: search.TracePlan,
                   static: Mapping[str, Any], runs: Sequence[RunSpec], size: int, vmapped: bool,
                   where: _Placement = SINGLE) -> list[RunResult]:
  """Trains up to ``size`` runs in one program (vmapped) or one run (not)."""
  from jdl.data import pipeline  # pylint: disable=g-import-not-at-top
  from jdl.train import programs  # pylint: disable=g-import-not-at-top

  real = len(runs)
  padded = list(runs) + [runs[-1]] * (size - real) if vmapped else list(runs)
  length, bs = workload.eval_every, workload.batch_size
  names = plan.traced_names()
  seeds = [int(r.seed) for r in padded]
  hp = {k: np.asarray([float(r.hparams[k]) for r in padded], np.float32) for k in names}
  start_c, chunk_c, compile_seconds = _train_programs(workload, problem, opt, plan, static, size, vmapped, where)
  (init_c, _), init_seconds = _init_program(workload, problem)
  valid_c, valid_compile_seconds = _eval_program(workload, problem, "valid", size, vmapped, where)
  test_c, test_compile_seconds = _eval_program(workload, problem, "test", size, vmapped, where)
  compile_seconds += init_seconds + valid_compile_seconds + test_compile_seconds
  data = _placed(problem, "train", where=where)
  valid = _placed(problem, "valid", workload.eval_batch_size, where)
  test = _placed(problem, "test", workload.eval_batch_size, where)
  n = pipeline.num_examples(problem.train)

  # Initial states: seed by seed (one small program per problem), stacked on the host.
  bases = jax.device_get([init_c(np.int32(s)) for s in seeds])
  if vmapped:
    base = jax.tree.map(lambda *xs: np.stack(xs), *bases)
  else:
    base, hp = bases[0], {k: v[0] for k, v in hp.items()}
  states, eval_states = start_c(where.put(base, where.runs()), where.put(hp, where.runs()))
  per_run = (lambda x: np.asarray(x)) if vmapped else (lambda x: np.asarray(x)[None])

  def evaluate(program, blocks, eval_states):
    return _per_run_means(jax.device_get(program(eval_states, blocks)), size, vmapped)

  def evaluate_test(eval_states):  # the test set is read at the end only, unless the workload asks for more
    return evaluate(test_c, test, eval_states)

  t0 = time.perf_counter()
  ev_valid = evaluate(valid_c, valid, eval_states)
  ev_test = evaluate_test(eval_states) if workload.test_every_eval else None
  eval_seconds = time.perf_counter() - t0
  metric_names = [k for k in ev_valid if not (workload.surface is not None and k in ("u", "v"))]
  curves: dict[str, list[list[Any]]] = {"step": [], "seconds": [], "train_loss": []}
  for k in metric_names:
    curves[f"valid_{k}"], curves[f"test_{k}"] = [], []
  traj: dict[str, list[list[float]]] = {"u": [], "v": []}
  diverged_at: list[int | None] = [None] * size

  def record(step: int, seconds: float, train_loss: list[float] | None) -> None:
    curves["step"].append([step] * size)
    curves["seconds"].append([seconds] * size)
    curves["train_loss"].append([None] * size if train_loss is None else train_loss)
    for k in metric_names:
      curves[f"valid_{k}"].append(list(ev_valid[k]))
      curves[f"test_{k}"].append([None] * size if ev_test is None else list(ev_test[k]))
    for r in range(size):
      if diverged_at[r] is None and not np.isfinite(ev_valid["loss"][r]):
        diverged_at[r] = step

  record(0, 0.0, None)
  train_seconds = 0.0
  # Every run's data order for its whole budget, computed once: (runs, steps, B).
  orders = {s: pipeline.batch_indices(s, 0, workload.steps, bs, n) for s in set(seeds)}
  order = np.stack([orders[s] for s in seeds])
  chunks = workload.steps // length
  for c in range(chunks):
    start = c * length
    idx = order[:, start:start + length]
    idx_dev = jax.block_until_ready(where.put(idx if vmapped else idx[0], where.runs()))
    t0 = time.perf_counter()
    states, metrics, eval_states = chunk_c(states, hp, data, idx_dev)
    jax.block_until_ready((states, eval_states))
    train_seconds += time.perf_counter() - t0
    metrics = {k: per_run(v) for k, v in jax.device_get(metrics).items()}
    if workload.surface is not None:
      traj["u"].append(np.asarray(metrics["u"], np.float64))
      traj["v"].append(np.asarray(metrics["v"], np.float64))
    for r in range(size):
      bad = programs.first_nonfinite(metrics["loss"][r])
      if diverged_at[r] is None and bad is not None:
        diverged_at[r] = start + bad + 1
    t0 = time.perf_counter()
    ev_valid = evaluate(valid_c, valid, eval_states)
    ev_test = evaluate_test(eval_states) if workload.test_every_eval else None
    for r in range(size):  # a validation loss that is not finite stops a run too
      if diverged_at[r] is None and not np.isfinite(ev_valid["loss"][r]):
        diverged_at[r] = start + length
    stop = c == chunks - 1 or all(d is not None for d in diverged_at[:real])
    if stop and ev_test is None:
      ev_test = evaluate_test(eval_states)
    eval_seconds += time.perf_counter() - t0
    record(start + length, train_seconds / real,
           [programs.train_means([{"loss": metrics["loss"][r]}])["loss"] for r in range(size)])
    if stop:
      break

  timing = {"compile_seconds": compile_seconds, "train_seconds": train_seconds,
            "eval_seconds": eval_seconds, "runs_in_program": real, "program_size": size, "vmapped": vmapped,
            "devices": where.devices}
  out = []
  for r in range(real):
    run_curves = {k: [_clean(row[r]) for row in rows] for k, rows in curves.items()}
    trajectory = None
    if workload.surface is not None:
      us = [_finite_or_none(x) for x in (np.concatenate([u[r] for u in traj["u"]]) if traj["u"] else [])]
      vs = [_finite_or_none(x) for x in (np.concatenate([v[r] for v in traj["v"]]) if traj["v"] else [])]
      us.append(_finite_or_none(ev_valid["u"][r]))
      vs.append(_finite_or_none(ev_valid["v"][r]))
      trajectory = {"u": us, "v": vs}
    status = STATUS_DIVERGED if diverged_at[r] is not None else STATUS_OK
    out.append(RunResult(spec=runs[r], status=status, diverged_at_step=diverged_at[r], curves=run_curves,
                         trajectory=trajectory, summary=summarize(workload, run_curves), timing=dict(timing)))
  return out


def _clean(x: Any) -> Any:
  if x is None:
    return None
  if isinstance(x, (int, np.integer)):
    return int(x)
  return _finite_or_none(x)


def summarize(workload: Workload, curves: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
  """Final and best validation/test values and time-to-target of one run's curves."""
  metric = workload.metric
  valid = list(curves.get(f"valid_{metric}", []))
  test = list(curves.get(f"test_{metric}", []))
  pick = max if workload.mode == "max" else min

  def best(values):
    finite = [v for v in values if v is not None]
    return pick(finite) if finite else None

  steps_to_target = seconds_to_target = None
  for i, v in enumerate(valid):
    if workload.reached(v):
      steps_to_target, seconds_to_target = curves["step"][i], curves["seconds"][i]
      break
  return {"final_valid": valid[-1] if valid else None, "best_valid": best(valid),
          "final_test": test[-1] if test else None,
          "steps_to_target": steps_to_target, "seconds_to_target": seconds_to_target}
