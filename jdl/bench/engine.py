"""Trains many runs of one workload and optimizer as one compiled program.

Runs that share the optimizer's constant hyperparameters (see
``search.trace_plan``) differ only in arrays: their seeds, their traced
hyperparameters (the learning rate at least) and their data order. They are
trained together: the train states are stacked along a leading run axis and
three programs are ``jax.vmap``-ed over it and compiled once each:

* ``init(seeds, hparams) -> states``;
* ``chunk(states, hparams, data, indices) -> (states, metrics)``: ``eval_every``
  steps as one ``lax.scan`` over batch indices (``indices`` is
  ``(runs, steps, batch)``, each run its own shuffling);
* ``evaluate(states, batch) -> sums`` of one padded, masked eval batch (summed
  over the validation and test sets' batches).

Only the chunk calls are timed (``jax.block_until_ready`` after each), so
time-to-target excludes evaluation and compilation; compile time is reported
apart. With ``vmap=False`` the same per-run programs are compiled without the
run axis and the runs go one after another (the baseline of
``benchmarks/seeds_vmap.py``).

A run whose training loss or validation loss becomes NaN/Inf is marked
``diverged`` at that step; the others continue. Nothing raises for it.
"""

from __future__ import annotations

import dataclasses
import functools
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
      ``seconds`` (training wall time so far, evaluation excluded, per run:
      the program's time divided by its real runs), ``train_loss`` (mean over
      the steps since the previous point; None at step 0), ``valid_<metric>``
      and ``test_<metric>`` (None where not finite).
    trajectory: for 2-D workloads, ``{"u": [...], "v": [...]}`` at every step.
    summary: ``final_valid``, ``best_valid``, ``final_test``, ``best_test``,
      ``steps_to_target``, ``seconds_to_target`` (None when not reached).
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
# Data order.
# --------------------------------------------------------------------------- #


@functools.lru_cache(maxsize=64)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)


def batch_indices(seed: int, start: int, length: int, batch_size: int, n: int) -> np.ndarray:
  """Example indices of steps ``start .. start+length-1``: ``(length, batch_size)`` int32.

  Epoch ``e`` visits a permutation drawn from ``(seed, e)``; its last partial
  batch is dropped. Step ``t`` is batch ``t mod (n // batch_size)`` of epoch
  ``t div (n // batch_size)``, so any chunking of the steps gives the same order.
  """
  per_epoch = n // batch_size
  if per_epoch < 1:
    raise ValueError(f"batch_size: {batch_size} is larger than the {n} training examples")
  first, last = start // per_epoch, (start + length - 1) // per_epoch
  order = np.concatenate([_permutation(seed, e, n)[:per_epoch * batch_size] for e in range(first, last + 1)])
  offset = (start - first * per_epoch) * batch_size
  return order[offset:offset + length * batch_size].reshape(length, batch_size)


# --------------------------------------------------------------------------- #
# Programs.
# --------------------------------------------------------------------------- #


_PROGRAMS: dict[Any, Any] = {}
_PLACED: dict[Any, Any] = {}


def clear_caches() -> None:
  """Forgets compiled programs and device copies of data (frees memory)."""
  _PROGRAMS.clear()
  _PLACED.clear()


def eval_block_size(problem: Problem, eval_batch_size: int) -> int:
  """The evaluation batch: ``eval_batch_size``, or less when both eval sets are smaller."""
  from jdl.data import pipeline  # pylint: disable=g-import-not-at-top

  return min(eval_batch_size, max(pipeline.num_examples(problem.valid), pipeline.num_examples(problem.test)))


def _placed(problem: Problem, what: str, eval_batch_size: int = 0) -> Any:
  """Device copies of the training arrays, or a list of padded, masked eval batches, kept per problem."""
  from jdl.data import pipeline  # pylint: disable=g-import-not-at-top

  key = (id(problem), what, eval_batch_size)
  if key not in _PLACED:
    if what == "train":
      _PLACED[key] = (problem, jax.device_put(dict(problem.train)))
    else:
      blocks = pipeline.padded_eval_batches(getattr(problem, what), eval_block_size(problem, eval_batch_size))
      num = next(iter(blocks.values())).shape[0]
      _PLACED[key] = (problem, [jax.device_put({k: v[i] for k, v in blocks.items()}) for i in range(num)])
  return _PLACED[key][1]


