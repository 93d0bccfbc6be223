"""Sweeps on a cluster through submitit (optional: ``pip install 'submitit>=1.5'``).

One job per (workload, optimizer) pair that still misses runs. A job runs the
whole protocol of its pair (tune, select, confirm) and appends its records to
``DIR/shards/<workload>__<optimizer>.jsonl``; it sees the runs already in
``DIR/results.jsonl`` and skips them. The driver waits for the jobs and merges
the shards into ``DIR/results.jsonl`` (skipping run ids already there), also
at its start, so an interrupted sweep keeps whatever its jobs finished.

``cluster`` is submitit's: ``"slurm"``, ``"local"`` (subprocesses on this
machine, all started at once) or ``"debug"`` (in this process, one after
another).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jdl.bench import records as records_lib
from jdl.bench import search
from jdl.bench import suite as suite_lib

SHARDS_DIR = "shards"
SUBMITIT_VERSION = ">=1.5"


def load_user_file(path: str | os.PathLike[str]) -> None:
  """Imports a Python file (running its ``register_*`` calls); a file already imported is not run again.

  Raises:
    FileNotFoundError: no such file.
    ImportError: the file raised (the message shows its traceback).
  """
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top

  config_lib.import_user(os.fspath(path) if os.fspath(path).endswith(".py") else os.fspath(Path(path).resolve()))


def _shard_name(workload: str, optimizer: str) -> str:
  safe = lambda s: "".join(c if c.isalnum() or c in "-_." else "_" for c in s)  # noqa: E731
  return f"{safe(workload)}__{safe(optimizer)}.jsonl"


def merge_shards(store: records_lib.ResultStore) -> int:
  """Appends the records of ``DIR/shards/*.jsonl`` not yet in ``store``; returns how many."""
  shards = store.directory / SHARDS_DIR
  before = store.appended
  if shards.is_dir():
    for path in sorted(shards.glob("*.jsonl")):
      for record in records_lib.read_records(path):
        store.append(record)
  return store.appended - before


def pair_complete(suite: suite_lib.Suite, workload: str, optimizer: str,
                  records: Sequence[Mapping[str, Any]]) -> bool:
  """Whether every run of the pair's protocol (edge extensions and confirmation included) is among ``records``."""
  plan = suite_lib.plan_pair(suite, suite.workload(workload), suite.optimizer(optimizer),
                             {r["run_id"]: r for r in records})
  return plan.missing is None


def pair_job(suite: suite_lib.Suite, workload: str, optimizer: str, out: str, imports: Sequence[str] = ()) -> int:
  """One job: the protocol of one pair, into its shard. Returns the number of records written."""
  from jdl.train import experiment  # pylint: disable=g-import-not-at-top

  experiment.enable_compilation_cache()  # jobs of one sweep share their compiled programs
  for path in imports:
    load_user_file(path)
  known = records_lib.read_records(Path(out) / records_lib.RESULTS_FILE)
  with records_lib.open_store(Path(out) / SHARDS_DIR, _shard_name(workload, optimizer)) as shard:
    for r in known:
      if r["run_id"] not in shard.done:
        shard.records.append(r)
        shard.done.add(r["run_id"])
    progress = suite_lib.Progress()
    suite_lib.run_pair(suite, suite.workload(workload), optimizer, shard, progress,
                       errors_path=Path(out) / records_lib.ERRORS_FILE)
    return progress.appended


def run_suite_submitit(suite: suite_lib.Suite, out: str | os.PathLike[str], *, cluster: str | None = None,
                       imports: Sequence[str] = (), parameters: Mapping[str, Any] | None = None,
                       log: Callable[[str], None] = print, argv: Sequence[str] | None = None) -> suite_lib.Progress:
  """Runs the pairs of ``suite`` that miss runs as submitit jobs; merges their records into ``out``.

  Args:
    suite: the suite.
    out: the results directory.
    cluster: submitit's cluster (``"slurm"``, ``"local"``, ``"debug"``; None:
      submitit detects it).
    imports: user files the jobs import first (their workloads, optimizers).
    parameters: ``executor.update_parameters`` arguments (``timeout_min``,
      ``slurm_partition``, ``gpus_per_node``, ``cpus_per_task``,
      ``slurm_array_parallelism`` ...).
    log: progress lines.
    argv: the command line, for the metadata.

  Returns:
    the ``Progress`` (records merged; pairs whose job failed count as failed
    groups).

  Raises:
    ValueError: submitit is not installed.
  """
  try:
    import submitit  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ValueError(f"executor 'submitit' needs the submitit package: pip install 'submitit{SUBMITIT_VERSION}'"
                     ) from None
  progress = suite_lib.Progress()
  imports = [str(Path(p).resolve()) for p in imports]
  with records_lib.open_store(out) as store:
    suite_lib.write_meta(store.directory, suite, argv)
    progress.appended += merge_shards(store)
    pending = [(w, o) for w in suite.workloads for o in suite.optimizers
               if not pair_complete(suite, w, o, store.records)]
    if pending:
      executor = submitit.AutoExecutor(folder=store.directory / "submitit", cluster=cluster)
      executor.update_parameters(**{"timeout_min": 60, "name": f"jdl-bench-{suite.name}", **dict(parameters or {})})
      with executor.batch():
        jobs = [executor.submit(pair_job, suite, w, o, str(store.directory), imports) for w, o in pending]
      log(f"submitted {len(jobs)} job(s) to {executor.cluster}: {', '.join(f'{w}/{o}' for w, o in pending)}")
      for (w, o), job in zip(pending, jobs):
        try:
          job.result()
        except Exception as e:  # pylint: disable=broad-except  # one failed job must not lose the others
          progress.failed_groups += 1
          log(f"{w} / {o}: job {job.job_id} failed: {type(e).__name__}: {str(e).strip().splitlines()[-1:]}")
      progress.appended += merge_shards(store)
  return progress
