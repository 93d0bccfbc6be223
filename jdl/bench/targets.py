"""Recorded validation targets: ``jdl bench set-targets``.

AlgoPerf sets each workload's target from tuned baselines rerun over many
seeds, not by hand. ``set_targets`` does the same with jdl's engine:

1. tune each baseline optimizer on each workload of a suite (the suite's
   search space and trials, selected on the final validation value: no target
   exists yet);
2. rerun the selected setting with ``seeds`` fresh seeds (1001, 1002, ...);
3. for every run, take the best validation value reached within the first
   ``fraction`` of the step budget; a baseline's figure is the median over its
   seeds, and the workload's target is the best baseline's figure, rounded to
   four significant digits the lenient way (``round_target``). A baseline
   whose pick is unresolved (on an edge of the rates tried) sets no target.

Scored runs get the whole budget, so the baseline that set a target reaches
it on about half of its seeds after ``fraction`` (default: half) of the
budget and has the rest to spare, as AlgoPerf's submissions get more time than
its target-setting runs needed.

Every run is stored in ``DIR/results.jsonl`` like a suite's (tuning runs are
shared with a suite run in the same directory: a run's id does not depend on
the target), and ``DIR/targets.json`` records the targets with the runs, seeds
and settings they came from. A suite uses it with ``Suite(targets=PATH)`` or
``jdl bench run --targets PATH``; reports cite it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

TARGETS_FILE = "targets.json"
FIRST_SEED = 1001


def load(source: str | os.PathLike[str]) -> dict[str, Any]:
  """A targets file: a path, or the name of one shipped in ``jdl/bench/recorded_targets/`` (e.g. ``"small"``).

  Raises:
    FileNotFoundError: neither a file nor a shipped name.
    ValueError: not a targets file.
  """
  path = Path(source)
  if path.is_dir():
    path = path / TARGETS_FILE
  if not path.is_file():
    shipped_dir = resources.files("jdl.bench").joinpath("recorded_targets")
    shipped = shipped_dir.joinpath(f"{source}.json") if isinstance(source, str) and "/" not in source else None
    if shipped is None or not shipped.is_file():
      known = sorted(p.name[:-5] for p in shipped_dir.iterdir() if p.name.endswith(".json")) \
          if shipped_dir.is_dir() else []
      raise FileNotFoundError(f"targets: {str(source)!r} is neither a targets.json file nor a shipped name "
                              f"({', '.join(known) or 'none'})")
    text, where = shipped.read_text(), f"jdl/bench/recorded_targets/{source}.json"
  else:
    text, where = path.read_text(), str(path)
  try:
    data = json.loads(text)
  except ValueError as e:
    raise ValueError(f"targets: {where} is not JSON ({e})") from e
  if not isinstance(data, dict) or not isinstance(data.get("workloads"), dict) or not all(
      isinstance(v, dict) and isinstance(v.get("target"), (int, float)) for v in data["workloads"].values()):
    raise ValueError(f"targets: {where} is not a targets file (expected {{'workloads': {{NAME: {{'target': "
                     "number, ...}}}}}} as `jdl bench set-targets` writes)")
  data["source"] = where
  return data


def round_target(x: float, mode: str) -> float:
  """``x`` to four significant digits, rounded the lenient way (down for ``"max"``, up for ``"min"``).

  A target of 111/114 = 0.973684 becomes 0.9736, not 0.9737, which no run on
  114 validation examples could reach with 111 right.
  """
  nearest = float(f"{x:.4g}")
  if nearest == 0 or not math.isfinite(nearest):
    return nearest
  if (mode == "max" and nearest > x) or (mode != "max" and nearest < x):  # nearest is stricter: one unit back
    unit = 10.0 ** (math.floor(math.log10(abs(nearest))) - 3)
    nearest = float(f"{nearest - unit if mode == 'max' else nearest + unit:.4g}")
  return nearest


def best_within(record: dict[str, Any], fraction: float) -> float | None:
  """The best validation value of a run among its evaluations at steps ≤ ``fraction`` of its budget."""
  curves = record.get("curves") or {}
  limit = fraction * record["workload_spec"]["steps"]
  values = [v for step, v in zip(curves.get("step", []), curves.get(f"valid_{record['metric']}", []))
            if step <= limit + 1e-9 and v is not None and math.isfinite(v)]
  if not values:
    return None
  return max(values) if record["mode"] == "max" else min(values)


def set_targets(suite: Any, out: str | os.PathLike[str], *, baselines: Sequence[str], seeds: int = 20,
                fraction: float = 0.5, log: Callable[[str], None] = print,
                argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the target-setting protocol for ``suite``'s workloads; writes and returns ``out/targets.json``.

  Args:
    suite: a ``Suite`` (its workloads, search space, trials and edge
      extension are used; its optimizers are replaced by ``baselines``).
    out: the results directory (resumable, like a suite's).
    baselines: the optimizers whose tuned runs set the targets.
    seeds: reruns of each baseline's selected setting.
    fraction: the share of the step budget within which the best validation
      value counts.
    log: progress lines.
    argv: the command line, recorded.
  """
  from jdl.bench import records as records_lib  # pylint: disable=g-import-not-at-top
  from jdl.bench import suite as suite_lib  # pylint: disable=g-import-not-at-top

  if isinstance(baselines, str) or not baselines or not all(isinstance(b, str) for b in baselines):
    raise TypeError(f"baselines: expected a non-empty list of optimizer names, got {baselines!r}")
  if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 2:
    raise ValueError(f"seeds: expected an integer >= 2, got {seeds!r}")
  if not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
    raise ValueError(f"fraction: expected a number in (0, 1], got {fraction!r}")
  setting = dataclasses.replace(suite, optimizers=tuple(baselines), selection="final_valid", seeds=seeds,
                                final_seed_start=FIRST_SEED, targets=None)
  for name in setting.optimizers:
    setting.optimizer(name)  # unknown names fail before any work
  progress = suite_lib.Progress()
  result: dict[str, Any] = {}
  with records_lib.open_store(out) as store:
    for name in setting.workloads:
      workload = setting.workload(name)
      per: dict[str, Any] = {}
      for opt in setting.optimizers:
        plan = suite_lib.run_pair(setting, workload, opt, store, progress, log=log, final_role=suite_lib.ROLE_TARGET)
        if plan.missing is not None or plan.best is None or plan.unresolved:
          note = ("failed" if plan.missing is not None else "every trial diverged" if plan.best is None else
                  "its pick is still on an edge of the rates tried")
          per[opt] = {"median_best": None, "note": note}
          continue
        by_id = {r["run_id"]: r for r in store.records}
        runs = [by_id[records_lib.run_id(records_lib.run_config(workload.spec(), opt, plan.best["hparams"], s))]
                for s in setting.final_seeds()]
        values = [best_within(r, fraction) for r in runs]
        finite = [v for v in values if v is not None]
        per[opt] = {"hparams": dict(plan.best["hparams"]), "seeds": setting.final_seeds(), "values": values,
                    "median_best": float(np.median(finite)) if len(finite) * 2 > len(values) else None,
                    "run_ids": [r["run_id"] for r in runs]}
      ok = {o: v for o, v in per.items() if v["median_best"] is not None}
      if not ok:
        log(f"{name}: no baseline gave a target; the workload keeps its own ({workload.target})")
        continue
      sign = -1.0 if workload.mode == "max" else 1.0  # exact ties go to the first baseline named
      best = min(ok, key=lambda o: (sign * ok[o]["median_best"], list(baselines).index(o)))
      result[name] = {"target": round_target(ok[best]["median_best"], workload.mode), "from": best, "mode": workload.mode,
                      "metric": workload.metric, "previous": workload.target, "baselines": per}
      log(f"{name}: target {result[name]['target']} ({workload.metric}, from {best}; was {workload.target})")
  data = {"suite": suite.name, "baselines": list(baselines), "seeds": seeds, "first_seed": FIRST_SEED,
          "fraction": fraction, "trials": suite.trials, "search": suite.search,
          "shared_space": dict(suite.shared_space or {}),
          "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "argv": list(argv) if argv is not None else None,
          "results": str(Path(out) / records_lib.RESULTS_FILE) + " (the reruns have role 'target')",
          "environment": suite_lib.environment(), "workloads": result}
  path = Path(out) / TARGETS_FILE
  tmp = path.with_suffix(".json.tmp")
  tmp.write_text(json.dumps(data, indent=1))
  os.replace(tmp, path)
  return data
