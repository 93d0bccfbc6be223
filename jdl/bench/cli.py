"""``jdl bench run`` and ``jdl bench report``.

    jdl bench run --suite NAME --out DIR [--import FILE ...] [--workloads A,B] [--optimizers X,Y]
                  [--trials K] [--seeds S] [--search grid|quasirandom] [--tune all|learning_rate,...]
                  [--max-runs N] [--executor local|submitit [--cluster slurm|local|debug] ...]
    jdl bench run --list
    jdl bench report DIR [--import FILE ...]
    jdl bench set-targets --suite NAME --out DIR [--baselines adam,momentum] [--seeds 20] [--fraction 0.75]

Exit status of ``run``: 0 when the suite is complete, 3 when ``--max-runs``
stopped it (run the same command again to continue), 1 when some groups
failed (see DIR/errors.jsonl; they are retried by the next run).
"""

from __future__ import annotations

import argparse
import pathlib
import dataclasses
import sys
from collections.abc import Sequence

EXIT_INTERRUPTED = 3


def _names(text: str) -> tuple[str, ...]:
  return tuple(t.strip() for t in text.split(",") if t.strip())


def run_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="jdl bench run", description="Run (or resume) an optimizer benchmark suite.")
  p.add_argument("--suite", help="suite name (see --list)")
  p.add_argument("--out", help="results directory (DIR/results.jsonl); an existing one is resumed")
  p.add_argument("--import", dest="imports", action="append", default=[], metavar="FILE",
                 help="a Python file registering workloads, optimizers or suites (repeatable)")
  p.add_argument("--workloads", type=_names, help="comma-separated workloads replacing the suite's")
  p.add_argument("--optimizers", type=_names, help="comma-separated optimizers replacing the suite's")
  p.add_argument("--trials", type=int, help="tuning trials K per (workload, optimizer)")
  p.add_argument("--seeds", type=int, help="confirmation seeds S")
  p.add_argument("--search", choices=("grid", "quasirandom"), help="how trials are drawn")
  p.add_argument("--tune", help="tuned hyperparameters: 'all' or a comma-separated list with learning_rate")
  p.add_argument("--selection", choices=("time_to_target", "final_valid"),
                 help="what picks the setting to confirm (default: the suite's, time_to_target)")
  p.add_argument("--extend-edges", action=argparse.BooleanOptionalAction, default=None,
                 help="try more learning rates beyond an edge of the grid when the selected one is on it, or every "
                 "trial diverged (default: the suite's; on in the shipped suites but small_v1)")
  p.add_argument("--targets", help="a targets.json of `jdl bench set-targets` (or a shipped name) replacing the "
                 "workloads' targets; 'none' keeps the workloads' own")
  p.add_argument("--devices", type=int, help="local devices to shard each group's runs over (default: one; "
                 "e.g. the GPUs of one host, or CPU devices made with XLA_FLAGS)")
  p.add_argument("--max-runs", type=int, help="stop after writing this many runs (exit status 3)")
  p.add_argument("--executor", choices=("local", "submitit"), default="local",
                 help="local: this process; submitit: one job per (workload, optimizer)")
  p.add_argument("--cluster", choices=("slurm", "local", "debug"), help="submitit's cluster (default: detected)")
  p.add_argument("--timeout-min", type=int, default=60, help="submitit job time limit")
  p.add_argument("--partition", help="SLURM partition")
  p.add_argument("--gpus-per-node", type=int, help="SLURM GPUs per job")
  p.add_argument("--cpus-per-task", type=int, help="SLURM CPUs per job")
  p.add_argument("--no-compilation-cache", dest="compilation_cache", action="store_false",
                 help="compile every program afresh (default: JAX's persistent cache in $JDL_CACHE_DIR, else "
                      "~/.cache/jdl/xla, as jdl train uses: a rerun or a resumed suite loads its programs)")
  p.add_argument("--list", action="store_true", help="list suites, workloads and optimizers, then exit")
  p.add_argument("--quiet", action="store_true", help="no progress lines")
  return p


def _suite_from_args(args: argparse.Namespace):
  from jdl.bench import suite as suite_lib  # pylint: disable=g-import-not-at-top

  suite = suite_lib.get_suite(args.suite)
  changes = {}
  if args.workloads:
    changes["workloads"] = args.workloads
    changes["budgets"] = {k: v for k, v in suite.budgets.items() if k in args.workloads}
  if args.optimizers:  # the suite's search spaces of the optimizers kept stay; the others go with them
    changes["optimizers"] = args.optimizers
    changes["search_spaces"] = {k: v for k, v in suite.search_spaces.items() if k in args.optimizers}
  for arg in ("trials", "seeds", "search", "selection", "extend_edges"):
    if getattr(args, arg, None) is not None:
      changes[arg] = getattr(args, arg)
  if getattr(args, "targets", None) is not None:
    changes["targets"] = None if args.targets == "none" else args.targets
  if args.tune is not None:
    changes["tune"] = None if args.tune.strip() == "all" else _names(args.tune)
  return dataclasses.replace(suite, **changes) if changes else suite