def _compiled(key: Any, build: Any) -> tuple[Any, float, bool]:
  """``build()`` compiled once per ``key``; returns it, its compile seconds and whether it was cached."""
  if key in _PROGRAMS:
    return _PROGRAMS[key], 0.0, True
  start = time.perf_counter()
  _PROGRAMS[key] = build()
  return _PROGRAMS[key], time.perf_counter() - start, False


def _init_program(problem: Problem) -> tuple[tuple[Any, Any], float]:
  """``(seed -> TrainState, its output's shapes)``: the state without optimizer state.

  One program per problem, shared by every optimizer.

  ``create_train_state`` with ``optax.identity()``: the parameters, model
  state and rng of seed ``s`` are those any jdl run with seed ``s`` starts from.
  """
  import optax  # pylint: disable=g-import-not-at-top
  from jdl.train.state import create_train_state  # pylint: disable=g-import-not-at-top

  sample_input = np.asarray(problem.train[problem.input_key][:1])

  def init(seed):
    return create_train_state(problem.model, optax.identity(), sample_input, seed=seed)

  seed = jax.ShapeDtypeStruct((), jnp.int32)
  prog, seconds, _ = _compiled(("init", id(problem)),
                               lambda: (jax.jit(init).lower(seed).compile(), jax.eval_shape(init, seed)))
  return prog, seconds


def _eval_program(problem: Problem, size: int, eval_batch_size: int, vmapped: bool) -> tuple[Any, float]:
  """``(params, model_state, batch) -> sums`` (one per problem and program size, shared by every optimizer)."""
  from jdl.train.state import TrainState  # pylint: disable=g-import-not-at-top
  from jdl.train.step import make_eval_step  # pylint: disable=g-import-not-at-top

  eval_fn = make_eval_step(apply_fn=problem.model.apply, loss_fn=problem.loss_fn, input_key=problem.input_key,
                           example_metrics=problem.example_metrics)

  def evaluate_one(params, model_state, batch):
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=None, model_state=model_state,
                       rng=jnp.zeros((2,), jnp.uint32))
    return eval_fn(state, batch)

  def build():
    (_, one), _ = _init_program(problem)
    lead = (size,) if vmapped else ()
    params, model_state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(lead + x.shape, x.dtype),
                                       (one.params, one.model_state))
    fn = jax.vmap(evaluate_one, in_axes=(0, 0, None)) if vmapped else evaluate_one
    block = _placed(problem, "valid", eval_batch_size)[0]
    return jax.jit(fn).lower(params, model_state, block).compile()

  prog, seconds, _ = _compiled(("eval", id(problem), size, eval_batch_size, vmapped), build)
  return prog, seconds


def _train_programs(problem: Problem, opt: search.BenchOptimizer, plan: search.TracePlan, static: Mapping[str, Any],
                    size: int, length: int, batch_size: int, vmapped: bool) -> tuple[Any, Any, float]:
  """``start(base_states, hparams) -> states`` (adds the optimizer state) and
  ``chunk(states, hparams, data, indices) -> (states, metrics, (eval params, model state))``."""
  import jdl.optim  # pylint: disable=g-import-not-at-top
  from jdl.train.step import make_train_step  # pylint: disable=g-import-not-at-top

  model = problem.model

  def tx_of(hp):
    return search.make_tx(opt, plan, static, hp)

  def start_one(base, hp):
    return base.replace(opt_state=tx_of(hp).init(base.params))

  def chunk_one(state, hp, data, idx_LxB):
    step = make_train_step(apply_fn=model.apply, loss_fn=problem.loss_fn, tx=tx_of(hp),
                           input_key=problem.input_key, example_metrics=problem.example_metrics)

    def body(state, idx_B):
      return step(state, {k: jnp.take(v, idx_B, axis=0) for k, v in data.items()})

    state, metrics = jax.lax.scan(body, state, idx_LxB)
    return state, metrics, (jdl.optim.eval_params(state.opt_state, state.params), state.model_state)

  static_key = tuple(sorted((k, repr(v)) for k, v in static.items()))
  key = ("train", id(problem), opt.name, id(opt.factory), plan, static_key, size, length, batch_size, vmapped)

  def build():
    (_, one), _ = _init_program(problem)
    lead = (size,) if vmapped else ()
    base = jax.tree.map(lambda x: jax.ShapeDtypeStruct(lead + x.shape, x.dtype), one)
    hp = {k: jax.ShapeDtypeStruct(lead, jnp.float32) for k in plan.traced_names()}
    idx = jax.ShapeDtypeStruct(lead + (length, batch_size), jnp.int32)
    start_fn = jax.vmap(start_one) if vmapped else start_one
    chunk_fn = jax.vmap(chunk_one, in_axes=(0, 0, None, 0)) if vmapped else chunk_one
    start_c = jax.jit(start_fn).lower(base, hp).compile()
    states = jax.eval_shape(start_fn, base, hp)
    chunk_c = jax.jit(chunk_fn, donate_argnums=0).lower(states, hp, _placed(problem, "train"), idx).compile()
    return start_c, chunk_c

  (start_c, chunk_c), seconds, _ = _compiled(key, build)
  return start_c, chunk_c, seconds


