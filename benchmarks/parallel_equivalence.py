"""One epoch of the course MLP under every strategy: the figures of docs/parallel.md, regenerated.

Each run is the command docs/parallel.md quotes, in a process of its own,

    XLA_FLAGS=--xla_force_host_platform_device_count=8 jdl train mlp_fashion_mnist --config.strategy=S --config.epochs=1

for S in single, data_parallel, pmap and model_parallel, with the experiment's optimizer (RMSprop)
and with momentum SGD at lr 0.01 (``--config.optimizer.name=momentum
--config.optimizer.learning_rate=0.01``); and ``single`` once more in a process with one device
(no XLA_FLAGS), whose test loss is compared bit for bit with the 8-device process's. The runs go
to ``--runs`` (default ``runs/parallel_equivalence``, overwritten).

    python benchmarks/parallel_equivalence.py            # the runs (about 3 minutes on 2 cores), then the tables
    python benchmarks/parallel_equivalence.py --docs     # also rewrite docs/parallel.md's measured block
    python benchmarks/parallel_equivalence.py --table --docs   # only render again from the result file

Results: ``benchmarks/results/parallel_cpu.json`` and ``.md``. The throughput and 20-step figures the
page quotes beside them come from ``scaling_cpu.json`` (``benchmarks/scaling.py``) and
``overhead_cpu.json`` (``benchmarks/overhead.py``), read as they are recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
  sys.path.insert(0, str(HERE))

import _doc_blocks  # pylint: disable=g-import-not-at-top,wrong-import-position

STRATEGIES = ("single", "data_parallel", "pmap", "model_parallel")
OPTIMIZERS = {"rmsprop": [], "momentum": ["--config.optimizer.name=momentum", "--config.optimizer.learning_rate=0.01"]}
DEVICES_FLAG = "--xla_force_host_platform_device_count=8"
JSON = _doc_blocks.RESULTS / "parallel_cpu.json"
PAGE, BLOCK = "docs/parallel.md", "parallel"
COMMAND = "python benchmarks/parallel_equivalence.py --docs"


def train_argv(strategy: str, optimizer: str, workdir: pathlib.Path) -> list[str]:
  """The ``jdl train`` arguments of one run (the page's command, a workdir of its own, no progress bar)."""
  return ["train", "mlp_fashion_mnist", f"--config.strategy={strategy}", "--config.epochs=1", *OPTIMIZERS[optimizer],
          "--workdir", str(workdir), "--overwrite", "--config.progress=false"]


def run_one(devices: int, strategy: str, optimizer: str, root: pathlib.Path) -> dict[str, Any]:
  """``jdl train`` in a fresh process with ``devices`` CPU devices; the figures of its ``summary.json``."""
  workdir = root / f"{devices}dev" / optimizer / strategy
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  if devices > 1:
    env["XLA_FLAGS"] = DEVICES_FLAG
  argv = train_argv(strategy, optimizer, workdir)
  start = time.perf_counter()
  out = subprocess.run([sys.executable, "-m", "jdl.cli", *argv], env=env, capture_output=True, text=True, check=False)
  if out.returncode:
    sys.stderr.write(out.stdout[-3000:] + out.stderr[-5000:])
    raise SystemExit(f"jdl {' '.join(argv)} failed (exit status {out.returncode})")
  summary = json.loads((workdir / "summary.json").read_text())
  if summary["environment"]["device_count"] != devices:
    raise SystemExit(f"expected {devices} devices, the run saw {summary['environment']['device_count']}")
  row = {"devices": devices, "strategy": strategy, "optimizer": optimizer,
         "command": ("XLA_FLAGS=" + DEVICES_FLAG + " " if devices > 1 else "") + "jdl " + " ".join(argv[:-4]),
         "test_loss": summary["test_loss"], "test_accuracy": summary["test_accuracy"],
         "steps": summary["history"][-1]["step"], "train_split": summary["config"]["data"]["train_split"],
         "batch_size": summary["config"]["data"]["batch_size"], "train_seconds": summary["train_seconds"],
         "strategy_described": summary["strategy"], "wall_seconds": time.perf_counter() - start}
  print(f"{devices} device(s), {optimizer}, {strategy}: test_loss={row['test_loss']!r} "
        f"test_accuracy={row['test_accuracy']} ({row['wall_seconds']:.0f} s)", flush=True)
  return row


def measure(root: pathlib.Path) -> dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top,unused-import  # its version goes into the machine record

  rows = [run_one(8, s, o, root) for o in OPTIMIZERS for s in STRATEGIES]
  rows += [run_one(1, "single", o, root) for o in OPTIMIZERS]
  return {"benchmark": "parallel_equivalence", "experiment": "mlp_fashion_mnist", "epochs": 1,
          "machine": _doc_blocks.machine(), "date": time.strftime("%Y-%m-%d"),
          "command": "python benchmarks/parallel_equivalence.py", "rows": rows}


def _power(x: float) -> str:
  """``1.3e-03`` as ``1.3·10⁻³`` (the page's notation); 0 as ``0``."""
  if x == 0:
    return "0"
  mantissa, exponent = f"{x:.1e}".split("e")
  digits = str(int(exponent)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
  return f"{mantissa}·10{digits}"


def _row(rows: list[dict[str, Any]], devices: int, strategy: str, optimizer: str) -> dict[str, Any]:
  found = [r for r in rows if (r["devices"], r["strategy"], r["optimizer"]) == (devices, strategy, optimizer)]
  if len(found) != 1:
    raise ValueError(f"{JSON.name}: expected one run of {strategy} with {optimizer} on {devices} device(s)")
  return found[0]


def _agreement(rows: list[dict[str, Any]], optimizer: str) -> tuple[float, float]:
  """The largest |test loss − single's| and |test accuracy − single's| over the strategies, 8 devices."""
  base = _row(rows, 8, "single", optimizer)
  others = [_row(rows, 8, s, optimizer) for s in STRATEGIES if s != "single"]
  return (max(abs(r["test_loss"] - base["test_loss"]) for r in others),
          max(abs(r["test_accuracy"] - base["test_accuracy"]) for r in others))


def _in_accuracy(diff: float) -> str:
  return "exactly in accuracy" if diff == 0 else f"{100 * diff:.2f} points in accuracy"


def render(result: dict[str, Any], scaling: dict[str, Any], overhead: dict[str, Any]) -> str:
  """The measured block of docs/parallel.md from the three result files."""
  rows = result["rows"]
  first = _row(rows, 8, "single", "rmsprop")
  lines = [f"`XLA_FLAGS={DEVICES_FLAG} jdl train mlp_fashion_mnist --config.strategy=S --config.epochs=1`",
           "(the second pair of columns adds `--config.optimizer.name=momentum "
           "--config.optimizer.learning_rate=0.01`): MLP 784-512-10, batch "
           f"{first['batch_size']}, {first['steps']} steps on `{first['train_split']}`, test split.", "",
           "| strategy | test_loss (RMSprop, the experiment) | test_accuracy | test_loss (momentum SGD, lr 0.01) "
           "| test_accuracy |", "|---|---|---|---|---|"]
  for strategy in STRATEGIES:
    a, b = _row(rows, 8, strategy, "rmsprop"), _row(rows, 8, strategy, "momentum")
    lines.append(f"| {strategy} | {a['test_loss']:.7f} | {a['test_accuracy']:.4f} | {b['test_loss']:.7f} "
                 f"| {b['test_accuracy']:.4f} |")
  sgd_loss, sgd_acc = _agreement(rows, "momentum")
  rms_loss, rms_acc = _agreement(rows, "rmsprop")
  one, eight = _row(rows, 1, "single", "rmsprop"), first
  if one["test_loss"] == eight["test_loss"]:
    same = f"gives bit-for-bit the same test loss, {one['test_loss']!r}, as in the 8-device process"
  else:
    same = (f"gives a test loss of {one['test_loss']!r} against {eight['test_loss']!r} in the 8-device process "
            f"(a difference of {_power(abs(one['test_loss'] - eight['test_loss']))})")
  steps20 = [r["max_param_diff_vs_single_20_steps"] for r in scaling["rows"]
             if r["devices"] == 8 and r["strategy"] != "single" and "max_param_diff_vs_single_20_steps" in r]
  singles = {r["precision"]: r["examples_per_second"] for r in scaling["rows"]
             if r["devices"] == 8 and r["strategy"] == "single"}
  ratios = [r["examples_per_second"] / singles[r["precision"]] for r in scaling["rows"]
            if r["devices"] == 8 and r["strategy"] != "single" and r["precision"] in singles]
  lines += ["",
            f"With momentum SGD every strategy matches `single` to {_power(sgd_loss)} in test loss and "
            f"{_in_accuracy(sgd_acc)} after a full epoch. With the experiment's RMSprop they agree to "
            f"{_power(rms_loss)} in loss and {_in_accuracy(rms_acc)}: the strategies sum the gradient in a "
            "different order (per device, then across devices), which changes the last bits, and RMSprop's first "
            "update is `±lr/√(1-ρ)` for every gradient element above ε whatever its size, so elements whose "
            "gradient is a rounding-level cancellation take full-size steps of either sign; the trajectories part. "
            "This is floating-point, not a strategy bug (after 20 steps of momentum SGD the parameters agree to "
            f"{_power(max(steps20))}: `benchmarks/results/scaling_cpu.md`, measured on a "
            f"{scaling['machine']['cpu_count']}-core {scaling['machine']['cpu']}); `single` run in a 1-device process "
            f"{same}. The tests compare strategies with SGD (20 steps, rtol 10⁻⁵) and through "
            "`train_and_evaluate` on the tiny dataset (rtol 10⁻⁵ on test loss and accuracy).", "",
            "Throughput by strategy and device count: `benchmarks/scaling.py` (results in "
            f"`benchmarks/results/scaling_cpu.md`, on the {scaling['machine']['cpu_count']}-core "
            f"{scaling['machine']['cpu']}). Simulated CPU devices share the same cores, so those figures "
            f"measure each strategy's overhead ({min(ratios):.2f}-{max(ratios):.2f}× of `single`'s examples/s at "
            "8 devices), not a speed-up. With one device every strategy costs what `single` costs, and `single` "
            f"runs at {overhead['ratio_vs_raw']:.2f}× the examples/s of a hand-written `jit` + `lax.scan` loop "
            f"(`benchmarks/overhead.py`, `benchmarks/results/overhead_cpu.md`, on the "
            f"{overhead['machine']['cpu_count']}-core {overhead['machine']['cpu']}).", "",
            f"Recorded in `benchmarks/results/{JSON.name}` on {result['date']}, "
            f"{_doc_blocks.describe(result['machine'])}; regenerated by `{COMMAND}`."]
  return _doc_blocks.wrap(lines)


def render_docs() -> dict[tuple[str, str], str]:
  """Every block this script writes, ``(page, block) → text``, from the recorded result files."""
  result = json.loads(JSON.read_text())
  scaling = json.loads((_doc_blocks.RESULTS / "scaling_cpu.json").read_text())
  overhead = json.loads((_doc_blocks.RESULTS / "overhead_cpu.json").read_text())
  return {(PAGE, BLOCK): render(result, scaling, overhead)}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  parser.add_argument("--runs", default="runs/parallel_equivalence", help="where the runs go (overwritten)")
  parser.add_argument("--table", action="store_true", help="only render again from the result file")
  parser.add_argument("--docs", action="store_true", help=f"also rewrite the {BLOCK} block of {PAGE}")
  args = parser.parse_args(argv)
  if not args.table:
    result = measure(pathlib.Path(args.runs))
    JSON.write_text(json.dumps(result, indent=1) + "\n")
  _doc_blocks.publish(render_docs(), args.docs, JSON.with_suffix(".md"),
                      "One epoch under every strategy, 8 simulated CPU devices (benchmarks/parallel_equivalence.py)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
