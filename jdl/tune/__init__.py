"""Hyperparameter search on Optuna: ``jdl tune EXPERIMENT --space SPACE --trials N``.

Each trial is one ``jdl train`` run of the experiment with the values the
search space chose (``WORKDIR/trials/NNNN``, a run directory like any other:
``jdl compare``, ``jdl eval`` and TensorBoard read it). The study lives in a
real database, SQLite by default (``WORKDIR/study.db``) or any SQLAlchemy URL
(``--storage postgresql://…``), so:

- a search that is killed resumes with ``--resume``: finished trials are kept
  and not repeated; a trial cut short is marked failed (``interrupted``) and
  another is drawn in its place;
- several processes work on one study: ``--jobs J`` starts J worker processes
  on this machine, and ``jdl tune … --storage URL --resume`` on other machines
  joins the same study (each in its own workdir).

The objective is the last epoch's value of a per-epoch metric of the
*validation* split (``eval_accuracy`` by default; never the test split), and
each epoch's value is reported to the pruner, which stops unpromising trials
early (median rule, successive halving or Hyperband). A trial whose loss
diverges is recorded as failed with the reason; the study goes on. At the end,
``WORKDIR`` holds ``trials.md`` (the table), Optuna's figures
(``history.png``, ``importances.png``, ``intermediate.png``) and
``best_experiment.py``, the best trial as an experiment file ``jdl train``
runs. A study is never overwritten without ``--overwrite``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import multiprocessing
import os
import pathlib
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from jdl.train import callbacks as callbacks_lib
from jdl.tune import spaces as spaces_lib

STUDY_DB = "study.db"
TUNE_JSON = "tune.json"
TRIALS = "trials"
TABLE = "trials.md"
BEST = "best_experiment.py"
SAMPLERS = ("tpe", "random", "grid", "qmc")
PRUNERS = ("median", "halving", "hyperband", "none")
# A trial's worker proves it is alive this often (seconds); one silent for GRACE is failed by the others.
HEARTBEAT, GRACE = 20, 60


@dataclasses.dataclass(frozen=True)
class Space:
  """A search space: ``fn(trial, config) -> config``, the name it was given by, and its grid (if any)."""

  name: str
  fn: spaces_lib.SpaceFn
  grid: Mapping[str, Sequence[Any]] | Callable[[ml_collections.ConfigDict], Mapping[str, Sequence[Any]]] | None = None

  def grid_for(self, config: ml_collections.ConfigDict) -> dict[str, list[Any]]:
    if self.grid is None:
      raise ValueError(f"--sampler grid: the space {self.name!r} has no grid; give it one (space.grid = "
                       "{name: [values]}, or GRID in its file) or use --sampler tpe, random or qmc")
    grid = self.grid(config) if callable(self.grid) else self.grid
    return {k: list(v) for k, v in grid.items()}


def load_space(spec: str | Callable[..., Any]) -> Space:
  """A shipped space's name (``jdl.tune.spaces.SPACES``), ``FILE.py`` (its function ``space``),
  ``FILE.py:NAME``, or a function."""
  if callable(spec):
    return Space(getattr(spec, "__name__", "space"), spec, getattr(spec, "grid", None))
  if not isinstance(spec, str) or not spec:
    raise TypeError(f"--space: expected a space name or FILE.py[:FUNCTION], got {spec!r}")
  if spec in spaces_lib.SPACES:
    fn = spaces_lib.SPACES[spec]
    return Space(spec, fn, getattr(fn, "grid", None))
  path_text, _, attr = spec.partition(":") if ".py:" in spec else (spec, "", "")
  path = pathlib.Path(path_text)
  if path.suffix != ".py":
    raise ValueError(f"--space: unknown space {spec!r}; shipped spaces: {', '.join(spaces_lib.SPACES)} "
                     "(or give FILE.py[:FUNCTION])")
  if not path.is_file():
    raise FileNotFoundError(f"--space: no file {path}")
  module_spec = importlib.util.spec_from_file_location(f"jdl_space_{path.stem}", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ValueError(f"--space: {path} is not valid Python: {e.msg} (line {e.lineno})") from None
  attr = attr or "space"
  fn = getattr(module, attr, None)
  if not callable(fn):
    raise ValueError(f"--space: {path} defines no function {attr!r}; a space file defines "
                     f"{attr}(trial, config) -> config")
  return Space(spec, fn, getattr(fn, "grid", None) or getattr(module, "GRID", None))


def _optuna():
  try:
    import optuna  # pylint: disable=g-import-not-at-top
  except ModuleNotFoundError:
    raise ModuleNotFoundError("jdl tune needs Optuna: pip install 'jdl[tune]' (or pip install 'optuna>=5,<6')"
                              ) from None

  optuna.logging.set_verbosity(optuna.logging.ERROR)  # jdl prints a line per trial, failures included
  warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
  return optuna


def open_storage(url: str, *, heartbeat: bool = True) -> Any:
  """Optuna's ``RDBStorage`` on ``url`` (created if new), with heartbeats; a clear error when it cannot be opened."""
  optuna = _optuna()
  kwargs: dict[str, Any] = {}
  if url.startswith("sqlite:"):
    kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}  # several workers write to one file
  if heartbeat:
    kwargs.update(heartbeat_interval=HEARTBEAT, grace_period=GRACE)
  try:
    return optuna.storages.RDBStorage(url, **kwargs)
  except Exception as e:  # SQLAlchemy's errors (bad URL, no driver, no such file, refused connection)
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise ValueError(f"--storage: cannot open the study database {url!r}: {reason}") from None


