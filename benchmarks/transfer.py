"""Transfer learning with few labels: training from scratch, feature extraction and fine-tuning, and their speeds.

The lesson's experiment, runnable with no download: `transfer_fashion_source`
(a small CNN on Fashion-MNIST classes 0-4) is trained once; the target task is
classes 5-9 with N labelled training images per class (N = 10, 50, 500, drawn
with the seed) and its whole test split (5,000 images). Three ways, seeds 0-4:

* scratch: the same network from a random start;
* features: the source network frozen (BatchNorm in inference mode), its
  features cached, a new 5-class head trained on them;
* finetune: the source network with a new head, all of it trained, the
  pretrained layers at a tenth of the head's rate (`optimizer.groups`).

Each run makes 400 updates of min(64, 5N) images (AdamW, cosine decay), no
per-epoch evaluation, and is tested once at the end. Then the speed of one
epoch of the head at N = 500: on cached features, against the same frozen
network computed at every step, and against fine-tuning the whole network.

    python benchmarks/transfer.py [--seeds 5] [--labels 10,50,500]

Writes benchmarks/results/transfer_cpu.{json,md} and docs/figures/transfer_few_labels.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("scratch", "features", "finetune")
UPDATES = 400


def _config(name, overrides):
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top

  config = config_lib.load_experiment(name)
  config_lib.apply_overrides(config, [("progress", "false"), ("tensorboard", "False"), ("plot", "False"), *overrides])
  return config


def _method(method, source):
  if method == "scratch":
    return [("init_from", "''"), ("init_from_skip", "()"), ("optimizer.freeze", "()"), ("cache_features", "False")]
  common = [("init_from", repr(str(source))), ("init_from_skip", "('fc',)")]
  if method == "features":
    return [*common, ("optimizer.freeze", "('conv_*', 'bn_*')"), ("cache_features", "True")]
  return [*common, ("optimizer.freeze", "()"), ("cache_features", "False"),
          ("optimizer.groups", "{'backbone': {'params': ('conv_*', 'bn_*'), 'learning_rate_scale': 0.1}}")]


def _run(config, workdir):
  from jdl.train import experiment  # pylint: disable=g-import-not-at-top

  finished = (workdir / "summary.json").is_file()
  if finished:
    return json.loads((workdir / "summary.json").read_text())
  return experiment.train_and_evaluate(config, workdir, overwrite=workdir.exists())


def few_labels(source, labels, seeds, root):
  out = []
  for n in labels:
    batch = min(64, 5 * n)
    epochs = math.ceil(UPDATES / max(1, (5 * n) // batch))
    for seed in range(seeds):
      for method in METHODS:
        overrides = [("seed", str(seed)), ("data.train_per_class", str(n)), ("data.batch_size", str(batch)),
                     ("epochs", str(epochs)), ("data.eval_split", "''"), ("checkpoint.monitor", "''"),
                     ("checkpoint.every_seconds", "3600.0"), *_method(method, source)]
        summary = _run(_config("transfer_fashion_target", overrides), root / f"n{n}" / f"seed{seed}" / method)
        out.append({"labels_per_class": n, "seed": seed, "method": method, "test_accuracy": summary["test_accuracy"],
                    "train_seconds": summary["train_seconds"], "wall_seconds": summary["wall_seconds"],
                    "epochs": epochs, "batch_size": batch})
        print(f"N={n} seed {seed} {method}: test accuracy {summary['test_accuracy']:.4f} "
              f"({summary['train_seconds']:.1f} s training, {summary['wall_seconds']:.1f} s in all)", flush=True)
  return out


def speed(source, root, epochs=4):
  """Seconds per epoch at N = 500 (2,500 images, batch 64), the first epoch (compilation) left out."""
  out = {}
  base = [("data.train_per_class", "500"), ("data.batch_size", "64"), ("epochs", str(epochs)),
          ("data.eval_split", "''"), ("checkpoint.enabled", "False")]
  variants = {"head_on_cached_features": _method("features", source),
              "head_on_the_frozen_network": [*_method("features", source)[:-1], ("cache_features", "False")],
              "whole_network_fine_tuned": _method("finetune", source)}
  for name, overrides in variants.items():
    workdir = root / "speed" / name
    from jdl.train import experiment  # pylint: disable=g-import-not-at-top

    summary = experiment.train_and_evaluate(_config("transfer_fashion_target", [*base, *overrides]), workdir,
                                            overwrite=workdir.exists())
    per_epoch = [h["epoch_seconds"] for h in summary["history"][1:]]
    out[name] = {"epoch_seconds": statistics.median(per_epoch),
                 "feature_seconds": summary["engine"].get("cached_features", {}).get("seconds"),
                 "wall_seconds": summary["wall_seconds"]}
    print(f"{name}: {out[name]['epoch_seconds'] * 1000:.1f} ms per epoch", flush=True)
  cached = out["head_on_cached_features"]["epoch_seconds"]
  out["speedup_vs_frozen_network"] = out["head_on_the_frozen_network"]["epoch_seconds"] / cached
  out["speedup_vs_fine_tuning"] = out["whole_network_fine_tuned"]["epoch_seconds"] / cached
  return out


def _table(runs, labels):
  rows = []
  for n in labels:
    cells = []
    for method in METHODS:
      acc = [r["test_accuracy"] for r in runs if r["labels_per_class"] == n and r["method"] == method]
      sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
      cells.append((statistics.mean(acc), sd))
    rows.append((n, cells))
  return rows


def figure(rows, path):
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(5.5, 3.6))
  labels = [n for n, _ in rows]
  for i, (method, style) in enumerate(zip(METHODS, ("o--", "s-", "^-"))):
    ax.errorbar(labels, [c[i][0] for _, c in rows], yerr=[c[i][1] for _, c in rows], fmt=style, capsize=3,
                label={"scratch": "from scratch", "features": "feature extraction",
                       "finetune": "fine-tuning"}[method])
  ax.set_xscale("log")
  ax.set_xticks(labels, [str(n) for n in labels])
  ax.set_xlabel("labelled training images per class")
  ax.set_ylabel("test accuracy (classes 5-9)")
  ax.set_title("Fashion-MNIST 0-4 → 5-9, mean ± sd over seeds")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--labels", default="10,50,500")
  parser.add_argument("--root", default="runs/bench_transfer")
  args = parser.parse_args()
  labels = [int(n) for n in args.labels.split(",")]
  root = pathlib.Path(args.root)
  source = root / "source"
  t = time.perf_counter()
  source_summary = _run(_config("transfer_fashion_source", []), source)
  print(f"source: test accuracy {source_summary['test_accuracy']:.4f} on classes 0-4 "
        f"({time.perf_counter() - t:.0f} s)", flush=True)
  runs = few_labels(source, labels, args.seeds, root)
  speeds = speed(source, root)
  rows = _table(runs, labels)
  figure(rows, ROOT / "docs" / "figures" / "transfer_few_labels.png")
  result = {"machine": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "date": time.strftime("%Y-%m-%d"), "updates": UPDATES,
            "source": {k: source_summary[k] for k in ("test_accuracy", "train_seconds", "epochs_completed")},
            "runs": runs, "speed": speeds}
  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / "transfer_cpu.json").write_text(json.dumps(result, indent=1) + "\n")
  lines = ["| labels per class | from scratch | feature extraction | fine-tuning | feature extraction − scratch "
           "(paired) | fine-tuning − scratch (paired) |", "|---:|---:|---:|---:|---:|---:|"]
  for n, cells in rows:
    paired = []
    for method in ("features", "finetune"):  # the same seed draws the same labelled images: compare per seed
      by_seed = {(r["seed"], r["method"]): r["test_accuracy"] for r in runs if r["labels_per_class"] == n}
      diffs = [by_seed[(k, method)] - by_seed[(k, "scratch")] for k in range(args.seeds)]
      better = sum(d > 0 for d in diffs)
      paired.append(f"{statistics.mean(diffs):+.4f} ± {statistics.stdev(diffs) if len(diffs) > 1 else 0:.4f} "
                    f"({better}/{len(diffs)} seeds better)")
    lines.append(f"| {n} | " + " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in cells) + " | " + " | ".join(paired) + " |")
  s = speeds
  text = f"""# Transfer learning with few labels (CPU)

