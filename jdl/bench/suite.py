"""Suites and the tuning protocol: tune K trials, pick the best on validation, re-run it with S seeds.

For each (workload, optimizer) of a suite:

1. **Tune**: K trials drawn from the optimizer's search space (``grid`` or
   ``quasirandom``, see ``search.draw_trials``), all with the tuning seed.
2. **Select** what is scored: the fewest steps to the validation target
   (ties: the final validation value; ``selection="final_valid"`` reverses
   the two); diverged trials never win. A pick on an edge of the rates tried
   extends the grid beyond it (``extend_edges``).
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
import functools
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

ROLE_TUNE, ROLE_FINAL, ROLE_TARGET = "tune", "final", "target"
# The default search range of every optimizer of a suite (DeepOBS: one log-spaced learning-rate range for all).
SHARED_LR = {"learning_rate": {"distribution": "log_uniform", "low": 1e-5, "high": 10.0}}
STUDY_SEED = 2000  # study i > 0 of external tuning trains with seed STUDY_SEED + i: apart from confirmation seeds
SELECTIONS = ("time_to_target", "final_valid")


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
    selection: what picks the trial to confirm: ``"time_to_target"`` (the
      suite's score: fewest steps to the validation target, then the best
      final validation value) or ``"final_valid"`` (the best final
      validation value, then fewest steps).
    shared_space: search dimensions given to *every* optimizer (DeepOBS: one
      learning-rate range for all; default ``SHARED_LR``, 1e-5 to 10; None
      keeps each optimizer's registered space), replacing their registered
      ones; the
      per-optimizer ``search_spaces`` still apply on top (the optimizers are
      then no longer compared over equal ranges).
    extend_edges: (default on) when the selected learning rate is the
      smallest or largest one tried, or every trial diverged, try ``extension_points`` more rates
      beyond that edge (the grid's spacing), up to ``max_extensions`` times;
      a pair still on its edge after that is listed apart from the
      leaderboard.
    max_extensions, extension_points: see ``extend_edges``.
    targets: recorded validation targets replacing the workloads' own: a
      ``targets.json`` written by ``jdl bench set-targets`` (a path, or the
      name of one shipped in ``jdl/bench/recorded_targets/``).
    final_seed_start: the first confirmation seed (default: ``tuning_seed + 1``).
    studies: AlgoPerf's external tuning when > 0: that many independent
      studies of K quasi-random trials (study 0 is the usual tuning; study
      ``i > 0`` draws its trials with Halton shift ``tuning_seed + i`` and
      trains them with seed ``STUDY_SEED + i``, apart from the confirmation
      seeds); a pair's time to target is the median over studies
      of each study's fastest trial. Edge extension does not apply; study 0's
      selection is still confirmed with S seeds for the performance table.
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
  selection: str = "time_to_target"
  shared_space: Mapping[str, Mapping[str, Any]] | None = dataclasses.field(
      default_factory=lambda: {k: dict(v) for k, v in SHARED_LR.items()})
  extend_edges: bool = True
  max_extensions: int = 3
  extension_points: int = 2
  targets: str | None = None
  final_seed_start: int | None = None
  studies: int = 0

  def __post_init__(self) -> None:
    where = f"suite {self.name!r}"
    for arg in ("workloads", "optimizers"):
      value = getattr(self, arg)
      if isinstance(value, str) or not value or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{where}: {arg} must be a non-empty list of names, got {value!r}")
      object.__setattr__(self, arg, tuple(value))
    if self.tune is not None:
      object.__setattr__(self, "tune", tuple(self.tune))
    for arg in ("trials", "seeds", "extension_points"):
      value = getattr(self, arg)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: {arg} must be a positive integer, got {value!r}")
    if isinstance(self.max_extensions, bool) or not isinstance(self.max_extensions, int) or self.max_extensions < 0:
      raise ValueError(f"{where}: max_extensions must be a non-negative integer, got {self.max_extensions!r}")
    if isinstance(self.studies, bool) or not isinstance(self.studies, int) or self.studies < 0:
      raise ValueError(f"{where}: studies must be a non-negative integer, got {self.studies!r}")
    if self.studies == 1:
      raise ValueError(f"{where}: studies must be 0 (no external tuning) or at least 2, got 1")
    if self.studies and self.search != "quasirandom":
      raise ValueError(f"{where}: studies (external tuning) draw quasirandom trials; got search={self.search!r}")
    if self.selection not in SELECTIONS:
      raise ValueError(f"{where}: selection must be one of {SELECTIONS}, got {self.selection!r}")
    if self.shared_space is not None:
      import jdl.optim  # pylint: disable=g-import-not-at-top

      jdl.optim.check_search_space(f"{where}: shared_space", self.shared_space)
      object.__setattr__(self, "shared_space", {k: dict(v) for k, v in self.shared_space.items()})
    if self.search not in search.SEARCH_METHODS:
      raise ValueError(f"{where}: search must be one of {search.SEARCH_METHODS}, got {self.search!r}")
    unknown = sorted(set(self.budgets) - set(self.workloads))
    if unknown:
      raise ValueError(f"{where}: budgets for workloads not in the suite: {unknown}")
    unknown = sorted(set(self.search_spaces) - set(self.optimizers))
    if unknown:
      raise ValueError(f"{where}: search_spaces for optimizers not in the suite: {unknown}")

  def workload(self, name: str) -> workloads_lib.Workload:
    """The registered workload ``name`` with this suite's budget overrides and recorded target."""
    wl = workloads_lib.get_workload(name)
    wl = wl.with_budget(**dict(self.budgets.get(name, {}))) if name in self.budgets else wl
    recorded = self.recorded_targets().get(name)
    return wl.with_budget(target=recorded["target"]) if recorded else wl

  @functools.cached_property
  def _recorded(self) -> dict[str, dict[str, Any]]:
    if self.targets is None:
      return {}
    from jdl.bench import targets as targets_lib  # pylint: disable=g-import-not-at-top

    return targets_lib.load(self.targets)["workloads"]

  def recorded_targets(self) -> dict[str, dict[str, Any]]:
    """``{workload: {"target": value, ...}}`` of the suite's ``targets`` file (empty without one).

    Read once per suite object, so a suite keeps the targets it started with.
    """
    return self._recorded

  def optimizer(self, name: str | search.BenchOptimizer) -> search.BenchOptimizer:
    """The optimizer ``name`` with this suite's shared space, then its search-space overrides."""
    opt = search.get_optimizer(name)
    override = {**(self.shared_space or {}), **dict(self.search_spaces.get(opt.name) or {})}
    if not override:
      return opt
    return dataclasses.replace(opt, search_space={**dict(opt.search_space), **{k: dict(v) for k, v in
                                                                                override.items()}})

  def final_seeds(self) -> list[int]:
    """The seeds of the confirmation runs."""
    start = self.tuning_seed + 1 if self.final_seed_start is None else self.final_seed_start
    return [start + i for i in range(self.seeds)]

  @classmethod
  def from_dict(cls, data: Mapping[str, Any]) -> Suite:
    """The suite ``to_dict`` wrote (fields it does not know are ignored: older metadata)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})

  def to_dict(self) -> dict[str, Any]:
    """The suite as JSON-able data (for run metadata)."""
    out = dataclasses.asdict(self)
    out["budgets"] = {k: dict(v) for k, v in self.budgets.items()}
    out["search_spaces"] = {k: {d: dict(v) for d, v in dims.items()} for k, dims in self.search_spaces.items()}
    if self.shared_space is not None:
      out["shared_space"] = {k: dict(v) for k, v in self.shared_space.items()}
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
                   "fmnist_cnn", "mnist1d_mlp_deep", "mnist1d_lstm")

register_suite(Suite(
    name="smoke", workloads=("rosenbrock", "quadratic_deep", "digits_logreg"),
    optimizers=("sgd", "momentum", "adam", "rmsprop"), trials=4, search="grid", seeds=4,
    shared_space={"learning_rate": {"distribution": "log_uniform", "low": 1e-3, "high": 1.0}}, extend_edges=True,
    max_extensions=1, extension_points=1,
    budgets={"rosenbrock": {"steps": 200, "eval_every": 20, "target": 0.5},
             "quadratic_deep": {"steps": 210, "eval_every": 35, "target": 90.0},
             "digits_logreg": {"steps": 200, "eval_every": 20, "target": 0.9}},
    description="4 optimizers x 3 tiny workloads, a shared 4-point learning-rate grid (one edge extension), "
                "4 seeds: checks the machinery in well under a minute on a CPU"))
register_suite(Suite(
    name="small", workloads=SMALL_WORKLOADS,
    optimizers=("sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad", "adamw", "adam_cosine"), trials=13,
    search="grid", seeds=10, shared_space=SHARED_LR, extend_edges=True, targets="small",
    description="every CPU workload and two held-out variants, 8 optimizers (adamw: weight decay; adam_cosine: a "
                "cosine schedule) over one shared 13-point learning-rate grid 1e-5..10 with edge extension, 10 "
                "seeds, recorded targets"))
register_suite(Suite(
    name="small_v1", workloads=SMALL_WORKLOADS[:13],
    optimizers=("sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad"), trials=6, search="grid", seeds=3,
    selection="final_valid", shared_space=None, extend_edges=False,
    search_spaces={"sgd": {"learning_rate": {"distribution": "log_uniform", "low": 1e-3, "high": 10.0}},
                   "adam": {"learning_rate": {"distribution": "log_uniform", "low": 1e-5, "high": 1e-1}},
                   "rmsprop": {"learning_rate": {"distribution": "log_uniform", "low": 1e-5, "high": 1e-1}}},
    description="the protocol of the first reports (per-optimizer ranges, 6-point grid, selection on the final "
                "validation value, 3 seeds), kept to compare against"))
register_suite(Suite(
    name="gpu", workloads=("fmnist_mlp", "fmnist_cnn_large", "fmnist_resnet", "mnist_lenet5", "mnist1d_cnn",
                           "mnist1d_gru_large"),
    optimizers=("momentum", "nesterov", "adam", "adamw", "nadamw", "rmsprop", "lion"), trials=16,
    search="quasirandom", tune=None, seeds=10, accelerator=True,
    description="larger workloads for an accelerator: 16 quasi-random trials (AlgoPerf's style), the learning "
                "rate over the shared range and the other hyperparameters over each optimizer's declared space, 10 "
                "seeds"))


# --------------------------------------------------------------------------- #
# Selection.
# --------------------------------------------------------------------------- #


def select_best(workload: workloads_lib.Workload, trials: Sequence[Mapping[str, Any]],
                by: str = "time_to_target") -> Mapping[str, Any] | None:
  """The tuning record to confirm.

  ``by="time_to_target"`` (the suite's score): fewest steps to the workload's
  validation target, then the best final validation value (so trials that
  never reach it are still ordered). ``by="final_valid"``: the best final
  validation value, then fewest steps. The time to target is read from each
  record's curve with ``workload``'s target, so a recorded target applies to
  runs made before it. Diverged trials and trials without a finite final
  validation value never win; returns None when no trial qualifies.
  """
  from jdl.bench import analysis  # pylint: disable=g-import-not-at-top

  if by not in SELECTIONS:
    raise ValueError(f"selection: expected one of {SELECTIONS}, got {by!r}")
  ok = [r for r in trials if r.get("status") == "ok" and r["summary"].get("final_valid") is not None]
  if not ok:
    return None
  sign = -1.0 if workload.mode == "max" else 1.0

  def key(r):
    steps, _ = analysis.time_to_target(r, workload.target, workload.mode)
    steps = math.inf if steps is None else steps
    value = sign * r["summary"]["final_valid"]
    return (steps, value) if by == "time_to_target" else (value, steps)

  return min(ok, key=key)


def edge_side(trials: Sequence[Mapping[str, Any]], best: Mapping[str, Any] | None) -> str | None:
  """``"low"`` or ``"high"`` when ``best``'s learning rate is the smallest or largest tried, else None.

  Every trial diverged (``best`` is None) counts as ``"low"``: smaller rates
  are the way out. Fewer than three distinct rates have no edge.
  """
  lrs = sorted({float(r["hparams"]["learning_rate"]) for r in trials})
  if best is None:
    return "low" if trials else None
  if len(lrs) < 3:
    return None
  lr = float(best["hparams"]["learning_rate"])
  return "low" if lr <= lrs[0] else "high" if lr >= lrs[-1] else None


def extension_trials(trials: Sequence[Mapping[str, Any]], first: Sequence[Mapping[str, Any]],
                     best: Mapping[str, Any] | None, side: str, points: int) -> list[dict[str, Any]]:
  """``points`` learning rates beyond ``side``'s edge of ``trials``, spaced as the first draw ``first``.

  The spacing is the first draw's geometric step ``(max / min)^(1 / (n - 1))``
  over its ``n`` distinct rates; the other hyperparameters are ``best``'s (or
  the first trial's when every trial diverged).
  """
  from jdl.bench import search as search_lib  # pylint: disable=g-import-not-at-top

  drawn = sorted({float(h["learning_rate"]) for h in first})
  ratio = (drawn[-1] / drawn[0]) ** (1.0 / (len(drawn) - 1)) if len(drawn) > 1 else 10.0
  lrs = [float(r["hparams"]["learning_rate"]) for r in trials]
  edge = min(lrs) if side == "low" else max(lrs)
  base = dict(best["hparams"] if best is not None else first[0])
  step = 1.0 / ratio if side == "low" else ratio
  return [{**base, "learning_rate": search_lib.round_value(edge * step ** j)} for j in range(1, points + 1)]


@dataclasses.dataclass
class PairPlan:
  """Where the protocol of one (workload, optimizer) stands, given the stored records.

  Attributes:
    missing: the next runs to train, ``(role, round, study, specs)``, or None
      when the protocol is complete.
    tune_ids: the run ids of the tuning trials so far (extensions included).
    final_ids: the run ids of the confirmation runs (once a trial is selected).
    best: the selected tuning record (None: not yet, or every trial diverged).
    rounds: edge extensions made.
    unresolved: the selection is still on an edge of the rates tried (or
      every trial diverged) and no extension is left.
  """

  missing: tuple[str, int, int, list[Any]] | None
  tune_ids: list[str]
  final_ids: list[str] = dataclasses.field(default_factory=list)
  best: Mapping[str, Any] | None = None
  rounds: int = 0
  unresolved: bool = False


def plan_pair(suite: Suite, workload: workloads_lib.Workload, opt: search.BenchOptimizer,
              by_id: Mapping[str, Mapping[str, Any]]) -> PairPlan:
  """Walks the protocol (tune, extend edges, select, confirm) over the stored records ``by_id``.

  Deterministic: the same records give the same plan, which is what lets a
  killed suite resume without repeating a run.
  """
  from jdl.bench.engine import RunSpec  # pylint: disable=g-import-not-at-top

  def ids(specs):
    return [records_lib.run_id(records_lib.run_config(workload.spec(), opt.name, s.hparams, s.seed)) for s in specs]

  first = search.draw_trials(opt, suite.trials, method=suite.search, tune=suite.tune, seed=suite.tuning_seed)
  tune_ids: list[str] = []
  for study in range(1, suite.studies):  # external tuning: the other studies first, then study 0 as usual
    drawn = search.draw_trials(opt, suite.trials, method=suite.search, tune=suite.tune, seed=suite.tuning_seed + study)
    specs = [RunSpec(h, STUDY_SEED + study) for h in drawn]
    todo = [s for s, i in zip(specs, ids(specs)) if i not in by_id]
    if todo:
      return PairPlan(missing=(ROLE_TUNE, 0, study, todo), tune_ids=tune_ids)
    tune_ids += ids(specs)
  study_ids = list(tune_ids)
  specs = [RunSpec(h, suite.tuning_seed) for h in first]
  best, side, rounds = None, None, 0
  extend = suite.extend_edges and not suite.studies
  for rounds in range(suite.max_extensions + 1 if extend else 1):
    new = [i for i in ids(specs) if i not in tune_ids]
    if not all(i in by_id for i in new):
      return PairPlan(missing=(ROLE_TUNE, rounds, 0, [s for s, i in zip(specs, ids(specs)) if i not in by_id]),
                      tune_ids=tune_ids, rounds=rounds)
    tune_ids += new
    trials = [by_id[i] for i in tune_ids if i not in study_ids]
    best = select_best(workload, trials, suite.selection)
    side = edge_side(trials, best)
    if side is None or not extend or rounds == suite.max_extensions:
      break
    specs = [RunSpec(h, suite.tuning_seed) for h in
             extension_trials(trials, first, best, side, suite.extension_points)]
  unresolved = side is not None and extend
  if best is None:
    return PairPlan(missing=None, tune_ids=tune_ids, rounds=rounds, unresolved=unresolved)
  final = [RunSpec(best["hparams"], s) for s in suite.final_seeds()]
  todo = [s for s, i in zip(final, ids(final)) if i not in by_id]
  return PairPlan(missing=(ROLE_FINAL, 0, 0, todo) if todo else None, tune_ids=tune_ids, final_ids=ids(final),
                  best=best, rounds=rounds, unresolved=unresolved)


def protocol_view(suite: Suite, records: Sequence[Mapping[str, Any]]
                  ) -> tuple[list[Mapping[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
  """The records of ``suite``'s protocol, and each pair's status.

  Walks ``plan_pair`` over the stored records, so that a directory holding
  other runs (``set-targets`` reruns and its edge extensions, confirmations of
  an earlier selection) compares exactly the runs this suite's protocol made.

  Returns:
    ``(records, {(workload, optimizer): {"unresolved", "incomplete",
    "rounds"}})``: the tuning runs of the plan and, when the plan is complete,
    its confirmation runs; a pair with runs still missing is incomplete.
  """
  by_id = {r["run_id"]: r for r in records}
  kept: list[Mapping[str, Any]] = []
  status: dict[tuple[str, str], dict[str, Any]] = {}
  for name in suite.workloads:
    workload = suite.workload(name)
    for opt_name in suite.optimizers:
      plan = plan_pair(suite, workload, suite.optimizer(opt_name), by_id)
      ids = plan.tune_ids + [i for i in plan.final_ids if i in by_id]
      kept += [by_id[i] for i in ids if i in by_id]
      status[(name, opt_name)] = {"unresolved": plan.unresolved, "incomplete": plan.missing is not None,
                                  "rounds": plan.rounds}
  return kept, status


@dataclasses.dataclass(frozen=True)
class Comparison:
  """What a results directory compares: the runs of its suite's protocol, their status and the targets in force.

  Attributes:
    suite: the suite rebuilt from ``meta.json`` (None: it could not be, and every record is compared).
    records: the records compared.
    status: ``protocol_view``'s per-pair status (None without a suite).
    targets: ``{workload: target}`` of the sessions, the latest winning.
  """

  suite: Suite | None
  records: list[Mapping[str, Any]]
  status: dict[tuple[str, str], dict[str, Any]] | None
  targets: dict[str, float]

  def summaries(self) -> list[dict[str, Any]]:
    """``analysis.summaries`` of the compared records."""
    from jdl.bench import analysis  # pylint: disable=g-import-not-at-top

    return analysis.summaries(self.records, self.targets, self.status)


def comparison(records: Sequence[Mapping[str, Any]], sessions: Sequence[Mapping[str, Any]]) -> Comparison:
  """The ``Comparison`` of a results directory's records and ``meta.json`` sessions (reports and docs use it)."""
  targets = {k: v for s in sessions for k, v in (s.get("targets") or {}).items()}
  suite = suite_of(sessions)
  if suite is None:
    return Comparison(None, list(records), None, targets)
  kept, status = protocol_view(suite, records)
  return Comparison(suite, kept, status, targets)


def suite_of(sessions: Sequence[Mapping[str, Any]]) -> Suite | None:
  """The suite a results directory's ``meta.json`` sessions ran: the last session's settings, over the workloads
  and optimizers of every session of that suite (a suite run in parts with ``--workloads``). None when it cannot
  be rebuilt (an unknown workload or optimizer: pass the file that registers it with ``--import``)."""
  if not sessions or "suite" not in sessions[-1]:
    return None
  last = dict(sessions[-1]["suite"])
  same = [dict(s["suite"]) for s in sessions if s.get("suite", {}).get("name") == last.get("name")]
  workloads = list(dict.fromkeys(w for s in same for w in s.get("workloads", ())))
  optimizers = list(dict.fromkeys(o for s in same for o in s.get("optimizers", ())))
  budgets = {k: v for s in same for k, v in (s.get("budgets") or {}).items()}
  try:
    return Suite.from_dict({**last, "workloads": tuple(workloads), "optimizers": tuple(optimizers),
                            "budgets": budgets})
  except (ValueError, TypeError, FileNotFoundError):
    return None


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
            result: Any, rounds: int = 0, study: int = 0) -> dict[str, Any]:
  spec = result.spec
  return {
      "run_id": rid, "suite": suite.name, "role": role, "round": rounds, "study": study, "workload": workload.name,
      "workload_spec": workload.spec(), "optimizer": opt.name, "hparams": dict(spec.hparams), "seed": spec.seed,
      "protocol": records_lib.PROTOCOL_VERSION, "status": result.status, "diverged_at_step": result.diverged_at_step,
      "metric": workload.metric, "mode": workload.mode, "target": workload.target, "summary": result.summary,
      "timing": result.timing, "curves": result.curves, "trajectory": result.trajectory,
      "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }


def _run_missing(suite: Suite, workload: workloads_lib.Workload, opt: search.BenchOptimizer, role: str,
                 specs: Sequence[Any], store: records_lib.ResultStore, progress: Progress,
                 log: Callable[[str], None], errors_path: Path, devices: int | None = None, *,
                 what: str | None = None, rounds: int = 0, study: int = 0) -> list[str]:
  """Trains the specs whose run ids are not stored; returns all their run ids."""
  from jdl.bench import engine  # pylint: disable=g-import-not-at-top

  ids = [records_lib.run_id(records_lib.run_config(workload.spec(), opt.name, s.hparams, s.seed)) for s in specs]
  missing = [(s, i) for s, i in zip(specs, ids) if i not in store.done]
  if not missing:
    return ids
  log(f"{workload.name} / {opt.name}: {what or role} {len(missing)} run(s)")
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
    store.append(_record(suite, workload, opt, role, rid, result, rounds, study))
    progress.appended += 1
    if progress.max_runs is not None and progress.appended >= progress.max_runs:
      raise Interrupted
  return ids


def run_pair(suite: Suite, workload: workloads_lib.Workload, optimizer: str | search.BenchOptimizer,
             store: records_lib.ResultStore, progress: Progress, *, log: Callable[[str], None] = print,
             errors_path: Path | None = None, devices: int | None = None,
             final_role: str = ROLE_FINAL) -> PairPlan:
  """Tunes, extends edges, selects and confirms one (workload, optimizer), writing what is missing to ``store``.

  ``devices``: local devices each group's runs are sharded over (``engine.train_runs``).
  ``final_role``: the role recorded for the confirmation runs (``"target"`` for ``jdl bench set-targets``'
  reruns, which reports leave out of the comparison).
  Returns the final ``PairPlan`` (``missing`` is set when a group failed: the next invocation retries it).
  """
  opt = suite.optimizer(optimizer)
  errors_path = errors_path or store.directory / records_lib.ERRORS_FILE
  before = set(store.done)
  while True:
    plan = plan_pair(suite, workload, opt, {r["run_id"]: r for r in store.records})
    if plan.missing is None:
      break
    role, rounds, study, specs = plan.missing
    role = final_role if role == ROLE_FINAL else role
    what = f"edge extension {rounds}" if rounds else f"study {study}" if study else role
    wanted = _run_missing(suite, workload, opt, role, specs, store, progress, log, errors_path, devices,
                          what=what, rounds=rounds, study=study)
    if not all(i in store.done for i in wanted):
      return plan  # a failed group: the next invocation retries it
  progress.skipped += sum(1 for i in {*plan.tune_ids, *plan.final_ids} if i in before)
  if plan.best is None and plan.tune_ids:
    log(f"{workload.name} / {opt.name}: every trial diverged; no confirmation runs")
  elif plan.unresolved:
    log(f"{workload.name} / {opt.name}: the selected learning rate is still at the edge after {plan.rounds} "
        "extension(s); the report lists this pair apart")
  return plan


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
  for name in suite.workloads:  # unknown names, and data a workload refuses (too small a validation set), fail
    workloads_lib.build(suite.workload(name))  # before any work (problems are cached: no work is lost)
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


def targets_source(suite: Suite) -> str | None:
  """Where the suite's targets come from: its recorded targets file, or None (the workloads' own)."""
  if suite.targets is None:
    return None
  from jdl.bench import targets as targets_lib  # pylint: disable=g-import-not-at-top

  return targets_lib.load(suite.targets)["source"]


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
           "targets": {w: suite.workload(w).target for w in suite.workloads},
           "targets_source": targets_source(suite),
           "argv": list(argv) if argv is not None else list(sys.argv), **environment()}
  sessions.append(entry)
  tmp = path.with_suffix(".json.tmp")
  tmp.write_text(json.dumps(sessions, indent=1))
  os.replace(tmp, path)
  return entry