def make_sampler(name: str, *, seed: int, grid: Mapping[str, Sequence[Any]] | None = None) -> Any:
  optuna = _optuna()
  if name == "tpe":
    return optuna.samplers.TPESampler(seed=seed)
  if name == "random":
    return optuna.samplers.RandomSampler(seed=seed)
  if name == "qmc":  # a scrambled Sobol sequence, shared through the study: workers draw its next points
    return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=0, warn_independent_sampling=False,
                                      warn_asynchronous_seeding=False)
  if name == "grid":
    return optuna.samplers.GridSampler(dict(grid or {}), seed=seed)
  raise ValueError(f"--sampler: expected one of {', '.join(SAMPLERS)}, got {name!r}")


def make_pruner(spec: str, *, epochs: int) -> Any:
  """``median[:STARTUP[:WARMUP]]`` (Optuna's defaults 5 and 0), ``halving``, ``hyperband`` or ``none``."""
  optuna = _optuna()
  name, *numbers = str(spec).split(":")
  if name not in PRUNERS or (numbers and name != "median") or len(numbers) > 2:
    raise ValueError(f"--pruner: expected median[:STARTUP[:WARMUP]], halving, hyperband or none, got {spec!r}")
  if name == "none":
    return optuna.pruners.NopPruner()
  if name == "halving":
    return optuna.pruners.SuccessiveHalvingPruner()
  if name == "hyperband":
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(int(epochs), 1))
  try:
    values = [int(n) for n in numbers]
  except ValueError:
    raise ValueError(f"--pruner: STARTUP and WARMUP are whole numbers of trials and epochs, got {spec!r}") from None
  if any(v < 0 for v in values):
    raise ValueError(f"--pruner: STARTUP and WARMUP must be >= 0, got {spec!r}")
  startup, warmup = (values + [5, 0][len(values):])[:2]
  return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)


@dataclasses.dataclass(frozen=True)
class Job:
  """Everything a worker process needs to work on the study (picklable)."""

  experiment: str
  space: str
  overrides: tuple[tuple[str, str], ...]
  metric: str
  trials: int
  workdir: str
  storage: str
  study_name: str
  sampler: str
  pruner: str
  seed: int


def _base_config(job: Job) -> ml_collections.ConfigDict:
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top

  config = config_lib.load_experiment(job.experiment)
  config_lib.apply_overrides(config, job.overrides)
  return config


def _flat(config: Any) -> dict[str, Any]:
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top
  from jdl.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  return workdir_lib._flat(config_lib.to_dict(config) if isinstance(config, ml_collections.ConfigDict) else config)  # pylint: disable=protected-access


