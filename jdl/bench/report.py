"""``jdl bench report DIR``: ``report.md`` (with PNGs in ``report_files/``) and a self-contained ``report.html``.

Contents: the run metadata, the leaderboard (performance-profile scores), the
performance profiles, a DeepOBS-style table per workload (performance, speed,
tuneability), learning curves with seed bands, learning-rate sensitivity of
the tuning trials, and optimizer trajectories on the 2-D test functions.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jdl.bench import analysis  # noqa: E402
from jdl.bench import workloads as workloads_lib  # noqa: E402

FILES_DIR = "report_files"


# --------------------------------------------------------------------------- #
# Formatting.
# --------------------------------------------------------------------------- #


def _num(x: Any, digits: int = 4) -> str:
  if x is None:
    return "–"
  if isinstance(x, float):
    if math.isinf(x):
      return "∞"
    if math.isnan(x):
      return "–"
    return f"{x:.{digits}g}"
  return str(x)


def _mean_std(stats: Mapping[str, Any]) -> str:
  if not stats or stats.get("mean") is None:
    return "–"
  return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def _hparams(hp: Mapping[str, Any] | None) -> str:
  if not hp:
    return "–"
  return ", ".join(f"{k}={_num(v, 3) if isinstance(v, float) else v}" for k, v in sorted(hp.items()))


def _optimizer_colors(names: Sequence[str]) -> dict[str, Any]:
  cmap = plt.get_cmap("tab10")
  return {n: cmap(i % 10) for i, n in enumerate(sorted(names))}


# --------------------------------------------------------------------------- #
# Figures.
# --------------------------------------------------------------------------- #


def _grid(n: int, width: float = 4.2, height: float = 3.2):
  cols = min(3, max(n, 1))
  rows = max(1, math.ceil(n / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
  flat = list(axes.flat)
  for ax in flat[n:]:
    ax.set_visible(False)
  return fig, flat[:n]


def _curve_array(records: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
  """Steps and a (seeds, points) array of ``curves[key]`` (NaN where missing)."""
  length = max(len(r["curves"]["step"]) for r in records)
  steps = max((r["curves"]["step"] for r in records), key=len)
  values = np.full((len(records), length), np.nan)
  for i, r in enumerate(records):
    vals = [np.nan if v is None else v for v in r["curves"].get(key, [])]
    values[i, :len(vals)] = vals
  return np.asarray(steps, dtype=float), values


def plot_learning_curves(grouped: Mapping[tuple[str, str], Mapping[str, Sequence[Mapping[str, Any]]]],
                         colors: Mapping[str, Any]):
  """Validation metric vs step of the confirmation runs: mean over seeds, band = min..max."""
  workloads = sorted({w for w, _ in grouped})
  fig, axes = _grid(len(workloads))
  for ax, w in zip(axes, workloads):
    target = metric = mode = None
    for (wl, o), roles in sorted(grouped.items()):
      final = roles.get("final") or []
      if wl != w or not final:
        continue
      metric, mode, target = final[0]["metric"], final[0]["mode"], final[0]["target"]
      steps, values = _curve_array(final, f"valid_{metric}")
      with np.errstate(all="ignore"):
        ok = ~np.all(np.isnan(values), axis=0)
        if not ok.any():
          continue
        mean = np.nanmean(values[:, ok], axis=0)
        ax.plot(steps[ok], mean, color=colors[o], label=f"{o} ({len(final)} seeds)")
        ax.fill_between(steps[ok], np.nanmin(values[:, ok], axis=0), np.nanmax(values[:, ok], axis=0),
                        color=colors[o], alpha=0.2, linewidth=0)
    if target is not None:
      ax.axhline(target, color="black", linestyle="--", linewidth=0.8, label="target")
      if mode == "min" and _all_positive(ax):
        ax.set_yscale("log")
    ax.set_title(w)
    ax.set_xlabel("step")
    ax.set_ylabel(f"validation {metric or ''}")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  fig.tight_layout()
  return fig


def _all_positive(ax) -> bool:
  ys = [y for line in ax.get_lines() for y in np.asarray(line.get_ydata(), dtype=float)]
  return bool(ys) and all(y > 0 for y in ys if np.isfinite(y))


def plot_lr_sensitivity(grouped: Mapping[tuple[str, str], Mapping[str, Sequence[Mapping[str, Any]]]],
                        colors: Mapping[str, Any]):
  """Final validation metric of every tuning trial vs its learning rate; x marks diverged trials."""
  workloads = sorted({w for w, _ in grouped})
  fig, axes = _grid(len(workloads))
  for ax, w in zip(axes, workloads):
    metric = mode = None
    diverged: list[tuple[float, str]] = []
    for (wl, o), roles in sorted(grouped.items()):
      tune = roles.get("tune") or []
      if wl != w or not tune:
        continue
      metric, mode = tune[0]["metric"], tune[0]["mode"]
      pts = sorted((r["hparams"]["learning_rate"], r["summary"]["final_valid"]) for r in tune
                   if r["status"] == "ok" and r["summary"]["final_valid"] is not None)
      diverged += [(r["hparams"]["learning_rate"], o) for r in tune
                   if r["status"] != "ok" or r["summary"]["final_valid"] is None]
      if pts:
        xs, ys = zip(*pts)
        # Joined by a line only when the trials differ in the learning rate alone.
        others = {repr(sorted((k, v) for k, v in r["hparams"].items() if k != "learning_rate")) for r in tune}
        ax.plot(xs, ys, "o-" if len(others) == 1 else "o", color=colors[o], label=o, markersize=3)
    if diverged:
      lo, hi = ax.get_ylim()
      edge = lo if mode == "max" else hi
      for lr, o in diverged:
        ax.plot([lr], [edge], "x", color=colors[o], markersize=6)
    ax.set_xscale("log")
    if mode == "min" and _all_positive(ax):
      ax.set_yscale("log")
    ax.set_title(w)
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"final validation {metric or ''}")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  fig.tight_layout()
  return fig


def plot_budget(curves: Mapping[str, Sequence[float]], colors: Mapping[str, Any]):
  """The steps score against the number of tuning trials; None without curves."""
  if not curves:
    return None
  fig, ax = plt.subplots(figsize=(6, 3.6))
  for o, ys in sorted(curves.items()):
    ax.plot(range(1, len(ys) + 1), ys, "-o", markersize=3, color=colors.get(o), label=o)
  ax.set_xlabel("tuning trials (random subsets of the grid)")
  ax.set_ylabel("profile score (steps, tuning seed)")
  ax.set_ylim(-0.02, 1.02)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  return fig


def plot_profiles(pair_summaries: Sequence[Mapping[str, Any]], colors: Mapping[str, Any],
                  timed: set[str] | None = None):
  """Performance profiles on steps and on training seconds to the target (``timed``: the workloads seconds use)."""
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  for ax, key, label in zip(axes, ("steps_to_target", "seconds_to_target"), ("steps", "training seconds")):
    rows = pair_summaries if key == "steps_to_target" or timed is None else [
        s for s in pair_summaries if s["workload"] in timed]
    taus, profiles = analysis.performance_profiles(analysis.times_table(rows, key))
    for o, rho in sorted(profiles.items()):
      ax.step(taus, rho, where="post", color=colors[o], label=f"{o} ({analysis.profile_score(taus, rho):.2f})")
    ax.set_xlim(1.0, analysis.TAU_MAX)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"τ (ratio to the fastest, {label})")
    ax.set_ylabel("fraction of workloads")
    ax.set_title(f"performance profile: {label} to target")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7, loc="lower right")
  fig.tight_layout()
  return fig


def plot_trajectories(grouped: Mapping[tuple[str, str], Mapping[str, Sequence[Mapping[str, Any]]]],
                      colors: Mapping[str, Any]):
  """Paths of the first confirmation seed of each optimizer on each 2-D workload; None without any."""
  workloads = sorted({w for (w, _), roles in grouped.items()
                      if any(r.get("trajectory") for r in roles.get("final", []))})
  if not workloads:
    return None
  fig, axes = _grid(len(workloads), 4.6, 4.0)
  for ax, w in zip(axes, workloads):
    wl = workloads_lib.WORKLOADS.get(w)
    surface = wl.surface if wl is not None else None
    if surface is not None:
      (x0, x1), (y0, y1) = surface.bounds
      gx, gy = np.meshgrid(np.linspace(x0, x1, 200), np.linspace(y0, y1, 200))
      z = np.asarray(surface.fn(gx, gy), dtype=float)
      if surface.log_levels:
        z = np.log10(z - z.min() + 1e-3)
      ax.contour(gx, gy, z, levels=25, cmap="Greys", linewidths=0.6)
      ax.plot(*surface.start, "o", color="black", markersize=5)
      if surface.minimum is not None:
        ax.plot(*surface.minimum, "*", color="gold", markeredgecolor="black", markersize=12)
      ax.set_xlim(x0, x1)
      ax.set_ylim(y0, y1)
    for (wl_name, o), roles in sorted(grouped.items()):
      if wl_name != w:
        continue
      runs = sorted((r for r in roles.get("final", []) if r.get("trajectory")), key=lambda r: r["seed"])
      if runs:
        t = runs[0]["trajectory"]
        us = np.asarray([np.nan if v is None else v for v in t["u"]], dtype=float)
        vs = np.asarray([np.nan if v is None else v for v in t["v"]], dtype=float)
        lr = _num(runs[0]["hparams"]["learning_rate"], 2)
        ax.plot(us, vs, "-", color=colors[o], linewidth=1.2, label=f"{o} (lr {lr})")
    ax.set_title(w)
    ax.set_xlabel("u")
    ax.set_ylabel("v")
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  fig.tight_layout()
  return fig


# --------------------------------------------------------------------------- #
# Tables.
# --------------------------------------------------------------------------- #


def _ci(ci: Any, digits: int = 3) -> str:
  if not ci:
    return ""
  return f" [{_num(ci[0], digits)}, {_num(ci[1], digits)}]"


def _table_rows_leaderboard(board: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
  header = ["rank", "optimizer", "profile score, steps [95% CI]", "profile score, seconds", "targets reached",
            "mean rank of final test metric", "diverged trials"]
  rows = [[str(i) + (" (separated)" if r["separated"] else ""), r["optimizer"],
           f"{r['score_steps']:.3f}{_ci(r['score_steps_ci'])}", _num(r["score_seconds"], 3),
           f"{r['targets']}/{r['workloads']}", _num(r["mean_rank"], 3),
           "–" if r["diverged_trials"] is None else f"{100 * r['diverged_trials']:.0f}%"]
          for i, r in enumerate(board, start=1)]
  return header, rows


def _table_rows_workload(rows_in: Sequence[Mapping[str, Any]], timed: bool,
                         shared: bool = False) -> tuple[list[str], list[list[str]]]:
  metric = rows_in[0]["metric"]
  header = ["optimizer", f"final test {metric}: mean ± sd [95% CI] (test set, reported only)",
            "seeds reaching target", "steps to target: median [95% CI]",
            "seconds to target" if timed else "seconds to target (too short to time: steps are the unit)",
            "compile s (0: programs reused)", "tuneability (shared range)" if shared else "tuneability",
            "trial IQR", "diverged trials", "edge extensions",
            "selected hyperparameters"]
  sign = -1.0 if rows_in[0]["mode"] == "max" else 1.0
  ordered = sorted(rows_in, key=lambda s: (sign * s["final_test"]["mean"]) if s["final_test"]["mean"] is not None
                   else math.inf)
  rows = [[s["optimizer"] + (" (unresolved)" if s["unresolved"] else "") + (" (incomplete)" if s.get("incomplete")
                                                                             else ""),
           _mean_std(s["final_test"]) + _ci(s["final_test"].get("ci"), 4), f"{s['reached']}/{s['seeds']}",
           _num(s["steps_to_target"]) + _ci(s["steps_ci"], 4),
           (_num(s["seconds_to_target"], 3) + _ci(s["seconds_ci"])) if timed else "–",
           _num(s["compile_seconds"], 2),
           "–" if s["tuneability"] is None else f"{100 * s['tuneability']:.0f}%", _num(s["trial_iqr"], 3),
           f"{s['trials_diverged']}/{s['trials'] + s['extension_trials']}", str(s["rounds"]),
           _hparams(s["best_hparams"]) + (" (lr at the edge of the rates tried)" if s.get("lr_at_edge") else "")]
          for s in ordered]
  return header, rows


def _winner_lines(entry: Mapping[str, Any]) -> list[str]:
  lines = []
  for key, what in (("test", "best final test metric"), ("speed", "fewest steps to target")):
    c = entry.get(key)
    if not c:
      continue
    if c["diff"] is None:
      lines.append(f"{what}: {c['best']} (against {c['runner_up']}: too few shared seeds to compare)")
      continue
    verdict = "separated" if c["separated"] else "not separated: within noise"
    lines.append(f"{what}: {c['best']}; against {c['runner_up']}, paired over {c['n']} seeds: difference "
                 f"{_num(c['diff'], 4)}, 95% CI{_ci(c['ci'], 4)}, sign-flip p = {_num(c['p'], 3)} ({verdict})")
  return lines


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
  return "\n".join(lines)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
  body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
  return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --------------------------------------------------------------------------- #
# The report.
# --------------------------------------------------------------------------- #


def _meta(directory: Path) -> list[dict[str, Any]]:
  path = directory / "meta.json"
  if not path.exists():
    return []
  try:
    data = json.loads(path.read_text())
  except ValueError:
    return []
  return data if isinstance(data, list) else [data]


def _meta_lines(sessions: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]]) -> list[str]:
  lines = []
  seeds = sorted({r["seed"] for r in records})
  lines.append(f"runs compared: {len(records)} ({sum(1 for r in records if r.get('role') == 'tune')} tuning, "
               f"{sum(1 for r in records if r.get('role') == 'final')} confirmation); seeds used: {seeds}")
  if sessions:
    last = sessions[-1]
    v = last.get("versions", {})
    lines.append("versions: " + ", ".join(f"{k} {v[k]}" for k in sorted(v)))
    lines.append(f"devices: {', '.join(last.get('devices', []))} (backend {last.get('backend')}); host "
                 f"{last.get('host')}, {last.get('cpu_count')} CPUs; {last.get('platform')}")
    lines.append(f"git revision: {last.get('git_revision') or 'unknown'}")
    suite = last.get("suite", {})
    lines.append(f"suite: {suite.get('name')}: K={suite.get('trials')} {suite.get('search')} trials tuning "
                 f"{', '.join(suite.get('tune') or ['the whole search space'])}; tuning seed "
                 f"{last.get('tuning_seed')}; confirmation seeds {last.get('final_seeds')}")
    lines.append(f"sessions: {len(sessions)} (first started {sessions[0].get('started')}, last "
                 f"{last.get('started')})")
  return lines


def _png(fig) -> bytes:
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=90)
  plt.close(fig)
  return buf.getvalue()


PROTOCOL_NOTE = (
    "Protocol: for each (workload, optimizer), K tuning trials with the tuning seed over the suite's search space "
    "(shared by every optimizer where the suite says so, as DeepOBS); a selected learning rate on the edge of the "
    "rates tried extends the grid beyond it. The trial selected by the suite's criterion (by default the score "
    "itself: fewest steps to the validation target, then the final validation value) is re-run with S new seeds. "
    "Time to target is the median over those seeds of the steps (or training seconds, evaluation and compilation "
    "excluded) to the first evaluation meeting the workload's validation target; performance profiles and their "
    "scores follow AlgoPerf (Dahl et al. 2023), τ ≤ 4. Intervals are 95% percentile bootstraps over the seeds; "
    "paired comparisons use the seeds both optimizers ran (the same initialisation and data order). The test set "
    "is evaluated once, at the end of each run, and never used for a decision. Toy problems, held-out variants and "
    "unresolved pairs are reported but left out of the score. See docs/benchmarks.md.")


Section = tuple[str, list[Any]]  # a title and its items: str (paragraph), ("table", header, rows), ("img", name)


def _sections(directory: Path, records: Sequence[Mapping[str, Any]]) -> tuple[list[Section], list[Any]]:
  """The report's sections and its figures ``(name, title, png bytes)``."""
  from jdl.bench import suite as suite_lib  # pylint: disable=g-import-not-at-top

  sessions = _meta(directory)
  last = sessions[-1] if sessions else {}
  compared = suite_lib.comparison(records, sessions)  # exactly the runs of the suite's protocol
  suite, records, targets = compared.suite, compared.records, compared.targets
  grouped = analysis.group(records)
  pair_summaries = compared.summaries()
  board = analysis.leaderboard(pair_summaries)
  scored = analysis.scored(pair_summaries)
  timed = analysis.timeable(pair_summaries)
  colors = _optimizer_colors(sorted({o for _, o in grouped}))

  figures: list[tuple[str, str, Any]] = [
      ("profiles", "Performance profiles (scored workloads; seconds: workloads long enough to time)",
       plot_profiles(scored, colors, timed)),
      ("budget", "Score against the tuning budget (trials drawn from the first grid)",
       plot_budget(analysis.budget_curves(records, targets, selection=suite.selection if suite else "time_to_target",
                                          workloads={s["workload"] for s in scored}), colors)),
      ("learning_curves", "Learning curves (confirmation seeds: mean, band = min..max)",
       plot_learning_curves(grouped, colors)),
      ("lr_sensitivity", "Learning-rate sensitivity (tuning trials; x = diverged)",
       plot_lr_sensitivity(grouped, colors)),
  ]
  traj = plot_trajectories(grouped, colors)
  if traj is not None:
    figures.append(("trajectories", "Trajectories on the 2-D test functions (first confirmation seed)", traj))
  pngs = [(name, title, _png(fig)) for name, title, fig in figures if fig is not None]

  meta = _meta_lines(sessions, records)
  if last.get("targets_source"):
    meta.append(f"targets: recorded by `jdl bench set-targets` in {last['targets_source']}")
  sections: list[Section] = [("", [*(f"- {m}" for m in meta), PROTOCOL_NOTE])]
  lb = [("table", *_table_rows_leaderboard(board))]
  if board:
    lead = board[0]
    lb.append(f"{lead['optimizer']} leads; " + (
        "the 95% interval of its margin over the runner-up excludes zero." if lead["separated"] else
        "the 95% interval of its margin over the runner-up includes zero: the first two places are within noise."))
  left = sorted({s["workload"] for s in pair_summaries} - {s["workload"] for s in scored})
  if left:
    lb.append("Not in the score: " + ", ".join(left) + " (toy problems, held-out variants and workloads with runs "
              "still missing are reported below).")
  if suite is None:
    lb.append("The suite could not be rebuilt from meta.json (pass the files that register its workloads with "
              "--import): every record of the directory is compared, and edge picks are not checked.")
  sections.append(("Leaderboard", lb))
  loo = analysis.leave_one_out(pair_summaries)
  if loo:
    rows = [[r["left_out"], r["leader"] or "–", "yes" if r["same_leader"] else "no", _num(r["kendall_tau"], 3),
             ", ".join(r["ranking"])] for r in loo]
    changed = sum(1 for r in loo if not r["same_leader"])
    sections.append(("Leaderboard stability", [
        f"The ranking by steps score with one workload or one optimizer left out: the leader changes in {changed} "
        f"of {len(loo)} cases.", ("table", ["left out", "leader", "same leader", "Kendall τ", "ranking"], rows)]))
  variants = [s for s in pair_summaries if s["variant_of"]]
  if variants:
    rows = []
    for v in sorted({s["workload"] for s in variants}):
      base = next(s["variant_of"] for s in variants if s["workload"] == v)
      rank_v = analysis.speed_order([s for s in pair_summaries if s["workload"] == v])
      rank_b = analysis.speed_order([s for s in pair_summaries if s["workload"] == base])
      rows.append([v, base, ", ".join(rank_b), ", ".join(rank_v), _num(analysis.kendall_tau(rank_b, rank_v), 3)])
    sections.append(("Held-out variants", [
        "Each variant changes its workload's architecture a little; the order by steps to target (then final "
        "validation value) should survive.", ("table", ["variant", "of", "order on the workload",
                                                         "order on the variant", "Kendall τ"], rows)]))
  unresolved = [s for s in pair_summaries if s["unresolved"]]
  if unresolved:
    rows = [[s["workload"], s["optimizer"], str(s["rounds"]),
             "every trial diverged" if not s["seeds"] else _hparams(s["best_hparams"])] for s in unresolved]
    sections.append(("Unresolved pairs (listed apart)", [
        "The selected learning rate is still on the edge of the rates tried after the edge extensions (or every "
        "trial diverged): these pairs count in the score as not reaching the target.",
        ("table", ["workload", "optimizer", "edge extensions", "selected"], rows)]))
  incomplete = sorted({(s["workload"], s["optimizer"]) for s in pair_summaries if s.get("incomplete")})
  if incomplete:
    sections.append(("Incomplete pairs (the suite is partial)", [
        f"{len(incomplete)} pair(s) still miss runs; their workloads are left out of the score until `jdl bench run` "
        "completes them: " + ", ".join(f"{w} / {o}" for w, o in incomplete) + "."]))
  sections.append((pngs[0][1], [("img", pngs[0][0])]))
  winners = analysis.workload_winners(pair_summaries)
  by_workload: dict[str, list[Mapping[str, Any]]] = {}
  for s in pair_summaries:
    by_workload.setdefault(s["workload"], []).append(s)
  for w in sorted(by_workload, key=lambda w: (by_workload[w][0]["toy"], bool(by_workload[w][0]["variant_of"]), w)):
    rows = by_workload[w]
    tag = " (toy problem: not in the score)" if rows[0]["toy"] else (
        f" (held-out variant of {rows[0]['variant_of']}: not in the score)" if rows[0]["variant_of"] else "")
    items: list[Any] = [f"Target: validation {rows[0]['metric']} {'≥' if rows[0]['mode'] == 'max' else '≤'} "
                        f"{rows[0]['target']}.",
                        ("table", *_table_rows_workload(rows, w in timed, bool(suite and suite.shared_space)))]
    items += _winner_lines(winners.get(w, {}))
    sections.append((f"Workload {w}{tag}", items))
  for name, title, _ in pngs[1:]:
    sections.append((title, [("img", name)]))
  return sections, pngs