# --------------------------------------------------------------------------- #
# Training.
# --------------------------------------------------------------------------- #


def _finite_or_none(x: float) -> float | None:
  x = float(x)
  return x if math.isfinite(x) else None


def _means(sums: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  count = np.maximum(np.asarray(sums["count"], np.float64), 1.0)
  return {k: np.asarray(v, np.float64) / count for k, v in sums.items() if k != "count"}


def _group_static(opt: search.BenchOptimizer, plan: search.TracePlan, hp: Mapping[str, Any]) -> dict[str, Any]:
  names = plan.traced_names()
  return {k: v for k, v in hp.items() if k not in names}


def train_runs(workload: Workload, problem: Problem, optimizer: search.BenchOptimizer | str,
               runs: Sequence[RunSpec], *, vmap: bool = True, program_size: int | None = None,
               plan: search.TracePlan | None = None) -> list[RunResult]:
  """Trains ``runs`` on ``workload``; returns one ``RunResult`` per run, in order.

  Runs are grouped by their constant (untraced) hyperparameters; each group is
  trained as programs of ``program_size`` runs (default: the group's size),
  padded by repeating its last run, so that differently sized groups can share
  one compiled program.

  Args:
    workload: the budget, target and metric.
    problem: ``workloads.build(workload)``.
    optimizer: a ``BenchOptimizer`` or a name.
    runs: the runs.
    vmap: train each group as one vmapped program (True) or run by run.
    program_size: runs per program (vmapped only).
    plan: which hyperparameters are traced (default: ``search.trace_plan``).

  Returns:
    the results, in the order of ``runs``.
  """
  opt = search.get_optimizer(optimizer)
  if not runs:
    return []
  for r in runs:
    if "learning_rate" not in r.hparams:
      raise ValueError(f"runs: every run needs a learning_rate, got hparams {dict(r.hparams)!r}")
  plan = plan or search.trace_plan(opt, runs[0].hparams)
  groups: dict[Any, list[int]] = {}
  for i, r in enumerate(runs):
    static = _group_static(opt, plan, r.hparams)
    groups.setdefault(tuple(sorted((k, repr(v)) for k, v in static.items())), []).append(i)
  results: list[RunResult | None] = [None] * len(runs)
  for members in groups.values():
    group = [runs[i] for i in members]
    static = _group_static(opt, plan, group[0].hparams)
    size = max(program_size or len(group), 1)
    if not vmap:
      size = 1
    for start in range(0, len(group), size):
      part = group[start:start + size]
      out = _train_program(workload, problem, opt, plan, static, part, size, vmap)
      for j, res in enumerate(out):
        results[members[start + j]] = res
  return [r for r in results if r is not None]


def _train_program(workload: Workload, problem: Problem, opt: search.BenchOptimizer, plan: search.TracePlan,
                   static: Mapping[str, Any], runs: Sequence[RunSpec], size: int, vmapped: bool) -> list[RunResult]:
  """Trains up to ``size`` runs in one program (vmapped) or one run (not)."""
  real = len(runs)
  padded = list(runs) + [runs[-1]] * (size - real) if vmapped else list(runs)
  length, bs = workload.eval_every, workload.batch_size
  names = plan.traced_names()
  seeds = np.asarray([r.seed for r in padded], np.int32)
  hp = {k: np.asarray([float(r.hparams[k]) for r in padded], np.float32) for k in names}
  start_c, chunk_c, compile_seconds = _train_programs(problem, opt, plan, static, size, length, bs, vmapped)
  (init_c, _), init_seconds = _init_program(problem)
  eval_c, eval_compile_seconds = _eval_program(problem, size, workload.eval_batch_size, vmapped)
  compile_seconds += init_seconds + eval_compile_seconds
  data = _placed(problem, "train")
  valid = _placed(problem, "valid", workload.eval_batch_size)
  test = _placed(problem, "test", workload.eval_batch_size)
  n = next(iter(problem.train.values())).shape[0]

  # Initial states: seed by seed (one small program per problem), stacked on the host.
  bases = jax.device_get([init_c(np.int32(s)) for s in seeds])
  if vmapped:
    base = jax.tree.map(lambda *xs: np.stack(xs), *bases)
  else:
    base, seeds, hp = bases[0], seeds[0], {k: v[0] for k, v in hp.items()}
  states = start_c(base, hp)
  lead = (lambda x: np.asarray(x)) if vmapped else (lambda x: np.asarray(x)[None])

  def sums(params, model_state, blocks):
    total = None
    for block in blocks:
      part = eval_c(params, model_state, block)
      total = part if total is None else jax.tree.map(jnp.add, total, part)
    return total

  def evaluate(params, model_state):
    sums_v, sums_t = jax.device_get((sums(params, model_state, valid), sums(params, model_state, test)))
    return ({k: lead(v) for k, v in _means(sums_v).items()}, {k: lead(v) for k, v in _means(sums_t).items()})

  t0 = time.perf_counter()
  ev_valid, ev_test = evaluate(states.params, states.model_state)
  eval_seconds = time.perf_counter() - t0
  metric_names = [k for k in ev_valid if not (workload.surface is not None and k in ("u", "v"))]
  curves: dict[str, list[list[Any]]] = {"step": [], "seconds": [], "train_loss": []}
  for k in metric_names:
    curves[f"valid_{k}"], curves[f"test_{k}"] = [], []
  traj: dict[str, list[list[float]]] = {"u": [], "v": []}
  diverged_at: list[int | None] = [None] * size

  def record(step: int, seconds: float, train_loss: np.ndarray | None) -> None:
    curves["step"].append([step] * size)
    curves["seconds"].append([seconds] * size)
    curves["train_loss"].append([None] * size if train_loss is None else list(train_loss))
    for k in metric_names:
      curves[f"valid_{k}"].append(list(ev_valid[k]))
      curves[f"test_{k}"].append(list(ev_test[k]))
    for r in range(size):
      if diverged_at[r] is None and not np.isfinite(ev_valid["loss"][r]):
        diverged_at[r] = step

  record(0, 0.0, None)
  train_seconds = 0.0
  for c in range(workload.steps // length):
    start = c * length
    idx = np.stack([batch_indices(int(s), start, length, bs, n) for s in np.atleast_1d(seeds)])
    idx_dev = jax.block_until_ready(jax.device_put(idx if vmapped else idx[0]))
    t0 = time.perf_counter()
    states, metrics, (eval_params, model_state) = chunk_c(states, hp, data, idx_dev)
    jax.block_until_ready((states, eval_params))
    train_seconds += time.perf_counter() - t0
    metrics = {k: lead(v) for k, v in jax.device_get(metrics).items()}
    loss_RxL = np.asarray(metrics["loss"], np.float64)
    for r in range(size):
      bad = np.flatnonzero(~np.isfinite(loss_RxL[r]))
      if diverged_at[r] is None and bad.size:
        diverged_at[r] = start + int(bad[0]) + 1
    if workload.surface is not None:
      traj["u"].append(np.asarray(metrics["u"], np.float64))
      traj["v"].append(np.asarray(metrics["v"], np.float64))
    t0 = time.perf_counter()
    ev_valid, ev_test = evaluate(eval_params, model_state)
    eval_seconds += time.perf_counter() - t0
    record(start + length, train_seconds / real, np.mean(loss_RxL, axis=1))
    if all(d is not None for d in diverged_at[:real]):
      break

  timing = {"compile_seconds": compile_seconds, "train_seconds": train_seconds,
            "eval_seconds": eval_seconds, "runs_in_program": real, "program_size": size, "vmapped": vmapped}
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
          "final_test": test[-1] if test else None, "best_test": best(test),
          "steps_to_target": steps_to_target, "seconds_to_target": seconds_to_target}