def check_metric(config: ml_collections.ConfigDict, metric: str) -> str:
  """The objective must be a per-epoch figure of the validation split that a run of ``config`` logs
  (``eval_loss``, the task's ``eval_accuracy``, ``eval_<key>`` of ``config.metrics``, …)."""
  from jdl import data  # pylint: disable=g-import-not-at-top
  from jdl.train import experiment  # pylint: disable=g-import-not-at-top

  if not config.data.get("eval_split"):
    raise ValueError("--metric: the experiment has no validation split (data.eval_split is empty); tuning needs "
                     "one, e.g. --config.data.eval_split='train[90%:]' --config.data.train_split='train[:90%]'")
  logged = experiment.logged_keys(config, experiment.resolve_task(config, data.info(config.data.name)))
  known = sorted((k for k in logged if k.startswith("eval_")),
                 key=lambda k: (k != "eval_loss", k != "eval_accuracy", k))
  if metric not in known:
    hint = (" (tuning never looks at the test split)" if metric.startswith("test_") else "")
    raise ValueError(f"--metric: expected a per-epoch figure of the validation split, one of {', '.join(known)}, "
                     f"got {metric!r}{hint}")
  return metric


def _counted(study: Any) -> int:
  """Trials that count towards ``--trials``: finished (complete, pruned, failed by their own run) or running.
  A trial failed because its process was killed does not count: another is drawn in its place."""
  states = _optuna().trial.TrialState
  n = 0
  for t in study.get_trials(deepcopy=False):
    if t.state in (states.COMPLETE, states.PRUNED, states.RUNNING, states.WAITING):
      n += 1
    elif t.state == states.FAIL and "failure" in t.user_attrs:
      n += 1
  return n


class _Pruning(callbacks_lib.Callback):
  """Reports each epoch's objective to the trial; stops the run when the pruner says so."""

  name = "pruning"

  def __init__(self, trial: Any, metric: str):
    self.trial, self.metric, self.pruned_at = trial, metric, None

  def on_epoch_end(self, run: Any, epoch: int, logs: dict[str, Any]) -> None:
    value = logs.get(self.metric)
    if value is None or not math.isfinite(float(value)):
      return
    self.trial.report(float(value), epoch)
    if self.trial.should_prune():
      self.pruned_at = epoch
      run.stop_training = True


def _objective(job: Job, space: Space) -> Callable[[Any], float]:
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top
  from jdl.train import experiment  # pylint: disable=g-import-not-at-top

  optuna = _optuna()
  workdir = pathlib.Path(job.workdir)

  def objective(trial: Any) -> float:
    trial.set_user_attr("workdir", str(workdir))  # first: a trial killed from here on is known to be this one's
    config = _base_config(job)
    config.progress = "false"
    before = _flat(config)
    returned = space.fn(trial, config)
    config = config if returned is None else returned
    if not isinstance(config, ml_collections.ConfigDict):
      raise TypeError(f"space {space.name!r}: expected it to return the ml_collections.ConfigDict it was given, "
                      f"got {type(config).__name__}")
    try:
      config_lib.check(config)
    except (ValueError, TypeError, KeyError) as e:
      raise type(e)(f"space {space.name!r} made an invalid config in trial {trial.number} "
                    f"(values {trial.params}): {e}") from None
    after = _flat(config)
    changes = {k: v for k, v in after.items() if before.get(k, "<absent>") != v and k != "progress"}
    run_dir = workdir / TRIALS / f"{trial.number:04d}"
    trial.set_user_attr("run", str(run_dir))
    trial.set_user_attr("changes", changes)
    pruning = _Pruning(trial, job.metric)
    start = time.perf_counter()
    try:
      summary = experiment.train_and_evaluate(config, run_dir, callbacks=[pruning])
    except FloatingPointError as e:  # diverged: a result of these values, recorded; the study goes on
      trial.set_user_attr("failure", str(e).splitlines()[0])
      print(f"jdl tune: trial {trial.number} failed: {str(e).splitlines()[0]}", file=sys.stderr)
      raise
    seconds = time.perf_counter() - start
    history = summary.get("history") or []
    trial.set_user_attr("epochs", len(history))
    trial.set_user_attr("seconds", round(seconds, 2))
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
    if pruning.pruned_at is not None and len(history) < config.epochs:  # pruned after the last epoch: complete
      print(f"jdl tune: trial {trial.number} pruned after epoch {pruning.pruned_at} ({shown})", flush=True)
      raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_at}")
    value = float(history[-1][job.metric]) if history and job.metric in history[-1] else float("nan")
    if not math.isfinite(value):
      trial.set_user_attr("failure", f"{job.metric} is {value}")
      raise FloatingPointError(f"trial {trial.number}: {job.metric} is {value}")
    print(f"jdl tune: trial {trial.number}: {job.metric}={value:.4f} ({shown}) in {seconds:.1f} s", flush=True)
    return value

  return objective


