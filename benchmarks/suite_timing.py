"""Wall time of whole `jdl` commands in two checkouts of jdl, alternating, in one sitting.

Compares an engine change with the code before it (the benchmark suites must not
get slower; small `jdl train` runs should get faster). Each command runs in a
fresh process with ``PYTHONPATH`` set to the checkout, ``--rounds`` times per
checkout, the checkouts alternating so that machine load hits both alike; the
median wall time is reported, with the ratio.

    git worktree add /tmp/before <rev>
    python benchmarks/suite_timing.py --checkout before=/tmp/before --checkout after=. \
        --rounds 3 --json benchmarks/results/suite_timing_cpu.json

Commands timed (each in a new temporary directory):

* ``smoke``: ``jdl bench run --suite smoke`` (96 runs: 4 optimizers × 3 tiny workloads);
* ``small_mnist1d_logreg``: ``jdl bench run --suite small_v1 --workloads mnist1d_logreg``
  (6 optimizers × 6 trials + 3 seeds);
* ``train_mnist1d_logreg``: ``jdl train mnist1d_logreg`` (6,000 Adam steps,
  an evaluation per epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "smoke": ["bench", "run", "--suite", "smoke", "--quiet", "--out", "{tmp}/out"],
    "small_mnist1d_logreg": ["bench", "run", "--suite", "small_v1", "--workloads", "mnist1d_logreg", "--quiet",
                             "--out", "{tmp}/out"],
    "train_mnist1d_logreg": ["train", "mnist1d_logreg", "--workdir", "{tmp}/run", "--config.progress=false",
                             "--config.plot=false"],
}


def _run(checkout: Path, argv: list[str], env: dict[str, str]) -> tuple[float, dict | None]:
  with tempfile.TemporaryDirectory() as tmp:
    cmd = [sys.executable, "-m", "jdl.cli", *[a.format(tmp=tmp) for a in argv]]
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=checkout, env={**env, "PYTHONPATH": str(checkout)}, capture_output=True,
                         text=True, check=False)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
      raise SystemExit(f"{checkout}: {' '.join(argv)} failed:\n{out.stderr[-3000:]}")
    summary = None
    if (Path(tmp) / "run" / "summary.json").exists():
      summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
    return seconds, summary


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--checkout", action="append", required=True, metavar="NAME=DIR",
                 help="a jdl checkout to time (give two)")
  p.add_argument("--commands", default=",".join(COMMANDS), help=f"comma-separated, from {', '.join(COMMANDS)}")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--cold-cache", action="store_true",
                 help="an empty persistent compilation cache for every command (default: the user's, as a "
                      "user's repeated commands find it)")
  p.add_argument("--json", help="write the figures here")
  args = p.parse_args(argv)
  checkouts = {}
  for item in args.checkout:
    name, _, path = item.partition("=")
    checkouts[name] = Path(path).resolve()
  commands = [c for c in args.commands.split(",") if c]
  env = dict(os.environ)
  env.setdefault("JAX_PLATFORMS", "cpu")
  # Data are prepared once, outside the timings.
  first = next(iter(checkouts.values()))
  for name in ("mnist1d", "digits", "breast_cancer", "diabetes"):
    subprocess.run([sys.executable, "-m", "jdl.cli", "data", "prepare", name], cwd=first,
                   env={**env, "PYTHONPATH": str(first)}, capture_output=True, check=True)
  results: dict[str, dict[str, list[float]]] = {c: {n: [] for n in checkouts} for c in commands}
  train_seconds: dict[str, dict[str, list[float]]] = {c: {n: [] for n in checkouts} for c in commands}
  for r in range(args.rounds):
    for command in commands:
      for name, path in checkouts.items():
        cache = tempfile.mkdtemp(prefix="jdl-xla-") if args.cold_cache else None
        seconds, summary = _run(path, COMMANDS[command], {**env, "JDL_CACHE_DIR": cache} if cache else env)
        if cache:
          shutil.rmtree(cache, ignore_errors=True)
        results[command][name].append(seconds)
        if summary is not None:
          train_seconds[command][name].append(summary["train_seconds"])
        print(f"round {r + 1} {command} {name}: {seconds:.2f} s", flush=True)
  names = list(checkouts)
  table = {}
  for command in commands:
    row = {name: statistics.median(results[command][name]) for name in names}
    row["ratio"] = row[names[1]] / row[names[0]] if len(names) == 2 else None
    if any(train_seconds[command].values()):
      row["train_seconds"] = {name: statistics.median(v) for name, v in train_seconds[command].items() if v}
    table[command] = row
    print(f"{command}: " + ", ".join(f"{n} {row[n]:.2f} s" for n in names)
          + (f", {names[1]}/{names[0]} = {row['ratio']:.2f}" if row["ratio"] is not None else ""))
  if args.json:
    payload = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                           "python": platform.python_version()},
               "rounds": args.rounds, "cold_cache": args.cold_cache, "checkouts": {n: str(p) for n, p in checkouts.items()},
               "median_wall_seconds": table, "all_wall_seconds": results}
    Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
