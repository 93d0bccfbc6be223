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


def plot_profiles(pair_summaries: Sequence[Mapping[str, Any]], colors: Mapping[str, Any]):
  """Performance profiles on steps and on training seconds to the target."""
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  for ax, key, label in zip(axes, ("steps_to_target", "seconds_to_target"), ("steps", "training seconds")):
    taus, profiles = analysis.performance_profiles(analysis.times_table(pair_summaries, key))
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


def _table_rows_leaderboard(board: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
  header = ["rank", "optimizer", "profile score (steps)", "profile score (seconds)", "targets reached",
            "mean rank (test)", "diverged trials"]
  rows = [[str(i), r["optimizer"], f"{r['score_steps']:.3f}", f"{r['score_seconds']:.3f}",
           f"{r['targets']}/{r['workloads']}", _num(r["mean_rank"], 3),
           "–" if r["diverged_trials"] is None else f"{100 * r['diverged_trials']:.0f}%"]
          for i, r in enumerate(board, start=1)]
  return header, rows


def _table_rows_workload(rows_in: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
  metric = rows_in[0]["metric"]
  header = ["optimizer", f"final test {metric} (mean ± std)", f"best test {metric}", "seeds reaching target",
            "steps to target", "seconds to target", "tuneability", "trial IQR", "diverged trials",
            "selected hyperparameters"]
  sign = -1.0 if rows_in[0]["mode"] == "max" else 1.0
  ordered = sorted(rows_in, key=lambda s: (sign * s["final_test"]["mean"]) if s["final_test"]["mean"] is not None
                   else math.inf)
  rows = [[s["optimizer"], _mean_std(s["final_test"]), _mean_std(s["best_test"]), f"{s['reached']}/{s['seeds']}",
           _num(s["steps_to_target"]), _num(s["seconds_to_target"], 3),
           "–" if s["tuneability"] is None else f"{100 * s['tuneability']:.0f}%", _num(s["trial_iqr"], 3),
           f"{s['trials_diverged']}/{s['trials']}",
           _hparams(s["best_hparams"]) + (" (lr at the edge of the search)" if s.get("lr_at_edge") else "")]
          for s in ordered]
  return header, rows


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
  lines.append(f"runs: {len(records)} ({sum(1 for r in records if r.get('role') == 'tune')} tuning, "
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
    "Protocol: for each (workload, optimizer), K tuning trials with the tuning seed; the trial with the best final "
    "validation metric is re-run with S new seeds (DeepOBS, Schneider et al. 2019). Time to target is the median "
    "over those seeds of the steps (or training seconds, evaluation and compilation excluded) to the first "
    "evaluation meeting the workload's validation target; performance profiles and their scores follow AlgoPerf "
    "(Dahl et al. 2023), τ ≤ 4. Seconds are per run: programs that train several runs at once (vmapped) divide "
    "their time by their runs. See docs/benchmarks.md.")


def write_report(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
  """Writes ``report.md`` (+ ``report_files/*.png``) and ``report.html`` into ``directory``.

  Raises:
    FileNotFoundError: no ``results.jsonl`` with records in ``directory``.
  """
  directory = Path(directory)
  records = analysis.load(directory)
  if not records:
    raise FileNotFoundError(f"report: no run records in {directory / 'results.jsonl'}; run `jdl bench run` first")
  grouped = analysis.group(records)
  pair_summaries = analysis.summaries(records)
  board = analysis.leaderboard(pair_summaries)
  colors = _optimizer_colors(sorted({o for _, o in grouped}))

  figures: list[tuple[str, str, Any]] = [
      ("profiles", "Performance profiles", plot_profiles(pair_summaries, colors)),
      ("learning_curves", "Learning curves (confirmation seeds: mean, band = min..max)",
       plot_learning_curves(grouped, colors)),
      ("lr_sensitivity", "Learning-rate sensitivity (tuning trials; x = diverged)",
       plot_lr_sensitivity(grouped, colors)),
  ]
  traj = plot_trajectories(grouped, colors)
  if traj is not None:
    figures.append(("trajectories", "Trajectories on the 2-D test functions (first confirmation seed)", traj))
  pngs = [(name, title, _png(fig)) for name, title, fig in figures]
  files = directory / FILES_DIR
  files.mkdir(exist_ok=True)
  for name, _, data in pngs:
    (files / f"{name}.png").write_bytes(data)

  meta = _meta_lines(_meta(directory), records)
  lb_header, lb_rows = _table_rows_leaderboard(board)
  by_workload: dict[str, list[Mapping[str, Any]]] = {}
  for s in pair_summaries:
    by_workload.setdefault(s["workload"], []).append(s)
  now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

  md = [f"# Optimizer benchmark: {directory.name}", "", f"Generated {now} from {len(records)} runs.", ""]
  md += [f"- {line}" for line in meta] + ["", PROTOCOL_NOTE, "", "## Leaderboard", "", _md_table(lb_header, lb_rows),
                                          ""]
  md += [f"## {pngs[0][1]}", "", f"![{pngs[0][0]}]({FILES_DIR}/{pngs[0][0]}.png)", "", "## Workloads", ""]
  for w in sorted(by_workload):
    rows = by_workload[w]
    header, body = _table_rows_workload(rows)
    md += [f"### {w}", "", f"Target: validation {rows[0]['metric']} {'≥' if rows[0]['mode'] == 'max' else '≤'} "
           f"{rows[0]['target']}.", "", _md_table(header, body), ""]
  for name, title, _ in pngs[1:]:
    md += [f"## {title}", "", f"![{name}]({FILES_DIR}/{name}.png)", ""]
  md_path = directory / "report.md"
  md_path.write_text("\n".join(md))

  style = ("body{font-family:sans-serif;max-width:1300px;margin:2em auto;padding:0 1em}"
           "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
           "td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}th{background:#f2f2f2}"
           "img{max-width:100%}")
  parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Optimizer benchmark: "
           f"{html.escape(directory.name)}</title><style>{style}</style></head><body>",
           f"<h1>Optimizer benchmark: {html.escape(directory.name)}</h1>",
           f"<p>Generated {now} from {len(records)} runs.</p><ul>",
           *(f"<li>{html.escape(line)}</li>" for line in meta), "</ul>", f"<p>{html.escape(PROTOCOL_NOTE)}</p>",
           "<h2>Leaderboard</h2>", _html_table(lb_header, lb_rows)]

  def img(name: str, title: str, data: bytes) -> str:
    return (f"<h2>{html.escape(title)}</h2><img alt='{name}' "
            f"src='data:image/png;base64,{base64.b64encode(data).decode()}'>")

  parts.append(img(*pngs[0]))
  parts.append("<h2>Workloads</h2>")
  for w in sorted(by_workload):
    rows = by_workload[w]
    header, body = _table_rows_workload(rows)
    parts += [f"<h3>{html.escape(w)}</h3>", f"<p>Target: validation {html.escape(rows[0]['metric'])} "
              f"{'≥' if rows[0]['mode'] == 'max' else '≤'} {rows[0]['target']}.</p>", _html_table(header, body)]
  parts += [img(*p) for p in pngs[1:]]
  parts.append("</body></html>")
  html_path = directory / "report.html"
  html_path.write_text("".join(parts), encoding="utf-8")
  return md_path, html_path
