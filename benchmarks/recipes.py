"""The shipped recipes over several seeds: the test figures docs/results.md quotes, regenerated.

Each (experiment, variant, seed) is one ``jdl train`` run (``train_and_evaluate``)
under ``--runs`` (default ``runs/recipes``): a finished run is read back, not
trained again, so an interrupted measurement continues where it stopped. The
protocol is jdl's default: train on ``train[:90%]``, validate on
``train[90%:]`` every epoch, test once at the end; nothing is selected on the
test split. A variant is a label and config overrides (``--variant
augmented:augment=crop:2,flip``).

    python benchmarks/recipes.py --experiments mnist1d_logreg,mnist1d_mlp --seeds 5
    python benchmarks/recipes.py --experiments cnn_fashion_mnist --variant augmented:augment=crop:2,flip --seeds 5
    python benchmarks/recipes.py --table            # the Markdown tables of everything measured

Results go to ``benchmarks/results/recipes_cpu.json`` (merged: one entry per
experiment and variant) and ``benchmarks/results/recipes_cpu.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from typing import Any

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
KEYS = ("test_accuracy", "test_loss", "test_mae", "test_rmse", "test_r2", "test_map", "test_auroc", "test_f1",
        "test_cultivar/accuracy", "test_alcohol/rmse")


def _machine() -> dict[str, Any]:
  return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
          "cpus": os.cpu_count(), "python": platform.python_version()}


def run_one(experiment: str, seed: int, overrides: list[tuple[str, str]], root: pathlib.Path) -> dict[str, Any]:
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top
  from jdl.train import experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  config = config_lib.load_experiment(experiment)
  config_lib.apply_overrides(config, [*overrides, ("seed", str(seed)), ("progress", "false")])
  workdir = root / f"seed{seed}"
  finished = (workdir / "summary.json").is_file()
  summary = experiment_lib.train_and_evaluate(config, workdir, resume=finished,
                                              overwrite=not finished and workdir.exists())
  keep = {k: v for k, v in summary.items() if k.startswith("test_") and isinstance(v, (int, float))
          and not isinstance(v, bool) and k != "test_seconds"}
  return {"seed": seed, **keep, "train_seconds": summary.get("train_seconds"),
          "epochs": summary.get("epochs_completed")}


def measure(experiment: str, variant: str, overrides: list[tuple[str, str]], seeds: list[int],
            root: pathlib.Path) -> dict[str, Any]:
  runs = []
  for seed in seeds:
    start = time.perf_counter()
    runs.append(run_one(experiment, seed, overrides, root / experiment / variant))
    print(f"{experiment} [{variant}] seed {seed}: "
          + ", ".join(f"{k}={runs[-1][k]:.4f}" for k in KEYS if k in runs[-1])
          + f" ({time.perf_counter() - start:.0f} s)", flush=True)
  stats = {}
  for key in sorted({k for r in runs for k in r if k.startswith("test_")}):
    values = [r[key] for r in runs if key in r]
    stats[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                  "min": min(values), "max": max(values)}
  seconds = [r["train_seconds"] for r in runs if r.get("train_seconds")]
  return {"experiment": experiment, "variant": variant, "overrides": [list(o) for o in overrides], "seeds": seeds,
          "runs": runs, "stats": stats, "train_seconds_median": statistics.median(seconds) if seconds else None,
          "protocol": "train[:90%] / validate train[90%:] / test", "machine": _machine(),
          "date": time.strftime("%Y-%m-%d")}


def table(results: dict[str, Any]) -> str:
  rows = ["| experiment | variant | seeds | test accuracy, mean ± std (min – max) | other test figures (mean) "
          "| train seconds (median) |", "|---|---|---:|---|---|---:|"]
  for entry in results.values():
    s = entry["stats"]
    acc = s.get("test_accuracy") or s.get("test_cultivar/accuracy")
    acc_text = f"{acc['mean']:.4f} ± {acc['std']:.4f} ({acc['min']:.4f} – {acc['max']:.4f})" if acc else "–"
    others = ", ".join(f"{k[len('test_'):]} {v['mean']:.3f}" for k, v in s.items()
                       if k in KEYS and k not in ("test_accuracy", "test_cultivar/accuracy"))
    overrides = " ".join(f"`{k}={v}`" for k, v in entry["overrides"])
    variant = f"{entry['variant']} ({overrides})" if overrides else entry["variant"]
    seconds = entry.get("train_seconds_median")
    seconds_text = f"{seconds:.1f}" if seconds else "–"
    rows.append(f"| `{entry['experiment']}` | {variant} | {len(entry['seeds'])} | {acc_text} "
                f"| {others} | {seconds_text} |")
  return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--experiments", default="", help="comma-separated experiment names")
  parser.add_argument("--variant", default="shipped", help="LABEL[:KEY=VALUE[;KEY=VALUE...]] (default: shipped)")
  parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 (default 5)")
  parser.add_argument("--runs", default="runs/recipes", help="where the runs are kept (default runs/recipes)")
  parser.add_argument("--json", default=str(RESULTS / "recipes_cpu.json"))
  parser.add_argument("--table", action="store_true", help="only print and write the tables")
  parser.add_argument("--docs", action="store_true",
                      help="also replace the table between the recipes markers of docs/results.md")
  args = parser.parse_args(argv)
  path = pathlib.Path(args.json)
  results = json.loads(path.read_text()) if path.is_file() else {}
  if not args.table:
    label, _, spec = args.variant.partition(":")
    overrides = [tuple(item.split("=", 1)) for item in spec.split(";") if item]
    for experiment in [e for e in args.experiments.split(",") if e]:
      entry = measure(experiment, label, overrides, list(range(args.seeds)), pathlib.Path(args.runs))
      results[f"{experiment}/{label}"] = entry
      path.write_text(json.dumps(results, indent=1) + "\n")
  text = table(results)
  path.with_suffix(".md").write_text("# Recipes over seeds (benchmarks/recipes.py)\n\nProtocol: train on "
                                     "`train[:90%]`, validate on `train[90%:]` each epoch, test once at the end. "
                                     f"Machine: {_machine()}.\n\n" + text)
  print(text, end="")
  if args.docs:
    page = pathlib.Path(__file__).resolve().parent.parent / "docs" / "results.md"
    begin, end = "<!-- recipes:begin (benchmarks/recipes.py --docs) -->", "<!-- recipes:end -->"
    body = page.read_text()
    if begin not in body or end not in body:
      raise SystemExit(f"--docs: {page} has no {begin} ... {end} block")
    head, rest = body.split(begin, 1)
    page.write_text(head + begin + "\n" + text + end + rest.split(end, 1)[1])
  return 0


if __name__ == "__main__":
  sys.exit(main())
