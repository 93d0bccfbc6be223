"""Several runs side by side: a table of their final metrics and of the settings that differ, their curves overlaid.

``jdl compare RUN_DIR RUN_DIR ... [--metric eval_accuracy] [--out DIR]``
writes ``compare.md`` (the table) and ``compare.png`` (one panel per metric,
train solid and eval dashed, one colour per run: the course's picture of
under- and overfitting) and prints the table.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

# Settings that differ between any two runs and say nothing about them.
_IGNORED = ("progress", "plot", "tensorboard", "compilation_cache", "checkpoint.every_seconds")


def _read_run(directory: pathlib.Path) -> dict[str, Any]:
  from jdl.train import runs  # pylint: disable=g-import-not-at-top
  from jdl.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  config = runs._stored_config(directory)  # pylint: disable=protected-access
  history = workdir_lib.read_metrics(directory / workdir_lib.METRICS)
  if not history:
    raise ValueError(f"run_dir: {directory} has logged no epoch yet ({workdir_lib.METRICS} is empty or missing)")
  summary = workdir_lib.read_json(directory / workdir_lib.SUMMARY, "the run's summary") or {}
  return {"directory": directory, "config": workdir_lib._flat(config),  # pylint: disable=protected-access
          "history": history, "summary": summary}


def _labels(directories: Sequence[pathlib.Path]) -> list[str]:
  """Short unique names: the directories' own names, with their parents where those repeat."""
  names = [d.name for d in directories]
  if len(set(names)) == len(names):
    return names
  return [str(pathlib.Path(d.parent.name) / d.name) for d in directories]


def _value(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  if isinstance(value, (list, tuple)):
    return "(" + ", ".join(_value(v) for v in value) + ")"
  return str(value)


def compare_runs(directories: Sequence[str | pathlib.Path], *, metric: str = "eval_accuracy",
                 out: str | pathlib.Path = ".") -> dict[str, Any]:
  """Compares runs; writes ``compare.md`` and ``compare.png`` into ``out``; returns the table's data.

  ``metric``: the logged key the runs are ranked by (its best epoch and value
  per run; ``..._loss`` and ``..._error`` are better lower). Every run
  must have logged it.

  Raises:
    FileNotFoundError: a directory is not a run.
    ValueError: fewer than one run, or ``metric`` not logged by a run (the
      message lists what it logged).
  """
  directories = [pathlib.Path(d) for d in directories]
  if not directories:
    raise ValueError("run_dir: expected at least one run directory, got none")
  runs = [_read_run(d) for d in directories]
  for run in runs:
    logged = sorted({k for line in run["history"] for k in line})
    if not any(metric in line for line in run["history"]):
      raise ValueError(f"metric: {run['directory']} logged no {metric!r}; it logged {', '.join(logged)}")
  lower = metric.endswith(("loss", "error")) or "loss" in metric
  keys = sorted(set().union(*(r["config"] for r in runs)))
  differing = [k for k in keys if k not in _IGNORED and len({json.dumps(r["config"].get(k), sort_keys=True, default=str)
                                                                 for r in runs}) > 1]
  labels = _labels(directories)
  rows = []
  for label, run in zip(labels, runs):
    scored = [(line["epoch"], line[metric]) for line in run["history"] if metric in line]
    best_epoch, best = (min if lower else max)(scored, key=lambda item: item[1])
    last = run["history"][-1]
    row = {"run": label, "settings": {k: run["config"].get(k) for k in differing}, "epochs": last.get("epoch"),
           f"best_{metric}": best, "best_epoch": best_epoch,
           **{k: last[k] for k in ("train_loss", "eval_loss", "train_accuracy", "eval_accuracy") if k in last},
           **{k: v for k, v in run["summary"].items() if k.startswith("test_") and isinstance(v, (int, float))
              and not k.endswith("seconds")},
           "train_seconds": run["summary"].get("train_seconds")}
    rows.append(row)
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  table = markdown(rows, differing, metric)
  (out / "compare.md").write_text(table)
  figure = out / "compare.png"
  plot_curves(labels, [r["history"] for r in runs], figure)
  return {"rows": rows, "differing": differing, "metric": metric, "table": table, "figure": str(figure),
          "markdown": str(out / "compare.md")}


def markdown(rows: Sequence[Mapping[str, Any]], differing: Sequence[str], metric: str) -> str:
  """The comparison as a Markdown table: a row a run, the differing settings then the figures."""
  figures = [f"best_{metric}", "best_epoch", "epochs", "train_loss", "eval_loss", "test_accuracy", "test_loss",
             "train_seconds"]
  figures = [f for f in figures if any(r.get(f) is not None for r in rows)]
  head = ["run", *differing, *figures]
  lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i <= len(differing) else "---:"
                                                          for i in range(len(head))) + "|"]
  for r in rows:
    cells = [r["run"], *(_value(r["settings"].get(k)) for k in differing),
             *("" if r.get(f) is None else _value(r[f]) for f in figures)]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot_curves(labels: Sequence[str], histories: Sequence[Sequence[Mapping[str, Any]]], path: pathlib.Path):
  """One panel per metric logged for train or eval; train solid, eval dashed; one colour per run."""
  from jdl.train import plots  # pylint: disable=g-import-not-at-top

  plt = plots.plt
  names = sorted({k.split("_", 1)[1] for h in histories for line in h for k in line
                  if k.startswith(("train_", "eval_")) and isinstance(line[k], (int, float))})
  names = [n for n in names if n in ("loss", "accuracy")] or names[:4]
  fig, axes = plt.subplots(1, max(len(names), 1), figsize=(5.5 * max(len(names), 1), 4.0), squeeze=False)
  colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for ax, name in zip(axes[0], names):
    for i, (label, history) in enumerate(zip(labels, histories)):
      for prefix, style in (("train_", "-"), ("eval_", "--")):
        points = [(line["epoch"], line[prefix + name]) for line in history if prefix + name in line]
        if points:
          ax.plot(*zip(*points), style, color=colours[i % len(colours)], label=f"{label} ({prefix.rstrip('_')})")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(plots.MaxNLocator(integer=True))
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  return plots._save(fig, path, "train (solid) and eval (dashed)")  # pylint: disable=protected-access
