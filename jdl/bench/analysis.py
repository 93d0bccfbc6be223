"""From run records to comparisons: per-pair summaries, performance profiles, tables.

Definitions (also in docs/benchmarks.md):

* **Time to target** of a (workload, optimizer): the median over the S
  confirmation seeds of the steps (or training seconds) at the first
  evaluation whose validation metric meets the workload's target, a seed that
  never reaches it counting as infinite (so the time is finite only when more
  than half of the seeds reach it).
* **Performance profile** (AlgoPerf; Dolan and Moré 2002): with ``t[w, o]``
  that time and ``r[w, o] = t[w, o] / min_o' t[w, o']``, the profile of
  optimizer ``o`` is ``ρ_o(τ) = |{w : r[w, o] ≤ τ}| / |W|`` for ``1 ≤ τ ≤ 4``.
  Its **score** is the area under ``ρ_o`` on [1, 4], divided by 3 (1 = fastest
  everywhere, 0 = never reaches a target within 4× of the fastest).
* ``lr_at_edge``: the selected learning rate is the smallest or largest one
  tried (after any edge extensions); such a pair is *unresolved* and left off
  the leaderboard.
* **Performance** (DeepOBS): the final test metric of the confirmation runs
  (mean ± sample standard deviation over seeds, and a bootstrap 95% interval
  of the mean); **speed**: the time to target above (with a bootstrap
  interval of the median); **tuneability**: the fraction of the first draw of
  tuning trials (the shared range) whose validation metric reaches the
  target, and the spread (interquartile range) of their final validation
  metric.
* **Uncertainty**: percentile bootstrap intervals over the confirmation seeds
  (``bootstrap_ci``; seeds resampled together across the optimizers of a
  workload, since they share initialisation and data order), and exact
  paired sign-flip tests over the shared seeds (``paired_test``). A winner is
  marked only where the interval of its difference with the runner-up
  excludes zero.
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
BOOTSTRAP = 2000  # resamples
LEVEL = 0.95
MIN_SECONDS = 1.0  # a run training for less is too short to time on a shared machine: steps are its unit


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


def time_to_target(record: Mapping[str, Any], target: float | None = None,
                   mode: str | None = None) -> tuple[int | None, float | None]:
  """``(steps, seconds)`` at the first evaluation whose validation metric meets ``target``, or ``(None, None)``.

  Read from the record's curve, so any target applies to a stored run
  (default: the record's own target and mode).
  """
  target = record["target"] if target is None else target
  mode = record["mode"] if mode is None else mode
  curves = record.get("curves") or {}
  for i, v in enumerate(curves.get(f"valid_{record['metric']}", [])):
    if v is not None and math.isfinite(v) and (v >= target if mode == "max" else v <= target):
      return curves["step"][i], curves["seconds"][i]
  return None, None


def _median_or_inf(values: Sequence[float | None], n: int) -> float:
  """The median of the values, counting unreached (None) as +inf: finite only when more than half reached."""
  reached = sorted(v for v in values if v is not None)
  if n == 0 or len(reached) * 2 <= n:
    return math.inf
  padded = reached + [math.inf] * (n - len(reached))
  return float(np.median(np.asarray(padded, dtype=float)))


def _stats(values: Sequence[float | None], seed: int = 0) -> dict[str, Any]:
  """Mean, sample standard deviation, range and a bootstrap interval of the mean of the finite values."""
  finite = [float(v) for v in values if v is not None and math.isfinite(v)]
  if not finite:
    return {"mean": None, "std": None, "min": None, "max": None, "n": 0, "ci": None}
  return {"mean": statistics.fmean(finite), "std": statistics.stdev(finite) if len(finite) > 1 else 0.0,
          "min": min(finite), "max": max(finite), "n": len(finite),
          "ci": bootstrap_ci(finite, np.mean, seed=seed) if len(finite) > 1 else None}


def bootstrap_ci(values: Sequence[float], statistic: Any = np.median, *, resamples: int = BOOTSTRAP,
                 level: float = LEVEL, seed: int = 0) -> tuple[float, float]:
  """A percentile bootstrap interval of ``statistic(values, axis=1)`` (reproducible for a fixed ``seed``).

  ``values`` may hold ``inf`` (a seed that never reached a target): the
  median then behaves as the time to target does.
  """
  vals = np.asarray(values, dtype=float)
  if vals.ndim != 1 or not len(vals):
    raise ValueError(f"bootstrap_ci: expected a non-empty 1-D sequence, got shape {vals.shape}")
  idx = np.random.default_rng(seed).integers(0, len(vals), (resamples, len(vals)))
  stats = np.asarray(statistic(vals[idx], axis=1), dtype=float)
  with np.errstate(invalid="ignore"):
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2], method="inverted_cdf")
  return float(lo), float(hi)


def paired_test(a: Sequence[float], b: Sequence[float], *, seed: int = 0) -> dict[str, Any]:
  """Paired comparison of two optimizers over shared seeds: ``a[i]`` and ``b[i]`` come from seed ``i``.

  Returns the mean difference ``a - b``, its bootstrap interval and the
  two-sided p-value of an exact sign-flip permutation test (every sign
  pattern up to 2^16 of them, else 20,000 random ones).
  """
  a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
  if a_.shape != b_.shape or a_.ndim != 1 or not len(a_):
    raise ValueError(f"paired_test: expected two 1-D sequences of one length, got {a_.shape} and {b_.shape}")
  d = a_ - b_
  observed = abs(d.mean())
  n = len(d)
  if n <= 16:
    signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
  else:
    signs = np.random.default_rng(seed).choice([-1, 1], (20_000, n))
  means = np.abs((signs * d).mean(axis=1))
  p = float(np.mean(means >= observed - 1e-12))
  return {"diff": float(d.mean()), "ci": bootstrap_ci(d, np.mean, seed=seed), "p": p, "n": n}


def summarize_pair(tune: Sequence[Mapping[str, Any]], final: Sequence[Mapping[str, Any]],
                   target: float | None = None, status: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """The comparison numbers of one (workload, optimizer) from its records.

  Args:
    tune, final: its tuning and confirmation records (``suite.protocol_view``
      keeps those of the suite's protocol).
    target: the target in force (default: the records').
    status: ``{"unresolved": bool, "incomplete": bool}`` from the suite's
      protocol (``suite.protocol_view``). Without it a pair is unresolved only
      when every trial diverged, and incomplete when it has no confirmation
      run.
  """
  any_record = (list(final) or list(tune))[0]
  mode = any_record["mode"]
  target = any_record["target"] if target is None else target
  spec = any_record.get("workload_spec") or {}
  studies = [r for r in tune if r.get("study")]  # external tuning's other studies
  tune = [r for r in tune if not r.get("study")]
  first = [r for r in tune if not r.get("round")]  # the shared range's draw, without edge extensions
  trial_valid = [r["summary"]["final_valid"] for r in first if r["status"] == "ok"]
  finite_trials = [v for v in trial_valid if v is not None]
  iqr = None
  if len(finite_trials) >= 2:
    q75, q25 = np.percentile(finite_trials, [75, 25])
    iqr = float(q75 - q25)
  reached_trials = sum(1 for r in first if time_to_target(r, target, mode)[0] is not None)
  n_final = len(final)
  final = sorted(final, key=lambda r: r["seed"])
  lrs = [r["hparams"].get("learning_rate") for r in tune]
  chosen = final[0]["hparams"].get("learning_rate") if final else None
  at_edge = bool(len(set(lrs)) > 2 and chosen is not None and chosen in (min(lrs), max(lrs)))
  times = [time_to_target(r, target, mode) for r in final]
  seed_list = [r["seed"] for r in final]
  if studies:  # AlgoPerf's external tuning: each study's fastest trial (in steps, and in seconds), the median
    times, seed_list = [], []
    for study in sorted({r.get("study") or 0 for r in (*studies, *first)}):
      members = [time_to_target(r, target, mode) for r in (*studies, *first) if (r.get("study") or 0) == study]
      steps_ = [t[0] for t in members if t[0] is not None]
      secs_ = [t[1] for t in members if t[1] is not None]
      times.append((min(steps_) if steps_ else None, min(secs_) if secs_ else None))
      seed_list.append(study)
  all_diverged = bool(tune) and all(r["status"] != "ok" for r in tune)
  if status is None:
    status = {"unresolved": all_diverged, "incomplete": not final and not all_diverged}
  steps = [math.inf if t[0] is None else float(t[0]) for t in times]
  seconds = [math.inf if t[1] is None else float(t[1]) for t in times]
  train_seconds = [r["curves"]["seconds"][-1] for r in final if r.get("curves", {}).get("seconds")]
  return {
      "workload": any_record["workload"], "optimizer": any_record["optimizer"], "metric": any_record["metric"],
      "mode": mode, "target": target, "toy": bool(spec.get("toy")), "variant_of": spec.get("variant_of"),
      "budget_steps": spec.get("steps"),
      "trials": len(first), "extension_trials": len(tune) - len(first),
      "rounds": max((r.get("round") or 0 for r in tune), default=0),
      "trials_diverged": sum(1 for r in tune if r["status"] != "ok"),
      "tuneability": reached_trials / len(first) if first else None, "trial_iqr": iqr,
      "best_hparams": dict(final[0]["hparams"]) if final else None, "lr_at_edge": at_edge,
      "unresolved": bool(status.get("unresolved")) or all_diverged, "incomplete": bool(status.get("incomplete")),
      "seeds": n_final, "seed_list": seed_list, "studies": len(seed_list) if studies else 0,
      "final_diverged": sum(1 for r in final if r["status"] != "ok"),
      "final_test": _stats([r["summary"]["final_test"] for r in final]),
      "final_test_values": [r["summary"]["final_test"] for r in final], "final_seeds": [r["seed"] for r in final],
      "final_valid": _stats([r["summary"]["final_valid"] for r in final]),
      "reached": sum(1 for t in times if t[0] is not None),
      "steps_per_seed": steps, "seconds_per_seed": seconds,
      "steps_to_target": _median_or_inf([t[0] for t in times], len(times)),
      "steps_ci": bootstrap_ci(steps) if len(times) > 1 else None,
      "seconds_to_target": _median_or_inf([t[1] for t in times], len(times)),
      "seconds_ci": bootstrap_ci(seconds) if len(times) > 1 else None,
      "train_seconds": float(np.median(train_seconds)) if train_seconds else None,
      "compile_seconds": sum(r["timing"].get("compile_seconds", 0.0) for r in (*tune, *final)),
  }


def summaries(records: Sequence[Mapping[str, Any]], targets: Mapping[str, float] | None = None,
              status: Mapping[tuple[str, str], Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
  """``summarize_pair`` for every (workload, optimizer) present (``targets``: per-workload overrides;
  ``status``: per-pair protocol status, see ``suite.protocol_view``)."""
  targets = targets or {}
  status = status or {}
  return [summarize_pair(roles.get("tune", []), roles.get("final", []), targets.get(w), status.get((w, o)))
          for (w, o), roles in group(records).items()]


def performance_profiles(times: Mapping[str, Mapping[str, float]], *, tau_max: float = TAU_MAX,
                         num: int = 301) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """AlgoPerf-style performance profiles.

  Args:
    times: ``times[workload][optimizer]`` = time to target (``inf`` when not
      reached). An optimizer missing from a workload counts as ``inf`` (not
      reached): failing a workload never helps a score.
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


def scored(pair_summaries: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
  """The pairs that count in the score: not a toy problem or a held-out variant, on a workload whose pairs are all
  complete. An unresolved pair counts, as not reached (``inf``), and reports list it apart too."""
  partial = {s["workload"] for s in pair_summaries if s.get("incomplete")}
  return [s for s in pair_summaries if not s["toy"] and not s["variant_of"] and s["workload"] not in partial]


def timeable(pair_summaries: Sequence[Mapping[str, Any]]) -> set[str]:
  """Workloads whose runs train long enough (``MIN_SECONDS``, median over pairs) for seconds to mean something."""
  by_workload: dict[str, list[float]] = {}
  for s in pair_summaries:
    if s["train_seconds"] is not None:
      by_workload.setdefault(s["workload"], []).append(s["train_seconds"])
  return {w for w, t in by_workload.items() if float(np.median(t)) >= MIN_SECONDS}


def scores(pair_summaries: Sequence[Mapping[str, Any]], key: str = "steps_to_target") -> dict[str, float]:
  """``{optimizer: profile score}`` over ``pair_summaries`` (all of them: filter with ``scored`` first)."""
  taus, prof = performance_profiles(times_table(pair_summaries, key))
  return {o: profile_score(taus, rho) for o, rho in prof.items()}


def _resampled_times(pair_summaries: Sequence[Mapping[str, Any]], key: str, rng: np.random.Generator
                     ) -> dict[str, dict[str, float]]:
  """One bootstrap draw of the times table: each workload's seeds (or studies) resampled once, by seed id, for all
  its optimizers (pairs share their seeds: the same initialisation and data order)."""
  per_seed = "steps_per_seed" if key == "steps_to_target" else "seconds_per_seed"
  by_workload: dict[str, list[Mapping[str, Any]]] = {}
  for s in pair_summaries:
    by_workload.setdefault(s["workload"], []).append(s)
  out: dict[str, dict[str, float]] = {}
  for w in sorted(by_workload):
    rows = by_workload[w]
    seeds = sorted({seed for s in rows for seed in s["seed_list"]})
    picks = [seeds[i] for i in rng.integers(0, len(seeds), len(seeds))] if seeds else []
    for s in rows:
      values = dict(zip(s["seed_list"], s[per_seed]))
      drawn = [values.get(seed, math.inf) for seed in picks]  # a seed a pair lacks counts as not reached
      out.setdefault(w, {})[s["optimizer"]] = float(np.median(drawn)) if drawn else math.inf
  return out


def score_intervals(pair_summaries: Sequence[Mapping[str, Any]], key: str = "steps_to_target", *,
                    resamples: int = 500, seed: int = 0, order: Sequence[str] | None = None) -> dict[str, Any]:
  """Bootstrap intervals of each optimizer's score and of the leader's margin over the runner-up.

  ``order``: the ranking whose first two are compared (default: by score).
  Returns ``{"ci": {optimizer: (lo, hi)}, "margin_ci": (lo, hi), "leader", "runner_up"}``.
  """
  point = scores(pair_summaries, key)
  order = list(order) if order is not None else sorted(point, key=lambda o: -point[o])
  rng = np.random.default_rng(seed)
  draws: dict[str, list[float]] = {o: [] for o in point}
  margins: list[float] = []
  for _ in range(resamples):
    taus, prof = performance_profiles(_resampled_times(pair_summaries, key, rng))
    sc = {o: profile_score(taus, rho) for o, rho in prof.items()}
    for o in point:
      draws[o].append(sc.get(o, 0.0))
    if len(order) > 1:
      margins.append(sc.get(order[0], 0.0) - sc.get(order[1], 0.0))
  lo_q, hi_q = (1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2

  def interval(v):
    lo, hi = np.quantile(v, [lo_q, hi_q], method="inverted_cdf")  # as bootstrap_ci
    return float(lo), float(hi)

  ci = {o: interval(v) for o, v in draws.items()}
  margin = interval(margins) if margins else None
  return {"ci": ci, "margin_ci": margin, "leader": order[0] if order else None,
          "runner_up": order[1] if len(order) > 1 else None}


def leaderboard(pair_summaries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """One row per optimizer, best first (by the steps-based profile score, then the seconds-based one).

  Only the pairs that count (``scored``: no toy problems, held-out variants
  or unresolved pairs) enter. Columns: ``score_steps`` and its bootstrap
  interval ``score_steps_ci``, ``score_seconds`` (over the ``timeable``
  workloads only; None without any), ``targets`` (workloads whose target the
  median seed reached), ``workloads``, ``mean_rank`` (of the mean final test
  metric, 1 = best, per workload), ``diverged_trials`` (fraction of tuning
  trials), ``separated`` (on the first row: the interval of its margin over
  the runner-up excludes zero).
  """
  pair_summaries = scored(pair_summaries)
  if not pair_summaries:
    return []
  steps_scores = scores(pair_summaries, "steps_to_target")
  timed = [s for s in pair_summaries if s["workload"] in timeable(pair_summaries)]
  secs_scores = scores(timed, "seconds_to_target") if timed else {}
  by_workload: dict[str, list[Mapping[str, Any]]] = {}
  for s in pair_summaries:
    by_workload.setdefault(s["workload"], []).append(s)
  ranks: dict[str, list[float]] = {}
  for rows in by_workload.values():
    sign = -1.0 if rows[0]["mode"] == "max" else 1.0
    keyed = sorted((sign * r["final_test"]["mean"] if r["final_test"]["mean"] is not None else math.inf,
                    r["optimizer"]) for r in rows)
    for rank, (_, o) in enumerate(keyed, start=1):
      ranks.setdefault(o, []).append(float(rank))
  out = []
  for o in sorted(steps_scores):
    mine = [s for s in pair_summaries if s["optimizer"] == o]
    trials = sum(s["trials"] + s["extension_trials"] for s in mine)
    out.append({"optimizer": o, "score_steps": steps_scores[o], "score_steps_ci": None,
                "score_seconds": secs_scores.get(o),
                "targets": sum(1 for s in mine if math.isfinite(s["steps_to_target"])), "workloads": len(mine),
                "mean_rank": statistics.fmean(ranks[o]) if ranks.get(o) else None,
                "diverged_trials": (sum(s["trials_diverged"] for s in mine) / trials) if trials else None,
                "separated": False})
  out.sort(key=lambda r: (-r["score_steps"], -(r["score_seconds"] or 0.0), r["mean_rank"] or math.inf))
  intervals = score_intervals(pair_summaries, "steps_to_target", order=[r["optimizer"] for r in out])
  for r in out:
    r["score_steps_ci"] = intervals["ci"].get(r["optimizer"])
  margin = intervals["margin_ci"]
  out[0]["separated"] = bool(margin is not None and margin[0] > 0)
  return out


def leave_one_out(pair_summaries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """The leaderboard's stability: the ranking (by steps score) with each workload, then each optimizer, left out.

  Returns rows ``{"left_out": "workload NAME" | "optimizer NAME", "ranking": [...], "leader": ...,
  "same_leader": bool, "kendall_tau": τ against the full ranking (over the optimizers both rank)}``.
  """
  pairs = scored(pair_summaries)
  full = _ranking(pairs)
  rows = []
  for kind in ("workload", "optimizer"):
    for name in sorted({s[kind] for s in pairs}):
      ranking = _ranking([s for s in pairs if s[kind] != name])
      base = [o for o in full if o in ranking]
      rows.append({"left_out": f"{kind} {name}", "ranking": ranking, "leader": ranking[0] if ranking else None,
                   "same_leader": bool(ranking) and bool(base) and ranking[0] == base[0],
                   "kendall_tau": kendall_tau(base, ranking)})
  return rows


def _ranking(pairs: Sequence[Mapping[str, Any]]) -> list[str]:
  sc = scores(pairs, "steps_to_target") if pairs else {}
  return sorted(sc, key=lambda o: (-sc[o], o))


def speed_order(rows: Sequence[Mapping[str, Any]]) -> list[str]:
  """The optimizers of one workload's pairs by steps to target, ties (unreached included) by final validation value."""
  sign = -1.0 if rows and rows[0]["mode"] == "max" else 1.0
  return [s["optimizer"] for s in sorted(rows, key=lambda s: (
      s["steps_to_target"], sign * s["final_valid"]["mean"] if s["final_valid"]["mean"] is not None else math.inf,
      s["optimizer"]))]


def kendall_tau(a: Sequence[str], b: Sequence[str]) -> float | None:
  """Kendall's τ between two rankings of the same names (1: the same order, -1: reversed)."""
  common = [x for x in a if x in b]
  if len(common) < 2:
    return None
  pos = {x: i for i, x in enumerate(b)}
  n, score = len(common), 0
  for i in range(n):
    for j in range(i + 1, n):
      score += 1 if pos[common[i]] < pos[common[j]] else -1
  return score / (n * (n - 1) / 2)


def workload_winners(pair_summaries: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
  """Per workload, the best final test metric and the fewest steps to target, each against its runner-up.

  ``{workload: {"test": {...}, "speed": {...}}}``, each with ``best``,
  ``runner_up`` and the paired comparison over the seeds both ran:
  ``diff`` (the mean of per-seed differences, positive when ``best`` is
  better: a higher accuracy or lower loss; fewer steps, a seed that never
  reached the target counted as the whole step budget), its bootstrap
  interval ``ci``, the sign-flip ``p`` and ``separated`` (the interval lies
  above zero and p < 0.05). For speed the runner-up is the second by median
  steps; the comparison uses the per-seed values, so a median lead that the
  seeds do not support is not separated.
  """
  out: dict[str, dict[str, Any]] = {}
  by_workload: dict[str, list[Mapping[str, Any]]] = {}
  for s in pair_summaries:
    if s["seeds"]:
      by_workload.setdefault(s["workload"], []).append(s)
  for w, rows in by_workload.items():
    sign = 1.0 if rows[0]["mode"] == "max" else -1.0  # sign * (best - second) > 0: best is better
    entry: dict[str, Any] = {}
    tested = [r for r in rows if r["final_test"]["mean"] is not None]
    tested.sort(key=lambda r: -sign * r["final_test"]["mean"])
    if len(tested) >= 2:
      entry["test"] = _compare(tested[0], tested[1], "final_test_values", sign)
    fast = sorted(rows, key=lambda r: r["steps_to_target"])
    if len(fast) >= 2 and math.isfinite(fast[0]["steps_to_target"]):
      entry["speed"] = _compare(fast[0], fast[1], "steps_per_seed", -1.0)
    out[w] = entry
  return out


def _compare(best: Mapping[str, Any], second: Mapping[str, Any], key: str, sign: float) -> dict[str, Any]:
  seeds_key = "final_seeds" if key == "final_test_values" else "seed_list"  # speed: seeds, or studies
  a = dict(zip(best[seeds_key], best[key]))
  b = dict(zip(second[seeds_key], second[key]))
  seeds = [s for s in a if s in b and a[s] is not None and b[s] is not None]
  va = np.asarray([a[s] for s in seeds], dtype=float)
  vb = np.asarray([b[s] for s in seeds], dtype=float)
  if key == "steps_per_seed":  # a seed that never reached the target: the whole budget
    cap = float(best["budget_steps"] or 0)
    va, vb = np.where(np.isfinite(va), va, cap), np.where(np.isfinite(vb), vb, cap)
  out: dict[str, Any] = {"best": best["optimizer"], "runner_up": second["optimizer"], "n": len(seeds),
                         "diff": None, "ci": None, "p": None, "separated": False}
  if len(seeds) >= 2:
    test = paired_test(sign * va, sign * vb)
    out.update(diff=test["diff"], ci=test["ci"], p=test["p"], separated=bool(test["ci"][0] > 0 and test["p"] < 0.05))
  return out


def budget_curves(records: Sequence[Mapping[str, Any]], targets: Mapping[str, float] | None = None, *,
                  samples: int = 200, seed: int = 0, selection: str = "time_to_target",
                  workloads: set[str] | None = None) -> dict[str, list[float]]:
  """The score against the tuning budget: ``{optimizer: [score with k trials for k = 1..K]}``.

  For each k, ``samples`` random k-subsets of each pair's first-draw trials
  (study 0, no edge extensions) pick their trial by ``selection`` (as the
  suite does) and that trial's tuning-seed steps to target enter the
  performance profiles; the curve is the mean score over the samples.
  ``workloads``: those that count (default: every one that is not a toy
  problem or a held-out variant).
  """
  targets = targets or {}
  rng = np.random.default_rng(seed)
  pairs: dict[tuple[str, str], list[tuple[float, float]]] = {}
  for (w, o), roles in group(records).items():
    tune = [r for r in roles.get("tune", []) if not r.get("round") and not r.get("study")]
    if not tune:
      continue
    spec = tune[0].get("workload_spec") or {}
    if spec.get("toy") or spec.get("variant_of") or (workloads is not None and w not in workloads):
      continue
    sign = -1.0 if tune[0]["mode"] == "max" else 1.0
    rows = []
    for r in tune:
      steps, _ = time_to_target(r, targets.get(w), None)
      valid = r["summary"].get("final_valid")
      ok = r["status"] == "ok" and valid is not None
      key = (math.inf if steps is None or not ok else float(steps), sign * valid if ok else math.inf)
      rows.append(key if selection == "time_to_target" else (key[1], key[0]))
    pairs[(w, o)] = rows
  if not pairs:
    return {}
  k_max = min(len(v) for v in pairs.values())
  optimizers = sorted({o for _, o in pairs})
  curves: dict[str, list[float]] = {o: [] for o in optimizers}
  for k in range(1, k_max + 1):
    total = {o: 0.0 for o in optimizers}
    for _ in range(samples):
      times: dict[str, dict[str, float]] = {}
      for (w, o), rows in pairs.items():
        pick = rng.choice(len(rows), size=k, replace=False)
        chosen = min((rows[i] for i in pick))
        times.setdefault(w, {})[o] = chosen[0] if selection == "time_to_target" else chosen[1]
      taus, prof = performance_profiles(times)
      for o, rho in prof.items():
        total[o] += profile_score(taus, rho)
    for o in optimizers:
      curves[o].append(total[o] / samples)
  return curves
