"""Seeds in parallel: 8 seeds of the MNIST-1D MLP as one vmapped program vs one after another.

Both sides run jdl.bench's engine on the ``mnist1d_mlp`` workload (MLP
40-100-100-10, batch 100, Adam): the same per-run programs, compiled once,
with (``vmap=True``, one program for all seeds) and without the run axis
(``vmap=False``, the seeds one after another). Each side's training time sums
its compiled chunks (``jax.block_until_ready`` after each), evaluation and
compilation excluded; compile time is reported apart. The curves (training
loss, validation and test loss and accuracy at every evaluation) are compared
with ``rtol``.

    python benchmarks/seeds_vmap.py [--json FILE] [--workload mnist1d_mlp] [--seeds 8] [--steps N] [--rounds 3]

Writes ``speedup`` (sequential training time / vmapped training time) and
``curves_agree``; run it on a quiet machine (other processes skew both sides).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

WORKLOAD = "mnist1d_mlp"
OPTIMIZER, LEARNING_RATE = "adam", 1e-3


def machine() -> dict:
  import jax

  cpu = ""
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
  except OSError:
    pass
  return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
          "jax": jax.__version__, "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
          "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def curves_of(results) -> dict[str, np.ndarray]:
  keys = [k for k in results[0].curves if k not in ("step", "seconds")]
  return {k: np.asarray([[np.nan if v is None else v for v in r.curves[k]] for r in results], dtype=float)
          for k in keys}


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray], steps: list[int], rtol: float) -> dict:
  """Max relative difference per curve, and the first evaluation step where a curve leaves ``rtol``."""
  out, first_bad = {}, None
  for k in a:
    x, y = a[k], b[k]
    with np.errstate(all="ignore"):
      rel = np.abs(x - y) / np.maximum(np.abs(y), 1e-12)
    rel = np.where(np.isnan(x) & np.isnan(y), 0.0, rel)
    out[k] = float(np.nanmax(rel)) if rel.size else 0.0
    bad = np.flatnonzero((rel > rtol).any(axis=0))
    if bad.size:
      step = steps[int(bad[0])]
      first_bad = step if first_bad is None else min(first_bad, step)
  return {"max_rel_diff": out, "first_step_beyond_rtol": first_bad}


def run(seeds: int, steps: int | None, rounds: int, rtol: float, workload: str = WORKLOAD) -> dict:
  from jdl.bench import engine, search, workloads

  wl = workloads.get_workload(workload)
  if steps is not None:
    wl = wl.with_budget(steps=steps)
  problem = workloads.build(wl)
  opt = search.get_optimizer(OPTIMIZER)
  runs = [engine.RunSpec({"learning_rate": LEARNING_RATE}, s) for s in range(seeds)]

  sides = {}
  for name, vmap in (("vmapped", True), ("sequential", False)):
    start = time.perf_counter()
    first = engine.train_runs(wl, problem, opt, runs, vmap=vmap, program_size=seeds)
    # One program for all seeds (its timing is shared), or one per run (compiled by the first).
    compile_s = first[0].timing["compile_seconds"] if vmap else sum(r.timing["compile_seconds"] for r in first)
    sides[name] = {"vmap": vmap, "compile_seconds": compile_s, "first_call_wall_seconds": time.perf_counter() - start,
                   "train_seconds_rounds": []}
  # The programs are compiled and cached now: the rounds time training alone, alternating the two sides so that
  # both see the same machine load.
  for _ in range(rounds):
    for side in sides.values():
      res = engine.train_runs(wl, problem, opt, runs, vmap=side["vmap"], program_size=seeds)
      side["results"] = res
      side["train_seconds_rounds"].append(res[0].timing["train_seconds"] if side["vmap"]
                                          else sum(r.timing["train_seconds"] for r in res))
  for side in sides.values():
    side["train_seconds"] = min(side["train_seconds_rounds"])
    del side["vmap"]

  a, b = curves_of(sides["vmapped"]["results"]), curves_of(sides["sequential"]["results"])
  steps_axis = sides["vmapped"]["results"][0].curves["step"]
  cmp = compare(a, b, steps_axis, rtol)
  agree = cmp["first_step_beyond_rtol"] is None
  seq, vm = sides["sequential"], sides["vmapped"]
  return {
      "workload": workload, "workload_spec": wl.spec(), "optimizer": OPTIMIZER, "learning_rate": LEARNING_RATE,
      "seeds": seeds, "steps": wl.steps, "rounds": rounds,
      "vmapped": {k: v for k, v in vm.items() if k != "results"},
      "sequential": {k: v for k, v in seq.items() if k != "results"},
      "speedup": seq["train_seconds"] / vm["train_seconds"],
      "speedup_with_compile": ((seq["train_seconds"] + seq["compile_seconds"])
                               / (vm["train_seconds"] + vm["compile_seconds"])),
      "rtol": rtol, "curves_agree": agree, **cmp,
      "final_valid_accuracy": {"vmapped": [r.summary["final_valid"] for r in vm["results"]],
                               "sequential": [r.summary["final_valid"] for r in seq["results"]]},
      "machine": machine(),
  }


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--json", help="write the figures to this file")
  p.add_argument("--workload", default=WORKLOAD, help=f"a jdl.bench workload (default: {WORKLOAD})")
  p.add_argument("--seeds", type=int, default=8)
  p.add_argument("--steps", type=int, help="training steps (default: the workload's budget, 3000)")
  p.add_argument("--rounds", type=int, default=3, help="timed repetitions per side, alternating (the best is kept)")
  p.add_argument("--rtol", type=float, default=1e-5)
  args = p.parse_args(argv)
  out = run(args.seeds, args.steps, args.rounds, args.rtol, args.workload)
  v, s = out["vmapped"], out["sequential"]
  print(f"{out['seeds']} seeds x {out['steps']} steps of {out['workload']} ({OPTIMIZER}, lr {LEARNING_RATE})")
  print(f"  vmapped:    train {v['train_seconds']:.2f}s  compile {v['compile_seconds']:.2f}s")
  print(f"  sequential: train {s['train_seconds']:.2f}s  compile {s['compile_seconds']:.2f}s")
  print(f"  speedup {out['speedup']:.2f}x (with compile {out['speedup_with_compile']:.2f}x); curves agree at rtol "
        f"{out['rtol']:g}: {out['curves_agree']} (first step beyond: {out['first_step_beyond_rtol']}; max rel diff "
        + ", ".join(f"{k} {v:.1e}" for k, v in out["max_rel_diff"].items()) + ")")
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
      f.write("\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