def work(job: Job, worker: int = 0) -> None:
  """Runs trials of the study until it holds ``job.trials`` (the body of each ``--jobs`` process)."""
  optuna = _optuna()
  space = load_space(job.space)
  base = _base_config(job)
  grid = space.grid_for(base) if job.sampler == "grid" else None
  study = optuna.load_study(study_name=job.study_name, storage=open_storage(job.storage))
  study.sampler = make_sampler(job.sampler, seed=sampler_seed(job.seed, worker, study), grid=grid)
  study.pruner = make_pruner(job.pruner, epochs=base.epochs)
  _run_trials(study, _objective(job, space), job.trials, grid)


def _run_trials(study: Any, objective: Callable[[Any], float], trials: int,
                grid: Mapping[str, Sequence[Any]] | None) -> None:
  """One trial at a time until the study counts ``trials`` (or the grid is covered); divergence is a result."""
  while _counted(study) < trials and not (grid is not None and _grid_done(study, grid)):
    study.optimize(objective, n_trials=1, catch=(FloatingPointError,), gc_after_trial=False)


def sampler_seed(seed: int, worker: int, study: Any) -> int:
  """The seed of a worker's sampler: ``--seed``, the worker's number and the trials the study already holds,
  so a resumed search (whose random start would otherwise begin again from the first draw) and each worker
  draw new points."""
  return int(seed) + 100_003 * int(worker) + len(study.get_trials(deepcopy=False))


def _grid_done(study: Any, grid: Mapping[str, Sequence[Any]]) -> bool:
  states = _optuna().trial.TrialState
  points = math.prod(len(v) for v in grid.values())
  return len([t for t in study.get_trials(deepcopy=False) if t.state != states.FAIL]) >= points


def _fail_interrupted(study: Any, workdir: pathlib.Path, *, local: bool) -> int:
  """Marks this workdir's trials still 'running' as failed (interrupted): the workdir's lock is ours, so
  the process that ran them is gone. In the workdir's own database (``local``) every running trial is ours,
  those killed before they recorded their workdir included."""
  states = _optuna().trial.TrialState
  n = 0
  for t in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
    if t.user_attrs.get("workdir") == str(workdir) or (local and "workdir" not in t.user_attrs):
      study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)  # pylint: disable=protected-access
      study._storage.set_trial_state_values(t._trial_id, states.FAIL)  # pylint: disable=protected-access
      n += 1
  return n


def check_arguments(experiment: str, space: str | Callable[..., Any], *, trials: int, sampler: str = "tpe",
                    pruner: str = "median", metric: str = "eval_accuracy", jobs: int = 1,
                    overrides: Sequence[tuple[str, str]] = (), resume: bool = False, overwrite: bool = False
                    ) -> tuple[Space, ml_collections.ConfigDict]:
  """What ``tune`` checks before it opens the study: the numbers and words of its options, the space
  (loaded), the experiment's config with the overrides (checked as ``jdl train`` checks it) and the metric.

  Returns:
    The loaded space and the experiment's config with the overrides applied.

  Raises:
    ValueError, TypeError, FileNotFoundError: naming the argument at fault.
  """
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top

  if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
    raise ValueError(f"--trials: expected a whole number >= 1, got {trials!r}")
  if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
    raise ValueError(f"--jobs: expected a whole number >= 1, got {jobs!r}")
  if resume and overwrite:
    raise ValueError("--resume and --overwrite: choose one")
  if sampler not in SAMPLERS:
    raise ValueError(f"--sampler: expected one of {', '.join(SAMPLERS)}, got {sampler!r}")
  loaded = load_space(space)
  if callable(space) and jobs > 1:
    raise ValueError("jobs > 1: worker processes load the space by name; give it as FILE.py[:FUNCTION]")
  base = config_lib.load_experiment(experiment)
  config_lib.apply_overrides(base, tuple((str(k), str(v)) for k, v in overrides))
  config_lib.check(base)
  check_metric(base, metric)
  make_pruner(pruner, epochs=base.epochs)
  return loaded, base