`python benchmarks/transfer.py --seeds {args.seeds} --labels {args.labels}`

Machine: {result['machine']}, {result['date']}. Source: `transfer_fashion_source` (cnn_small 24/48 on Fashion-MNIST
classes 0-4, {source_summary['epochs_completed']} epochs), test accuracy {source_summary['test_accuracy']:.4f} on those
classes. Target: classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot), N labelled training images per class drawn
with the seed, {UPDATES} updates of min(64, 5N) images, tested on all 5,000 test images of those classes; mean ± sample
standard deviation over seeds 0-{args.seeds - 1}.

{chr(10).join(lines)}

Speed of one epoch at N = 500 (2,500 images, batch 64), the median over epochs 2-4:

| | seconds per epoch | |
|---|---:|---|
| head on cached features | {s['head_on_cached_features']['epoch_seconds']:.4f} | features computed once in {s['head_on_cached_features']['feature_seconds']:.1f} s (train and test splits) |
| head on the frozen network, computed every step | {s['head_on_the_frozen_network']['epoch_seconds']:.4f} | {s['speedup_vs_frozen_network']:.1f}× the cached head's time |
| whole network fine-tuned | {s['whole_network_fine_tuned']['epoch_seconds']:.4f} | {s['speedup_vs_fine_tuning']:.1f}× |
"""
  (RESULTS / "transfer_cpu.md").write_text(text)
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
