"""Suites and the tuning protocol: tune K trials, pick the best on validation, re-run it with S seeds.

For each (workload, optimizer) of a suite:

1. **Tune**: K trials drawn from the optimizer's search space (``grid`` or
   ``quasirandom``, see ``search.draw_trials``), all with the tuning seed.
2. **Select**: the trial with the best *final validation* metric (ties: fewer
   steps to the target); diverged trials never win.
3. **Confirm**: the selected hyperparameters re-run with S new seeds
   (``tuning_seed + 1 ... tuning_seed + S``); these runs give the reported test
   metrics, time-to-target and seed spread.

Every run is one record in ``DIR/results.jsonl`` (see ``records``). The suite
can be stopped at any point and started again: runs whose ``run_id`` is
already stored are skipped, and selection reads the stored trials, so a
resumed suite makes the same decisions as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jdl.bench import records as records_lib
from jdl.bench import search
from jdl.bench import workloads as workloads_lib

ROLE_TUNE, ROLE_FINAL = "tune", "final"


@dataclasses.dataclass(frozen=True)
class Suite:
  """A benchmark suite: which workloads and optimizers, and the tuning budget.

  Attributes:
    name: the registry name.
    workloads: workload names.
    optimizers: optimizer names (``jdl.optim`` or ``register_optimizer``).
    trials: K, tuning trials per (workload, optimizer).
    search: ``"grid"`` or ``"quasirandom"``.
    tune: the tuned hyperparameters (None: the optimizer's whole search space).
    seeds: S, seeds of the selected setting.
    tuning_seed: the seed of every tuning trial.
    budgets: per-workload overrides of ``steps``, ``eval_every``,
      ``batch_size``, ``target``.
    search_spaces: per-optimizer search dimensions replacing the registered
      ones (e.g. a wider learning-rate range).
    accelerator: meant for a GPU/TPU (a warning is printed without one).
    description: one line.
  """

  name: str
  workloads: tuple[str, ...]
  optimizers: tuple[str, ...]
  trials: int = 8
  search: str = "grid"
  tune: tuple[str, ...] | None = ("learning_rate",)
  seeds: int = 3
  tuning_seed: int = 0
  budgets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  search_spaces: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  accelerator: bool = False
  description: str = ""

  def __post_init__(self) -> None:
    where = f"suite {self.name!r}"
    for arg in ("workloads", "optimizers"):
      value = getattr(self, arg)
      if isinstance(value, str) or not value or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{where}: {arg} must be a non-empty list of names, got {value!r}")
      object.__setattr__(self, arg, tuple(value))
    if self.tune is not None:
      object.__setattr__(self, "tune", tuple(self.tune))
    for arg in ("trials", "seeds"):
      value = getattr(self, arg)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: {arg} must be a positive integer, got {value!r}")
    if self.search not in search.SEARCH_METHODS:
      raise ValueError(f"{where}: search must be one of {search.SEARCH_METHODS}, got {self.search!r}")
    unknown = sorted(set(self.budgets) - set(self.workloads))
    if unknown:
      raise ValueError(f"{where}: budgets for workloads not in the suite: {unknown}")
    unknown = sorted(set(self.search_spaces) - set(self.optimizers))
    if unknown:
      raise ValueError(f"{where}: search_spaces for optimizers not in the suite: {unknown}")

  def workload(self, name: str) -> workloads_lib.Workload:
    """The registered workload ``name`` with this suite's budget overrides."""
    wl = workloads_lib.get_workload(name)
    return wl.with_budget(**dict(self.budgets.get(name, {}))) if name in self.budgets else wl

  def optimizer(self, name: str | search.BenchOptimizer) -> search.BenchOptimizer:
    """The optimizer ``name`` with this suite's search-space overrides."""
    opt = search.get_optimizer(name)
    override = self.search_spaces.get(opt.name)
    if not override:
      return opt
    return dataclasses.replace(opt, search_space={**dict(opt.search_space), **{k: dict(v) for k, v in
                                                                                override.items()}})

  def final_seeds(self) -> list[int]:
    """The seeds of the confirmation runs."""
    return [self.tuning_seed + 1 + i for i in range(self.seeds)]

  def to_dict(self) -> dict[str, Any]:
    """The suite as JSON-able data (for run metadata)."""
    out = dataclasses.asdict(self)
    out["budgets"] = {k: dict(v) for k, v in self.budgets.items()}
    out["search_spaces"] = {k: {d: dict(v) for d, v in dims.items()} for k, dims in self.search_spaces.items()}
    return out


_SUITES: dict[str, Suite] = {}


def register_suite(suite: Suite, *, overwrite: bool = False) -> Suite:
  """Registers ``suite`` under its name; returns it."""
  if not isinstance(suite, Suite):
    raise TypeError(f"register_suite: expected a Suite, got {type(suite).__name__} {suite!r}")
  if suite.name in _SUITES and not overwrite and _SUITES[suite.name] != suite:
    raise ValueError(f"register_suite: a suite named {suite.name!r} is already registered; pass overwrite=True")
  _SUITES[suite.name] = suite
  return suite


def list_suites() -> list[str]:
  """The registered suite names, sorted."""
  return sorted(_SUITES)


def get_suite(name: str) -> Suite:
  """The suite registered as ``name``."""
  if name not in _SUITES:
    raise ValueError(f"unknown suite {name!r}; known suites: {', '.join(list_suites())}")
  return _SUITES[name]


SMALL_WORKLOADS = ("rosenbrock", "beale", "noisy_quadratic", "quadratic_deep", "digits_logreg", "breast_cancer_mlp",
                   "diabetes_mlp", "mnist1d_logreg", "mnist1d_mlp", "mnist1d_cnn", "mnist1d_gru", "fmnist_mlp",
                   "fmnist_cnn")

register_suite(Suite(
    name="smoke", workloads=("rosenbrock", "quadratic_deep", "digits_logreg"),
    optimizers=("sgd", "momentum", "adam", "rmsprop"), trials=4, search="grid", seeds=4,
    budgets={"rosenbrock": {"steps": 200, "eval_every": 20, "target": 0.5},
             "quadratic_deep": {"steps": 210, "eval_every": 35, "target": 90.0},
             "digits_logreg": {"steps": 200, "eval_every": 20, "target": 0.9}},
    description="4 optimizers x 3 tiny workloads, 4-point learning-rate grid, 4 seeds: checks the machinery in "
                "well under a minute on a CPU"))
register_suite(Suite(
    name="small", workloads=SMALL_WORKLOADS,
    optimizers=("sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad"), trials=6, search="grid", seeds=3,
    search_spaces={"sgd": {"learning_rate": {"distribution": "log_uniform", "low": 1e-3, "high": 10.0}},
                   "adam": {"learning_rate": {"distribution": "log_uniform", "low": 1e-5, "high": 1e-1}},
                   "rmsprop": {"learning_rate": {"distribution": "log_uniform", "low": 1e-5, "high": 1e-1}}},
    description="every CPU workload, 6 optimizers, 6-point learning-rate grid (DeepOBS' protocol; adam, rmsprop "
                "and sgd over 10x wider ranges than jdl.optim's), 3 seeds: about an hour on a 2-core CPU"))
register_suite(Suite(
    name="gpu", workloads=("fmnist_mlp", "fmnist_cnn_large", "mnist_lenet5", "mnist1d_cnn", "mnist1d_gru_large"),
    optimizers=("momentum", "nesterov", "adam", "adamw", "nadamw", "rmsprop", "lion"), trials=16,
    search="quasirandom", tune=None, seeds=5, accelerator=True,
    description="larger workloads for an accelerator: 16 quasi-random trials over each optimizer's whole search "
                "space (AlgoPerf's style), 5 seeds"))


# --------------------------------------------------------------------------- #
# Selection.
# --------------------------------------------------------------------------- #


def select_best(workload: workloads_lib.Workload, trials: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
  """The tuning record to confirm: best final validation metric, then fewest steps to target.

  Diverged trials and trials without a finite final validation value never
  win; returns None when no trial qualifies.
  """
  ok = [r for r in trials if r.get("status") == "ok" and r["summary"].get("final_valid") is not None]
  if not ok:
    return None
  sign = -1.0 if workload.mode == "max" else 1.0

  def key(r):
    steps = r["summary"].get("steps_to_target")
    return (sign * r["summary"]["final_valid"], math.inf if steps is None else steps)

  return min(ok, key=key)


# --------------------------------------------------------------------------- #
# Running.
# --------------------------------------------------------------------------- #


class Interrupted(Exception):
  """Raised inside the protocol when ``max_runs`` records have been written."""


@dataclasses.dataclass
class Progress:
  """Counts of a suite invocation."""

  appended: int = 0
  skipped: int = 0
  failed_groups: int = 0
  interrupted: bool = False
  max_runs: int | None = None


def _record(suite: Suite, workload: workloads_lib.Workload, opt: search.BenchOptimizer, role: str, rid: str,
            result: Any) -> dict[str, Any]:
  spec = result.spec
  return {
      "run_id": rid, "suite": suite.name, "role": role, "workload": workload.name,
      "workload_spec": workload.spec(), "optimizer": opt.name, "hparams": dict(spec.hparams), "seed": spec.seed,
      "protocol": records_lib.PROTOCOL_VERSION, "status": result.status, "diverged_at_step": result.diverged_at_step,
      "metric": workload.metric, "mode": workload.mode, "target": workload.target, "summary": result.summary,
      "timing": result.timing, "curves": result.curves, "trajectory": result.trajectory,
      "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }


def _run_missing(suite: Suite, workload: workloads_lib.Workload, opt: search.BenchOptimizer, role: str,
                 specs: Sequence[Any], store: records_lib.ResultStore, progress: Progress,
                 log: Callable[[str], None], errors_path: Path, devices: int | None = None) -> list[str]:
  """Trains the specs whose run ids are not stored; returns all their run ids."""
  from jdl.bench import engine  # pylint: disable=g-import-not-at-top

  ids = [records_lib.run_id(records_lib.run_config(workload.spec(), opt.name, s.hparams, s.seed)) for s in specs]
  missing = [(s, i) for s, i in zip(specs, ids) if i not in store.done]
  progress.skipped += len(specs) - len(missing)
  if not missing:
    return ids
  log(f"{workload.name} / {opt.name}: {role} {len(missing)} run(s)")
  try:
    problem = workloads_lib.build(workload)
    results = engine.train_runs(workload, problem, opt, [s for s, _ in missing],
                                vmap=workload.vmap_runs or _has_accelerator() or (devices or 1) > 1,
                                devices=devices)
  except Exception as e:  # pylint: disable=broad-except  # a failing group must not stop the suite
    progress.failed_groups += 1
    log(f"{workload.name} / {opt.name}: {role} failed: {type(e).__name__}: {e}")
    records_lib.append_line(errors_path, {
        "workload": workload.name, "optimizer": opt.name, "role": role, "run_ids": [i for _, i in missing],
        "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(),
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    return ids
  for (_, rid), result in zip(missing, results):
    store.append(_record(suite, workload, opt, role, rid, result))
    progress.appended += 1
    if progress.max_runs is not None and progress.appended >= progress.max_runs:
      raise Interrupted
  return ids


def run_pair(suite: Suite, workload: workloads_lib.Workload, optimizer: str | search.BenchOptimizer,
             store: records_lib.ResultStore, progress: Progress, *, log: Callable[[str], None] = print,
             errors_path: Path | None = None, devices: int | None = None) -> None:
  """Tunes, selects and confirms one (workload, optimizer), writing what is missing to ``store``.

  ``devices``: local devices each group's runs are sharded over (``engine.train_runs``).
  """
  opt = suite.optimizer(optimizer)
  errors_path = errors_path or store.directory / records_lib.ERRORS_FILE
  trials = search.draw_trials(opt, suite.trials, method=suite.search, tune=suite.tune, seed=suite.tuning_seed)
  from jdl.bench.engine import RunSpec  # pylint: disable=g-import-not-at-top

  tune_ids = _run_missing(suite, workload, opt, ROLE_TUNE, [RunSpec(h, suite.tuning_seed) for h in trials], store,
                          progress, log, errors_path, devices)
  by_id = {r["run_id"]: r for r in store.records}
  if not all(i in by_id for i in tune_ids):
    return  # a failed group: the next invocation retries it
  best = select_best(workload, [by_id[i] for i in tune_ids])
  if best is None:
    log(f"{workload.name} / {opt.name}: every trial diverged; no confirmation runs")
    return
  _run_missing(suite, workload, opt, ROLE_FINAL, [RunSpec(best["hparams"], s) for s in suite.final_seeds()], store,
               progress, log, errors_path, devices)


def run_suite(suite: Suite | str, out: str | os.PathLike[str], *, max_runs: int | None = None,
              log: Callable[[str], None] = print, argv: Sequence[str] | None = None,
              devices: int | None = None) -> Progress:
  """Runs (or resumes) ``suite``, appending to ``out/results.jsonl``.

  Args:
    suite: a ``Suite`` or a registered name.
    out: the results directory (created).
    max_runs: stop after writing this many new records (the rest is left for
      the next invocation); None runs everything.
    log: progress lines go here.
    argv: the command line, for the metadata.
    devices: shard each group's runs over this many local devices (default:
      one); the records do not depend on it.

  Returns:
    the ``Progress``: records written and skipped, failed groups (their
    errors are in ``out/errors.jsonl``; they are retried next time), and
    whether ``max_runs`` stopped it.
  """
  suite = get_suite(suite) if isinstance(suite, str) else suite
  if max_runs is not None and (isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1):
    raise ValueError(f"max_runs: expected a positive integer or None, got {max_runs!r}")
  for name in suite.workloads:
    suite.workload(name)  # unknown names fail before any work
  for name in suite.optimizers:  # unknown names and bad `tune` lists fail before any work
    search.draw_trials(suite.optimizer(name), suite.trials, method=suite.search, tune=suite.tune,
                       seed=suite.tuning_seed)
  from jdl.bench import engine  # pylint: disable=g-import-not-at-top

  engine.placement(devices)  # a bad device count fails before any work
  progress = Progress(max_runs=max_runs)
  with records_lib.open_store(out) as store:
    write_meta(store.directory, suite, argv)
    if suite.accelerator and not _has_accelerator():
      log(f"suite {suite.name!r} is meant for an accelerator and none is present; it will be slow")
    try:
      for name in suite.workloads:
        workload = suite.workload(name)
        for opt in suite.optimizers:
          run_pair(suite, workload, opt, store, progress, log=log, devices=devices)
    except Interrupted:
      progress.interrupted = True
  return progress


# --------------------------------------------------------------------------- #
# Metadata.
# --------------------------------------------------------------------------- #


def _has_accelerator() -> bool:
  import jax  # pylint: disable=g-import-not-at-top

  return jax.default_backend() != "cpu"


def git_revision(path: str | os.PathLike[str] | None = None) -> str | None:
  """``git rev-parse HEAD`` of the checkout holding jdl (``+dirty`` with local changes), or None."""
  where = Path(path) if path else Path(__file__).resolve().parent
  try:
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10,
                         check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where, capture_output=True,
                           text=True, timeout=10, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return rev + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
  """Versions, devices, host and git revision of this process."""
  import jax  # pylint: disable=g-import-not-at-top

  import jdl  # pylint: disable=g-import-not-at-top

  versions = {"jdl": jdl.__version__, "jax": jax.__version__, "python": platform.python_version()}
  for mod in ("jaxlib", "flax", "optax", "numpy"):
    try:
      versions[mod] = __import__(mod).__version__
    except (ImportError, AttributeError):
      pass
  return {"versions": versions, "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()], "device_kind": jax.devices()[0].device_kind,
          "host": socket.gethostname(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
          "git_revision": git_revision()}


def write_meta(directory: str | os.PathLike[str], suite: Suite, argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Appends this session (time, environment, suite, seeds, command) to ``directory/meta.json``."""
  path = Path(directory) / "meta.json"
  sessions: list[Any] = []
  if path.exists():
    try:
      sessions = json.loads(path.read_text())
    except ValueError:
      sessions = []
  entry = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "suite": suite.to_dict(), "tuning_seed": suite.tuning_seed, "final_seeds": suite.final_seeds(),
           "argv": list(argv) if argv is not None else list(sys.argv), **environment()}
  sessions.append(entry)
  tmp = path.with_suffix(".json.tmp")
  tmp.write_text(json.dumps(sessions, indent=1))
  os.replace(tmp, path)
  return entry