def tune(experiment: str, space: str | Callable[..., Any], *, trials: int, workdir: str | os.PathLike[str] | None = None,
         storage: str | None = None, study_name: str | None = None, sampler: str = "tpe", pruner: str = "median",
         metric: str = "eval_accuracy", jobs: int = 1, seed: int = 0,
         overrides: Sequence[tuple[str, str]] = (), resume: bool = False, overwrite: bool = False) -> Any:
  """Runs (or resumes) a study; returns the ``optuna.Study``. See the module's docstring and ``docs/tune.md``.

  Args:
    experiment: an experiment name or file, as for ``jdl train``.
    space: a shipped space's name, ``FILE.py[:FUNCTION]``, or a function ``space(trial, config) -> config``
      (a function works with ``jobs=1`` only: worker processes load the space by name).
    trials: the study's total number of trials (a resumed study runs the ones it lacks).
    workdir: where the trials' runs, the tables and figures go (default ``runs/tune/<experiment>``).
    storage: an SQLAlchemy URL; default SQLite in ``workdir/study.db``.
    study_name: default the experiment's name.
    sampler: ``tpe``, ``random``, ``grid`` (the space's grid) or ``qmc``.
    pruner: ``median[:STARTUP[:WARMUP]]``, ``halving``, ``hyperband`` or ``none``.
    metric: the objective, a per-epoch ``eval_*`` figure; maximised or minimised as its name says.
    jobs: worker processes on this machine.
    seed: the sampler's seed (worker ``i`` uses ``seed + i``).
    overrides: ``(key, text)`` config overrides applied to every trial before the space.
    resume: continue the study in ``workdir`` / ``storage``.
    overwrite: delete the study (and ``workdir``'s trials) first.
  """
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top
  from jdl.train import callbacks as callbacks_lib  # pylint: disable=g-import-not-at-top
  from jdl.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  optuna = _optuna()
  overrides = tuple((str(k), str(v)) for k, v in overrides)
  loaded, base = check_arguments(experiment, space, trials=trials, sampler=sampler, pruner=pruner, metric=metric,
                                 jobs=jobs, overrides=overrides, resume=resume, overwrite=overwrite)
  grid = loaded.grid_for(base) if sampler == "grid" else None
  direction = "maximize" if callbacks_lib.resolve_mode(metric, "auto") == "max" else "minimize"

  workdir = pathlib.Path(workdir or pathlib.Path("runs") / "tune" / base.name).resolve()
  study_name = study_name or base.name
  settings = {"experiment": str(config_lib.find_experiment(experiment)) if experiment.endswith(".py") else experiment,
              "space": loaded.name, "overrides": [list(o) for o in overrides], "metric": metric}
  with workdir_lib.RunLock(workdir):
    recorded = workdir_lib.read_json(workdir / TUNE_JSON, "the study's settings")
    if storage is None:
      storage = (recorded or {}).get("storage") or f"sqlite:///{workdir / STUDY_DB}"
    rdb = open_storage(storage)
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(rdb, include_best_trial=False)}
    if study_name in existing and not (resume or overwrite):
      raise FileExistsError(f"the study {study_name!r} in {storage} already has {existing[study_name].n_trials} "
                            "trials; --resume continues it, --overwrite deletes it and starts anew")
    if resume and study_name not in existing:
      raise ValueError(f"--resume: no study {study_name!r} in {storage} to continue; start it without --resume")
    if overwrite:
      if study_name in existing:
        optuna.delete_study(study_name=study_name, storage=rdb)
      shutil.rmtree(workdir / TRIALS, ignore_errors=True)
      for name in (TABLE, BEST, "history.png", "importances.png", "intermediate.png"):
        (workdir / name).unlink(missing_ok=True)
    if resume:
      study = optuna.load_study(study_name=study_name, storage=rdb)
    else:
      study = optuna.create_study(study_name=study_name, storage=rdb, direction=direction)
    if resume:
      stored = {k: study.user_attrs.get(k) for k in settings}
      changed = [f"{k}: {stored[k]!r} (stored) vs {settings[k]!r}" for k in settings if stored[k] != settings[k]]
      if changed:
        raise ValueError("--resume: the study was started with other settings; " + "; ".join(changed)
                         + " (start a new study in another workdir, or --overwrite)")
      interrupted = _fail_interrupted(study, workdir, local=storage == f"sqlite:///{workdir / STUDY_DB}")
      done = _counted(study)
      print(f"jdl tune: resuming the study {study_name!r}: {done} of {trials} trials counted"
            + (f", {interrupted} cut short (failed, to be drawn again)" if interrupted else ""), flush=True)
    else:
      for key, value in settings.items():
        study.set_user_attr(key, value)
    workdir_lib.write_json(workdir / TUNE_JSON, {**settings, "storage": storage, "study_name": study_name,
                                                 "direction": direction})
    job = Job(experiment=settings["experiment"], space=loaded.name, overrides=overrides, metric=metric, trials=trials,
              workdir=str(workdir), storage=storage, study_name=study_name, sampler=sampler, pruner=pruner, seed=seed)
    try:
      if jobs == 1:
        study.sampler = make_sampler(sampler, seed=sampler_seed(seed, 0, study), grid=grid)
        study.pruner = make_pruner(pruner, epochs=base.epochs)
        _run_trials(study, _objective(job, loaded), trials, grid)
      else:
        _run_workers(job, jobs)
    finally:
      write_report(study, workdir, job)
  return study