def run_main(argv: Sequence[str]) -> int:
  """``jdl bench run``; returns the exit status."""
  args = run_parser().parse_args(list(argv))
  from jdl.bench import cluster, records, search  # pylint: disable=g-import-not-at-top
  from jdl.bench import suite as suite_lib  # pylint: disable=g-import-not-at-top
  from jdl.bench import workloads  # pylint: disable=g-import-not-at-top

  for path in args.imports:
    cluster.load_user_file(path)
  if args.list:
    print("suites:")
    for name in suite_lib.list_suites():
      s = suite_lib.get_suite(name)
      print(f"  {name}: {s.description}")
    print("workloads:")
    for name in workloads.list_workloads():
      print(f"  {name}: {workloads.get_workload(name).description}")
    print("optimizers: " + ", ".join(search.list_optimizers()))
    return 0
  if not args.suite or not args.out:
    raise ValueError("jdl bench run needs --suite NAME and --out DIR (or --list)")
  from jdl.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  if (pathlib.Path(args.out) / workdir_lib.CONFIG).is_file():
    raise ValueError(f"--out: {args.out} is the directory of a `jdl train` run (it holds {workdir_lib.CONFIG}); "
                     "give the benchmark a directory of its own")
  suite = _suite_from_args(args)
  if args.compilation_cache:
    from jdl.train import experiment  # pylint: disable=g-import-not-at-top

    experiment.enable_compilation_cache()
  log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
  argv_full = ["jdl", "bench", "run", *argv]
  if args.executor == "submitit":
    if args.max_runs is not None:
      raise ValueError("--max-runs applies to --executor local only")
    if args.devices is not None:
      raise ValueError("--devices applies to --executor local only (a submitit job uses its own devices)")
    params = {"timeout_min": args.timeout_min}
    for arg, key in (("partition", "slurm_partition"), ("gpus_per_node", "gpus_per_node"),
                     ("cpus_per_task", "cpus_per_task")):
      if getattr(args, arg) is not None:
        params[key] = getattr(args, arg)
    progress = cluster.run_suite_submitit(suite, args.out, cluster=args.cluster, imports=args.imports,
                                          parameters=params, log=log, argv=argv_full)
  else:
    progress = suite_lib.run_suite(suite, args.out, max_runs=args.max_runs, log=log, argv=argv_full,
                                   devices=args.devices)
  print(f"{args.out}/{records.RESULTS_FILE}: {progress.appended} run(s) written, {progress.skipped} already there"
        + (f", {progress.failed_groups} group(s) failed (see {args.out}/{records.ERRORS_FILE})"
           if progress.failed_groups else ""))
  if progress.interrupted:
    print(f"stopped after --max-runs {args.max_runs}; run the same command again to continue")
    return EXIT_INTERRUPTED
  return 1 if progress.failed_groups else 0


def report_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="jdl bench report",
                              description="Write DIR/report.md and a self-contained DIR/report.html.")
  p.add_argument("dir", help="a results directory of `jdl bench run`")
  p.add_argument("--import", dest="imports", action="append", default=[], metavar="FILE",
                 help="a Python file registering workloads (for the 2-D contours of your own functions)")
  return p


def report_main(argv: Sequence[str]) -> int:
  """``jdl bench report``; returns the exit status."""
  args = report_parser().parse_args(list(argv))
  from jdl.bench import cluster, report  # pylint: disable=g-import-not-at-top

  for path in args.imports:
    cluster.load_user_file(path)
  md, html = report.write_report(args.dir)
  print(f"wrote {md} and {html}")
  return 0


def set_targets_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog="jdl bench set-targets",
      description="Tune the baseline optimizers on every workload of a suite, rerun their selected settings over "
      "many seeds and record each workload's target: the best baseline's median (over seeds) of the best "
      "validation value within the first FRACTION of the step budget. Writes DIR/targets.json; the runs go to "
      "DIR/results.jsonl (resumable).")
  p.add_argument("--suite", required=True, help="the suite whose workloads, search space and trials are used")
  p.add_argument("--out", required=True, help="results directory")
  p.add_argument("--baselines", type=_names, default=("adam", "momentum"),
                 help="comma-separated baseline optimizers (default: adam,momentum)")
  p.add_argument("--workloads", type=_names, help="comma-separated workloads replacing the suite's")
  p.add_argument("--seeds", type=int, default=20, help="reruns of each baseline's selected setting (default 20)")
  p.add_argument("--fraction", type=float, default=0.5,
                 help="share of the step budget within which a run's best validation value counts (default 0.5)")
  p.add_argument("--import", dest="imports", action="append", default=[], metavar="FILE",
                 help="a Python file registering workloads, optimizers or suites (repeatable)")
  p.add_argument("--quiet", action="store_true", help="no progress lines")
  return p


def set_targets_main(argv: Sequence[str]) -> int:
  """``jdl bench set-targets``; returns the exit status."""
  args = set_targets_parser().parse_args(list(argv))
  from jdl.bench import cluster  # pylint: disable=g-import-not-at-top
  from jdl.bench import suite as suite_lib  # pylint: disable=g-import-not-at-top
  from jdl.bench import targets as targets_lib  # pylint: disable=g-import-not-at-top
  from jdl.train import experiment  # pylint: disable=g-import-not-at-top

  for path in args.imports:
    cluster.load_user_file(path)
  suite = suite_lib.get_suite(args.suite)
  if args.workloads:
    suite = dataclasses.replace(suite, workloads=args.workloads,
                                budgets={k: v for k, v in suite.budgets.items() if k in args.workloads})
  experiment.enable_compilation_cache()
  log = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
  data = targets_lib.set_targets(suite, args.out, baselines=args.baselines, seeds=args.seeds,
                                 fraction=args.fraction, log=log,
                                 argv=["jdl", "bench", "set-targets", *argv])
  print(f"{args.out}/{targets_lib.TARGETS_FILE}: targets for {len(data['workloads'])} workload(s)")
  return 0


if __name__ == "__main__":
  sys.exit(run_main(sys.argv[1:]))