def write_report(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
  """Writes ``report.md`` (+ ``report_files/*.png``) and ``report.html`` into ``directory``.

  Raises:
    FileNotFoundError: no ``results.jsonl`` with records in ``directory``.
  """
  directory = Path(directory)
  records = analysis.load(directory)
  if not records:
    raise FileNotFoundError(f"report: no run records in {directory / 'results.jsonl'}; run `jdl bench run` first")
  sections, pngs = _sections(directory, records)
  files = directory / FILES_DIR
  files.mkdir(exist_ok=True)
  data = {}
  for name, _, png in pngs:
    (files / f"{name}.png").write_bytes(png)
    data[name] = png
  now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  title = f"Optimizer benchmark: {directory.name}"
  md = [f"# {title}", "", f"Generated {now} from the {len(records)} runs of the directory.", ""]
  style = ("body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em}"
           "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
           "td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}th{background:#f2f2f2}"
           "img{max-width:100%}")
  parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>",
           f"<p>Generated {now} from the {len(records)} runs of the directory.</p>"]
  for heading, items in sections:
    if heading:
      md += [f"## {heading}", ""]
      parts.append(f"<h2>{html.escape(heading)}</h2>")
    for item in items:
      if isinstance(item, str):
        md += [item] if item.startswith("- ") else ["", item, ""]
        parts.append(f"<li>{html.escape(item[2:])}</li>" if item.startswith("- ") else f"<p>{html.escape(item)}</p>")
      elif item[0] == "table":
        md += ["", _md_table(item[1], item[2]), ""]
        parts.append(_html_table(item[1], item[2]))
      else:
        md += [f"![{item[1]}]({FILES_DIR}/{item[1]}.png)", ""]
        parts.append(f"<img alt='{item[1]}' src='data:image/png;base64,{base64.b64encode(data[item[1]]).decode()}'>")
  parts.append("</body></html>")
  md_path = directory / "report.md"
  md_path.write_text("\n".join(md))
  html_path = directory / "report.html"
  html_path.write_text("".join(parts), encoding="utf-8")
  return md_path, html_path