def _run_workers(job: Job, jobs: int) -> None:
  """``jobs`` processes on the study; XLA in each keeps to one thread of the CPU's cores."""
  context = multiprocessing.get_context("spawn")  # JAX's threads do not survive fork
  saved = os.environ.get("XLA_FLAGS")
  os.environ["XLA_FLAGS"] = f"{saved or ''} --xla_cpu_multi_thread_eigen=false".strip()
  try:
    processes = [context.Process(target=work, args=(job, i), daemon=False) for i in range(jobs)]
    for p in processes:
      p.start()
  finally:
    if saved is None:
      os.environ.pop("XLA_FLAGS", None)
    else:
      os.environ["XLA_FLAGS"] = saved
  failed = []
  for i, p in enumerate(processes):
    p.join()
    if p.exitcode:
      failed.append(f"worker {i} exited with status {p.exitcode}")
  if failed:
    raise RuntimeError("; ".join(failed) + " (its error is printed above)")


def _fmt(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value) if value != "" else "''"


def table(study: Any, metric: str) -> str:
  """The study's trials as a Markdown table, best trial first in bold."""
  states = _optuna().trial.TrialState
  trials = study.get_trials(deepcopy=False)
  names = sorted({k for t in trials for k in t.params})
  best = _best(study)
  rows = ["| " + " | ".join(["trial", "state", metric, "epochs", "seconds", *names, "run"]) + " |",
          "|---:|---|---:|---:|---:|" + "---|" * len(names) + "---|"]
  for t in trials:
    state = t.state.name.lower()
    if t.state == states.FAIL:
      state = "failed: " + (t.user_attrs.get("failure") or ("interrupted" if t.user_attrs.get("interrupted")
                                                            else "error"))
    value = f"{t.value:.4f}" if t.value is not None else (
        f"({t.intermediate_values[max(t.intermediate_values)]:.4f})" if t.intermediate_values else "")
    cells = [str(t.number), state, value, str(t.user_attrs.get("epochs", "")), str(t.user_attrs.get("seconds", "")),
             *(_fmt(t.params[n]) if n in t.params else "" for n in names),
             os.path.relpath(t.user_attrs["run"], t.user_attrs["workdir"]) if "run" in t.user_attrs else ""]
    if best is not None and t.number == best.number:
      cells = [f"**{c}**" if c else c for c in cells]
    rows.append("| " + " | ".join(cells) + " |")
  return "\n".join(rows) + "\n"


def _best(study: Any) -> Any:
  try:
    return study.best_trial
  except ValueError:  # no complete trial yet
    return None


