"""From run records to comparisons: per-pair summaries, performance profiles, tables.

Definitions (also in docs/benchmarks.md):

* **Time to target** of a (workload, optimizer): the median over the S
  confirmation seeds of the steps (or training seconds) at the first
  evaluation whose validation metric meets the workload's target; infinite
  when fewer than half of the seeds reach it.
* **Performance profile** (AlgoPerf; Dolan and Moré 2002): with ``t[w, o]``
  that time and ``r[w, o] = t[w, o] / min_o' t[w, o']``, the profile of
  optimizer ``o`` is ``ρ_o(τ) = |{w : r[w, o] ≤ τ}| / |W|`` for ``1 ≤ τ ≤ 4``.
  Its **score** is the area under ``ρ_o`` on [1, 4], divided by 3 (1 = fastest
  everywhere, 0 = never reaches a target within 4× of the fastest).
* ``lr_at_edge``: the selected learning rate is the smallest or largest one
  tried; the search space should probably be wider.
* **Performance** (DeepOBS): the final test metric of the confirmation runs
  (mean ± std over seeds); **speed**: the time to target above;
  **tuneability**: the fraction of tuning trials whose validation metric
  reaches the target, and the spread (interquartile range) of the trials'
  final validation metric.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jdl.bench import records as records_lib

TAU_MAX = 4.0


def load(directory: str | Path) -> list[dict[str, Any]]:
  """The records of ``directory/results.jsonl`` (the last record wins for a repeated run id)."""
  by_id: dict[str, dict[str, Any]] = {}
  for r in records_lib.read_records(Path(directory) / records_lib.RESULTS_FILE):
    by_id[r["run_id"]] = r
  return list(by_id.values())


def group(records: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, list[Mapping[str, Any]]]]:
  """Records by ``(workload, optimizer)`` and role (``"tune"``, ``"final"``), in first-seen order."""
  out: dict[tuple[str, str], dict[str, list[Mapping[str, Any]]]] = {}
  for r in records:
    pair = out.setdefault((r["workload"], r["optimizer"]), {"tune": [], "final": []})
    pair.setdefault(r.get("role", "tune"), []).append(r)
  return out


def _median_or_inf(values: Sequence[float | None], n: int) -> float:
  """The median of the reached values, counting unreached as +inf; inf when fewer than half reached."""
  reached = sorted(v for v in values if v is not None)
  if n == 0 or len(reached) * 2 < n:
    return math.inf
  padded = reached + [math.inf] * (n - len(reached))
  return float(np.median(np.asarray(padded, dtype=float)))


def _stats(values: Sequence[float | None]) -> dict[str, float | None]:
  finite = [float(v) for v in values if v is not None and math.isfinite(v)]
  if not finite:
    return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
  return {"mean": statistics.fmean(finite), "std": statistics.pstdev(finite) if len(finite) > 1 else 0.0,
          "min": min(finite), "max": max(finite), "n": len(finite)}


def summarize_pair(tune: Sequence[Mapping[str, Any]], final: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """The comparison numbers of one (workload, optimizer) from its records."""
  any_record = (list(final) or list(tune))[0]
  mode, target = any_record["mode"], any_record["target"]
  trial_valid = [r["summary"]["final_valid"] for r in tune if r["status"] == "ok"]
  finite_trials = [v for v in trial_valid if v is not None]
  iqr = None
  if len(finite_trials) >= 2:
    q75, q25 = np.percentile(finite_trials, [75, 25])
    iqr = float(q75 - q25)
  reached_trials = sum(1 for r in tune if r["summary"].get("steps_to_target") is not None)
  n_final = len(final)
  lrs = [r["hparams"].get("learning_rate") for r in tune]
  chosen = final[0]["hparams"].get("learning_rate") if final else None
  at_edge = bool(len(set(lrs)) > 2 and chosen is not None and chosen in (min(lrs), max(lrs)))
  return {
      "workload": any_record["workload"], "optimizer": any_record["optimizer"], "metric": any_record["metric"],
      "mode": mode, "target": target,
      "trials": len(tune), "trials_diverged": sum(1 for r in tune if r["status"] != "ok"),
      "tuneability": reached_trials / len(tune) if tune else None, "trial_iqr": iqr,
      "best_hparams": dict(final[0]["hparams"]) if final else None, "lr_at_edge": at_edge,
      "seeds": n_final, "final_diverged": sum(1 for r in final if r["status"] != "ok"),
      "final_test": _stats([r["summary"]["final_test"] for r in final]),
      "best_test": _stats([r["summary"]["best_test"] for r in final]),
      "final_valid": _stats([r["summary"]["final_valid"] for r in final]),
      "reached": sum(1 for r in final if r["summary"].get("steps_to_target") is not None),
      "steps_to_target": _median_or_inf([r["summary"].get("steps_to_target") for r in final], n_final),
      "seconds_to_target": _median_or_inf([r["summary"].get("seconds_to_target") for r in final], n_final),
      "compile_seconds": sum(r["timing"].get("compile_seconds", 0.0) for r in (*tune, *final)),
  }


def summaries(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """``summarize_pair`` for every (workload, optimizer) present."""
  return [summarize_pair(roles.get("tune", []), roles.get("final", [])) for roles in group(records).values()]


def performance_profiles(times: Mapping[str, Mapping[str, float]], *, tau_max: float = TAU_MAX,
                         num: int = 301) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """AlgoPerf-style performance profiles.

  Args:
    times: ``times[workload][optimizer]`` = time to target (``inf`` when not
      reached). An optimizer missing from a workload counts as ``inf``.
    tau_max: the largest ratio shown.
    num: points on the τ axis.

  Returns:
    ``(taus, {optimizer: ρ(taus)})``.
  """
  optimizers = sorted({o for per in times.values() for o in per})
  taus = np.linspace(1.0, tau_max, num)
  if not times:
    return taus, {o: np.zeros_like(taus) for o in optimizers}
  ratios: dict[str, list[float]] = {o: [] for o in optimizers}
  for per in times.values():
    best = min(per.values(), default=math.inf)
    for o in optimizers:
      ratios[o].append(_ratio(per.get(o, math.inf), best))
  profiles = {o: np.asarray([np.mean(np.asarray(ratios[o]) <= tau) for tau in taus]) for o in optimizers}
  return taus, profiles


def _ratio(t: float, best: float) -> float:
  if not (math.isfinite(t) and math.isfinite(best)):
    return math.inf
  if best <= 0:
    return 1.0 if t <= 0 else math.inf
  return t / best


def profile_score(taus: np.ndarray, rho: np.ndarray) -> float:
  """Area under a profile on [1, τ_max], normalised to [0, 1]."""
  width = float(taus[-1] - taus[0])
  if width <= 0:
    return float(rho[0]) if len(rho) else 0.0
  area = float(np.sum((rho[1:] + rho[:-1]) * np.diff(taus)) / 2.0)
  return area / width


def times_table(pair_summaries: Sequence[Mapping[str, Any]],
                key: str = "steps_to_target") -> dict[str, dict[str, float]]:
  """``{workload: {optimizer: summary[key]}}``."""
  out: dict[str, dict[str, float]] = {}
  for s in pair_summaries:
    out.setdefault(s["workload"], {})[s["optimizer"]] = s[key]
  return out


def leaderboard(pair_summaries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """One row per optimizer, best first (by the steps-based profile score, then the seconds-based one).

  Columns: ``score_steps``, ``score_seconds`` (profile areas), ``targets``
  (workloads whose target the median seed reached), ``workloads``,
  ``mean_rank`` (of the mean final test metric, 1 = best, per workload),
  ``diverged_trials`` (fraction of tuning trials).
  """
  if not pair_summaries:
    return []
  taus, prof_steps = performance_profiles(times_table(pair_summaries, "steps_to_target"))
  _, prof_secs = performance_profiles(times_table(pair_summaries, "seconds_to_target"))
  by_workload: dict[str, list[Mapping[str, Any]]] = {}
  for s in pair_summaries:
    by_workload.setdefault(s["workload"], []).append(s)
  ranks: dict[str, list[float]] = {}
  for rows in by_workload.values():
    sign = -1.0 if rows[0]["mode"] == "max" else 1.0
    scored = [(sign * r["final_test"]["mean"] if r["final_test"]["mean"] is not None else math.inf, r["optimizer"])
              for r in rows]
    scored.sort()
    for rank, (_, o) in enumerate(scored, start=1):
      ranks.setdefault(o, []).append(float(rank))
  out = []
  for o in sorted(prof_steps):
    mine = [s for s in pair_summaries if s["optimizer"] == o]
    trials = sum(s["trials"] for s in mine)
    out.append({"optimizer": o, "score_steps": profile_score(taus, prof_steps[o]),
                "score_seconds": profile_score(taus, prof_secs[o]),
                "targets": sum(1 for s in mine if math.isfinite(s["steps_to_target"])), "workloads": len(mine),
                "mean_rank": statistics.fmean(ranks[o]) if ranks.get(o) else None,
                "diverged_trials": (sum(s["trials_diverged"] for s in mine) / trials) if trials else None})
  out.sort(key=lambda r: (-r["score_steps"], -r["score_seconds"], r["mean_rank"] or math.inf))
  return out
