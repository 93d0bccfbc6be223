"""The course MLP in float32, mixed_bfloat16 and mixed_float16: the figures of docs/precision.md, regenerated.

Each run is ``jdl train mlp_fashion_mnist --config.precision=P --config.seed=S`` (the experiment as it
ships: 784-512-10, RMSprop 1e-3 with cosine decay, batch 128, 5 epochs on ``train[:90%]``, ``single``),
trained here through ``train_and_evaluate`` as ``jdl train`` trains it, into ``--runs`` (default
``runs/precision``, overwritten). Throughput is each run's ``examples_per_second`` (``summary.json``:
training examples over training seconds, compilation excluded); the table shows the median over seeds.

    python benchmarks/precision.py                   # 3 precisions x seeds 0-2 (about 3 minutes on 2 cores)
    python benchmarks/precision.py --docs            # also rewrite docs/precision.md's measured block
    python benchmarks/precision.py --table --docs    # only render again from the result file

Results: ``benchmarks/results/precision_cpu.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import sys
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
  sys.path.insert(0, str(HERE))

import _doc_blocks  # pylint: disable=g-import-not-at-top,wrong-import-position

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
JSON = _doc_blocks.RESULTS / "precision_cpu.json"
PAGE, BLOCK = "docs/precision.md", "precision"
COMMAND = "python benchmarks/precision.py --docs"


def run_one(precision: str, seed: int, root: pathlib.Path) -> dict[str, Any]:
  """One run, as ``jdl train mlp_fashion_mnist --config.precision=P --config.seed=S`` runs it."""
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top
  from jdl.train import experiment  # pylint: disable=g-import-not-at-top

  config = config_lib.load_experiment("mlp_fashion_mnist")
  config_lib.apply_overrides(config, [("precision", precision), ("seed", str(seed)), ("progress", "false")])
  summary = experiment.train_and_evaluate(config, root / precision / f"seed{seed}", overwrite=True)
  return {"precision": precision, "seed": seed, "test_accuracy": summary["test_accuracy"],
          "test_loss": summary["test_loss"], "examples_per_second": summary["examples_per_second"],
          "train_seconds": summary["train_seconds"], "epochs": summary["epochs_completed"],
          "train_split": summary["config"]["data"]["train_split"],
          "loss_scale_by_epoch": [h["train_loss_scale"] for h in summary["history"] if "train_loss_scale" in h]}


def measure(seeds: list[int], root: pathlib.Path) -> dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top,unused-import  # its version goes into the machine record

  rows = []
  for seed in seeds:  # the precisions alternate, so that other work on the machine slows them alike
    for precision in PRECISIONS:
      start = time.perf_counter()
      rows.append(run_one(precision, seed, root))
      print(f"{precision} seed {seed}: test_accuracy={rows[-1]['test_accuracy']:.4f} "
            f"examples/s={rows[-1]['examples_per_second']:,.0f} ({time.perf_counter() - start:.0f} s)", flush=True)
  return {"benchmark": "precision", "experiment": "mlp_fashion_mnist", "machine": _doc_blocks.machine(),
          "date": time.strftime("%Y-%m-%d"), "command": "python benchmarks/precision.py", "rows": rows}


def _power_of_two(x: float) -> str:
  exponent = round(math.log2(x)) if x > 0 else None
  if exponent is None or 2.0 ** exponent != x:
    return f"{x:,.0f}"
  return "2" + str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


def render(result: dict[str, Any]) -> str:
  """The measured block of docs/precision.md from the result file."""
  rows = result["rows"]
  seeds = sorted({r["seed"] for r in rows})
  by = {(r["precision"], r["seed"]): r for r in rows}
  first = rows[0]
  lines = [f"`jdl train mlp_fashion_mnist --config.precision=P --config.seed=S` (784-512-10, RMSprop 1e-3 with "
           f"cosine decay, batch 128, {first['epochs']} epochs on `{first['train_split']}`, `single` on the CPU):", "",
           "| precision | " + " | ".join(f"seed {s}" for s in seeds) + " | test accuracy, mean ± std | test loss (seed "
           f"{seeds[0]}) | examples/s (median) |", "|---|" + "---|" * len(seeds) + "---|---|---:|"]
  speed = {}
  for precision in PRECISIONS:
    runs = [by[(precision, s)] for s in seeds]
    speed[precision] = statistics.median(r["examples_per_second"] for r in runs)
    lines.append(f"| {precision} | " + " | ".join(f"{r['test_accuracy']:.4f}" for r in runs)
                 + f" | {statistics.fmean(r['test_accuracy'] for r in runs):.4f} ± "
                 f"{statistics.stdev(r['test_accuracy'] for r in runs):.4f} | {runs[0]['test_loss']:.4f} "
                 f"| {speed[precision]:,.0f} |")
  lines.append("")
  for precision in PRECISIONS[1:]:
    diffs = [100 * (by[(precision, s)]["test_accuracy"] - by[("float32", s)]["test_accuracy"]) for s in seeds]
    lines.append(f"{precision} is within {max(abs(d) for d in diffs):.2f} points of float32 on every seed ("
                 + ", ".join(f"{d:+.2f}".replace("-", "−") for d in diffs)
                 + f" points; mean {statistics.fmean(diffs):+.2f}".replace("-", "−") + ").")
  scales = [by[("mixed_float16", s)]["loss_scale_by_epoch"] for s in seeds]
  if all(scales):
    shown = ", ".join(_power_of_two(v) for v in scales[0])
    same = "the same on every seed" if all(s == scales[0] for s in scales) else f"seed {seeds[0]}"
    lines[-1] += (f" float16 trained with dynamic loss scaling; its loss scale, averaged over each epoch's steps "
                  f"({same}): {shown} (it starts at 2¹⁵ and doubles after 2,000 finite steps in a row).")
  ratios = {p: speed[p] / speed["float32"] for p in PRECISIONS[1:]}
  verdict = ("16-bit compute is not faster (the CPU has no bfloat16 matrix units and XLA widens the arithmetic)"
             if max(ratios.values()) < 1.1 else "16-bit compute is faster")
  lines += ["", f"On this CPU {verdict}: "
            + ", ".join(f"{p} runs at {r:.2f}× float32's examples/s" for p, r in ratios.items())
            + ". The speed and memory gains are a GPU/TPU matter: `benchmarks/scaling.py --model resnet18 "
            "--synthetic --precision float32,mixed_bfloat16` measures them there (not run here: no GPU was "
            "available).", "",
            f"Recorded in `benchmarks/results/{JSON.name}` on {result['date']}, "
            f"{_doc_blocks.describe(result['machine'])} (speeds: the median over seeds, compared as ratios "
            f"measured in one sitting); "
            f"regenerated by `{COMMAND}`."]
  return _doc_blocks.wrap(lines)


def render_docs() -> dict[tuple[str, str], str]:
  """Every block this script writes, ``(page, block) → text``, from the recorded result file."""
  return {(PAGE, BLOCK): render(json.loads(JSON.read_text()))}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 (default 5)")
  parser.add_argument("--runs", default="runs/precision", help="where the runs go (overwritten)")
  parser.add_argument("--table", action="store_true", help="only render again from the result file")
  parser.add_argument("--docs", action="store_true", help=f"also rewrite the {BLOCK} block of {PAGE}")
  args = parser.parse_args(argv)
  if not args.table:
    result = measure(list(range(args.seeds)), pathlib.Path(args.runs))
    JSON.write_text(json.dumps(result, indent=1) + "\n")
  _doc_blocks.publish(render_docs(), args.docs, JSON.with_suffix(".md"),
                      "Mixed precision, the course MLP (benchmarks/precision.py)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