def best_experiment_source(job: Job, trial: Any) -> str:
  """An experiment file that ``jdl train`` runs: the tuned experiment with the study's overrides and the best
  trial's values."""
  values = {k: v for k, v in job.overrides}
  changes = {k: repr(_tuples(v)) for k, v in trial.user_attrs.get("changes", {}).items()}
  overrides = {**values, **changes}
  lines = ",\n".join(f"    {k!r}: {v!r}" for k, v in overrides.items())
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top

  imports = tuple(config_lib.env_imports())  # the study's --import files: its models and data, by name
  return f'''"""The best trial ({trial.number}) of the study {job.study_name!r} (jdl tune): {job.metric} {trial.value:.4f}.

The experiment {job.experiment!r} with these overrides (the values are config literals, as --config.KEY=VALUE
takes them):

    jdl train {BEST}

Parameters: {", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())}.
"""

from jdl import config as config_lib

EXPERIMENT = {job.experiment!r}
IMPORTS = {imports!r}  # the study's --import files
OVERRIDES = {{
{lines}
}}


def get_config():
  config_lib.import_all(IMPORTS)
  config = config_lib.load_experiment(EXPERIMENT)
  with config.unlocked():
    config.imports = tuple(dict.fromkeys([*IMPORTS, *config.imports]))
  return config_lib.apply_overrides(config, list(OVERRIDES.items()))
'''


def _tuples(value: Any) -> Any:
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def write_report(study: Any, workdir: pathlib.Path, job: Job) -> dict[str, pathlib.Path]:
  """Writes ``trials.md``, the figures and ``best_experiment.py``; prints the table. Returns what was written."""
  from jdl.data._atomic import atomic_file  # pylint: disable=g-import-not-at-top

  if not study.get_trials(deepcopy=False):
    return {}
  written = {}
  text = table(study, job.metric)
  with atomic_file(workdir / TABLE) as f:
    f.write(text.encode())
  written["table"] = workdir / TABLE
  print(text, end="", flush=True)
  best = _best(study)
  if best is not None:
    with atomic_file(workdir / BEST) as f:
      f.write(best_experiment_source(job, best).encode())
    written["best"] = workdir / BEST
    print(f"jdl tune: best trial {best.number}: {job.metric}={best.value:.4f}; its config: {workdir / BEST}")
  written.update(plots(study, workdir))
  return written


def plots(study: Any, workdir: pathlib.Path) -> dict[str, pathlib.Path]:
  """Optuna's figures, as PNG: the optimisation history, the parameters' importances (fANOVA; two or more
  complete trials with a parameter that varies) and the per-epoch values of every trial (pruning shows there)."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  optuna = _optuna()
  vis = optuna.visualization.matplotlib
  complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
  varying = {k for k in {k for t in complete for k in t.params} if len({repr(t.params.get(k)) for t in complete}) > 1}
  figures = {"history": lambda: vis.plot_optimization_history(study)}
  if len(complete) >= 2 and varying:
    figures["importances"] = lambda: vis.plot_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
  if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
    figures["intermediate"] = lambda: vis.plot_intermediate_values(study)
  written = {}
  for name, draw in figures.items():
    if name == "history" and not complete:
      continue
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      try:
        ax = draw()
      except (RuntimeError, ValueError) as e:  # e.g. fANOVA when every complete trial scored the same
        print(f"jdl tune: no {name}.png: {str(e).splitlines()[0] if str(e) else type(e).__name__}", flush=True)
        plt.close("all")
        continue
    figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
    figure.set_size_inches(7, 4.5)
    figure.tight_layout()
    path = workdir / f"{name}.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    written[name] = path
  return written


def read_settings(workdir: str | os.PathLike[str]) -> dict[str, Any] | None:
  """``tune.json`` of a study's workdir: the experiment, space, metric, storage and study name."""
  from jdl.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  return workdir_lib.read_json(pathlib.Path(workdir) / TUNE_JSON, "the study's settings")


__all__ = ["Space", "load_space", "tune", "work", "table", "plots", "write_report", "open_storage", "make_sampler",
           "make_pruner", "check_metric", "read_settings", "SAMPLERS", "PRUNERS"]
