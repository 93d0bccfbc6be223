"""Ensembles on Fashion-MNIST: the ensemble against its members, accuracy against K, and vmapped against sequential.

1. ``mlp_fashion_mnist_ensemble`` (5 members of the default MLP) for seeds
   0 .. S-1: the ensemble's test accuracy (mean of probabilities), the
   majority vote's, the best and mean member's, their disagreement; the
   accuracy of the first k members for k = 1..5, drawn in
   ``docs/figures/ensemble_accuracy_vs_k.png``.
2. Speed: K members vmapped in one run against K single runs one after the
   other, the same epochs (no per-epoch evaluation, no checkpoints), for a
   narrow MLP (one member leaves the 2 cores idle part of the time) and the
   default 512-unit one; the ratio of training seconds, measured in one sitting.

    python benchmarks/ensemble.py [--seeds 3] [--members 5] [--speed-epochs 2]
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

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _config(name, overrides):
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top

  config = config_lib.load_experiment(name)
  config_lib.apply_overrides(config, [("progress", "false"), *overrides])
  return config


def accuracy(experiment, seeds, root):
  import numpy as np  # pylint: disable=g-import-not-at-top

  from jdl import ensemble  # pylint: disable=g-import-not-at-top
  from jdl.train import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  from jdl.train import runs  # pylint: disable=g-import-not-at-top

  out = []
  for seed in range(seeds):
    workdir = root / f"seed{seed}"
    finished = (workdir / "summary.json").is_file()
    summary = experiment_lib.train_and_evaluate(_config(experiment, [("seed", str(seed))]), workdir,
                                                resume=finished, overwrite=not finished and workdir.exists())
    run = runs.load_run(workdir)
    test = run.split("test")
    key = run.input_key
    logits = ensemble.member_logits(run.model.apply, run.variables, np.asarray(run.inputs({key: test[key]})), 1000)
    out.append({"seed": seed, "by_size": ensemble.accuracy_by_size(logits, test["label"]),
                **{k: summary[k] for k in ("test_accuracy", "test_vote_accuracy", "test_best_member_accuracy",
                                           "test_mean_member_accuracy", "test_disagreement", "test_member_accuracy",
                                           "test_loss", "train_seconds")}})
    print(f"{experiment} seed {seed}: ensemble {out[-1]['test_accuracy']:.4f}, best member "
          f"{out[-1]['test_best_member_accuracy']:.4f}, by size {[round(a, 4) for a in out[-1]['by_size']]}",
          flush=True)
  return out


def speed(members, epochs, hidden):
  from jdl.train import experiment  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top

  common = [("epochs", str(epochs)), ("model.options.hidden", f"({hidden},)"), ("data.eval_split", "''"),
            ("checkpoint.enabled", "False"), ("tensorboard", "False"), ("plot", "False")]
  with tempfile.TemporaryDirectory() as tmp:
    # train_seconds: the epochs only (compilation apart), on both sides.
    vmapped = experiment.train_and_evaluate(
        _config("mlp_fashion_mnist", [*common, ("ensemble.members", str(members))]), f"{tmp}/vmapped")
    single = [experiment.train_and_evaluate(_config("mlp_fashion_mnist", [*common, ("seed", str(s))]),
                                            f"{tmp}/single{s}") for s in range(members)]
  sequential = sum(s["train_seconds"] for s in single)
  return {"hidden": hidden, "members": members, "epochs": epochs, "vmapped_train_seconds": vmapped["train_seconds"],
          "sequential_train_seconds": sequential, "speedup": sequential / vmapped["train_seconds"],
          "single_examples_per_second": statistics.median(s["examples_per_second"] for s in single)}


def figure(results, path):
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4))
  for ax, (name, runs) in zip(np.atleast_1d(axes), results.items()):
    by_size = np.array([r["by_size"] for r in runs])
    k = np.arange(1, by_size.shape[1] + 1)
    ax.errorbar(k, by_size.mean(0), yerr=by_size.std(0) if len(by_size) > 1 else None, marker="o", capsize=3,
                label="ensemble of the first k members")
    best = np.mean([r["test_best_member_accuracy"] for r in runs])
    ax.axhline(best, color="grey", linestyle="--", label=f"best single member ({best:.4f})")
    ax.set_xlabel("members k")
    ax.set_ylabel("test accuracy")
    ax.set_xticks(k)
    ax.set_title(f"{name}, mean of {len(runs)} seeds")
    ax.legend(loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--members", type=int, default=5)
  parser.add_argument("--speed-epochs", type=int, default=2)
  parser.add_argument("--runs", default="runs/ensemble")
  args = parser.parse_args()
  result = {"machine": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "date": time.strftime("%Y-%m-%d")}
  experiments = ("mlp_fashion_mnist_ensemble", "mnist1d_cnn_ensemble")
  result["accuracy"] = {name: accuracy(name, args.seeds, pathlib.Path(args.runs) / name) for name in experiments}
  figure(result["accuracy"], ROOT / "docs" / "figures" / "ensemble_accuracy_vs_k.png")
  result["speed"] = [speed(args.members, args.speed_epochs, hidden) for hidden in (64, 512)]
  (RESULTS / "ensemble_cpu.json").write_text(json.dumps(result, indent=1) + "\n")

  def table(acc):
    def ms(key):
      values = [r[key] for r in acc]
      return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"

    rows = "\n".join(f"| {r['seed']} | {r['test_accuracy']:.4f} | {r['test_vote_accuracy']:.4f} | "
                     f"{r['test_best_member_accuracy']:.4f} | {r['test_mean_member_accuracy']:.4f} | "
                     f"{r['test_disagreement']:.4f} | " + " / ".join(f"{a:.4f}" for a in r["by_size"]) + " |"
                     for r in acc)
    return (f"| seed | ensemble (mean of probabilities) | majority vote | best member | mean member | disagreement "
            f"| accuracy of the first k = 1 … {len(acc[0]['by_size'])} |\n|---:|---:|---:|---:|---:|---:|---|\n"
            f"{rows}\n| mean ± std | {ms('test_accuracy')} | {ms('test_vote_accuracy')} | "
            f"{ms('test_best_member_accuracy')} | {ms('test_mean_member_accuracy')} | {ms('test_disagreement')} | |\n")

  speed_rows = "\n".join(f"| {s['hidden']} | {s['members']} | {s['vmapped_train_seconds']:.1f} | "
                         f"{s['sequential_train_seconds']:.1f} | {s['speedup']:.2f}× |" for s in result["speed"])
  sections = "\n".join(f"## `{name}`\n\n{table(acc)}" for name, acc in result["accuracy"].items())
  text = f"""# Ensembles (benchmarks/ensemble.py)

Machine: {result['machine']}, {result['date']}. Protocol: train `train[:90%]`, validate `train[90%:]`, test once.

{sections}
## Vmapped against sequential ({args.speed_epochs} epochs, training only)

| hidden units | members | vmapped: train seconds | {args.members} single runs: train seconds | speed-up |
|---:|---:|---:|---:|---:|
{speed_rows}
"""
  (RESULTS / "ensemble_cpu.md").write_text(text)
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
