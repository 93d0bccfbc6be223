"""Optimizer benchmarks: workloads, a tuning protocol, seeds in parallel, profiles and reports.

    import jdl.bench
    progress = jdl.bench.run_suite("smoke", "runs/bench-smoke")   # DIR/results.jsonl
    jdl.bench.write_report("runs/bench-smoke")                    # report.md, report.html

The pieces, each usable alone:

* ``workloads``: ``Workload`` (data + model + loss + target + budget),
  ``register_workload``, ``dataset_workload``, ``surface_workload``.
* ``search``: optimizers (``jdl.optim``'s or ``register_optimizer``), trials by
  ``grid`` or ``quasirandom`` search, and which hyperparameters trace.
* ``engine.train_runs``: many runs of one workload and optimizer as one
  vmapped, compiled program.
* ``suite``: suites and the protocol (tune K over a shared range, extend the
  edges, select what is scored, confirm with S seeds), resumable through
  ``records``.
* ``targets``: recorded targets (``jdl bench set-targets``).
* ``analysis``, ``report``: performance profiles, bootstrap intervals, paired
  tests, leave-one-out stability, tuning-budget curves, tables, plots.

See docs/benchmarks.md.
"""

from jdl.bench.analysis import (bootstrap_ci, leave_one_out, leaderboard, paired_test, performance_profiles,
                                profile_score, summaries)
from jdl.bench.engine import RunResult, RunSpec, train_runs
from jdl.bench.records import ResultStore, read_records, run_config, run_id
from jdl.bench.report import write_report
from jdl.bench.search import (BenchOptimizer, draw_trials, get_optimizer, list_optimizers, register_optimizer,
                              trace_plan)
from jdl.bench.suite import Suite, get_suite, list_suites, register_suite, run_pair, run_suite, select_best
from jdl.bench.targets import set_targets
from jdl.bench.workloads import (Problem, Surface, Workload, build, dataset_workload, get_workload, list_workloads,
                                 register_workload, surface_workload)

__all__ = [
    "BenchOptimizer",
    "Problem",
    "ResultStore",
    "RunResult",
    "RunSpec",
    "Suite",
    "Surface",
    "Workload",
    "bootstrap_ci",
    "build",
    "dataset_workload",
    "draw_trials",
    "get_optimizer",
    "get_suite",
    "get_workload",
    "leaderboard",
    "leave_one_out",
    "list_optimizers",
    "list_suites",
    "list_workloads",
    "paired_test",
    "performance_profiles",
    "profile_score",
    "read_records",
    "register_optimizer",
    "register_suite",
    "register_workload",
    "run_config",
    "run_id",
    "run_pair",
    "run_suite",
    "select_best",
    "set_targets",
    "summaries",
    "surface_workload",
    "trace_plan",
    "train_runs",
    "write_report",
]
