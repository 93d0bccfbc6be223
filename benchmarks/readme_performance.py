"""The README's Performance section, rendered from the recorded result files (nothing is measured here).

Every figure of the section is read from a file in ``benchmarks/results/``, and the section names
the file, the machine it was measured on and the command that regenerates it:

* ``overhead_cpu.json`` (``benchmarks/overhead.py``): jdl's ``fit`` against a hand-written loop,
  Keras 3 and PyTorch on the course MLP, and ``jdl train mlp_fashion_mnist`` end to end;
* ``conv_cpu.json`` and ``conv_cpu_micro4.json`` (``benchmarks/compare_torch_conv.py``):
  convolutional nets against PyTorch;
* ``small_runs_cpu.json`` (``benchmarks/small_runs.py``): a small run end to end;
* ``recipes_cpu.json`` (``benchmarks/recipes.py``): test accuracy over seeds.

    python benchmarks/readme_performance.py          # print the section
    python benchmarks/readme_performance.py --docs   # rewrite it in README.md
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
  sys.path.insert(0, str(HERE))

import _doc_blocks  # pylint: disable=g-import-not-at-top,wrong-import-position

PAGE, BLOCK = "README.md", "performance"
COMMANDS = {
    "overhead_cpu.json": "python benchmarks/overhead.py --epochs 4 --rounds 3 --compare --e2e "
                         "--json benchmarks/results/overhead_cpu.json",
    "conv_cpu.json": "python benchmarks/compare_torch_conv.py --rounds 3 --json benchmarks/results/conv_cpu.json",
    "conv_cpu_micro4.json": "python benchmarks/compare_torch_conv.py --models cnn_small,lenet5 --micro-batches 4 "
                            "--rounds 3 --json benchmarks/results/conv_cpu_micro4.json",
    "small_runs_cpu.json": "python benchmarks/small_runs.py --json benchmarks/results/small_runs_cpu.json",
    "recipes_cpu.json": "python benchmarks/recipes.py --experiments mlp_fashion_mnist,cnn_fashion_mnist --seeds 5",
}
RECIPES = ("cnn_fashion_mnist", "mlp_fashion_mnist")  # the entries of recipes_cpu.json quoted
CONV_ROWS = (("conv_cpu_micro4.json", "cnn_small", "`cnn_small` (the `cnn_fashion_mnist` recipe, `micro_batches=4`)"),
             ("conv_cpu.json", "cnn_small", "`cnn_small`, one batch of 128 (the identical computation)"),
             ("conv_cpu.json", "mobilenet_v2", "MobileNetV2 (32×32×3)"),
             ("conv_cpu.json", "resnet18", "ResNet-18 (32×32×3)"),
             ("conv_cpu.json", "lenet5", "LeNet-5"))


def _load(name: str) -> dict[str, Any]:
  return json.loads((_doc_blocks.RESULTS / name).read_text())


def machine_words(found: dict[str, Any]) -> str:
  """A result file's machine record, whatever its script wrote, in words: ``2-core CPU (AMD EPYC), x86_64, ...``."""
  cores = found.get("cpu_count") or found.get("cpus")
  cpu = found.get("cpu") or ""
  arch = found.get("machine") or ("x86_64" if "x86_64" in found.get("platform", "") else "")
  words = [f"{cores}-core {cpu or 'CPU'}"] + ([arch] if arch else [])
  words += [f"Python {found['python']}"] if found.get("python") else []
  words += [f"JAX {found['jax']}"] if found.get("jax") else []
  words += [f"PyTorch {found['torch']}"] if found.get("torch") else []
  return ", ".join(words)


def _machines(name: str) -> list[dict[str, Any]]:
  """The machine records of a result file: its own, or (recipes_cpu.json) those of the entries quoted."""
  data = _load(name)
  if "machine" in data:
    return [data["machine"]]
  return [data[f"{e}/shipped"]["machine"] for e in RECIPES]


def _source(*names: str) -> list[str]:
  """Where a table's figures come from: the files, their machine, and the commands in a shell block."""
  machines = dict.fromkeys(machine_words(m) for n in names for m in _machines(n))
  files = " and ".join(f"`benchmarks/results/{n}`" for n in names)
  return [f"From {files} ({'; '.join(machines)}), written by", "", "```sh",
          *(COMMANDS[n] for n in names), "```"]


def _recipe(results: dict[str, Any], experiment: str) -> tuple[str, str, dict[str, Any]]:
  """An experiment's test accuracy over seeds (``0.8811 ± 0.0010``, ``seeds 0-4``) and its recipes entry."""
  entry = results[f"{experiment}/shipped"]
  acc = entry["stats"]["test_accuracy"]
  seeds = entry["seeds"]
  return f"{acc['mean']:.4f} ± {acc['std']:.4f}", f"seeds {seeds[0]}-{seeds[-1]}", entry


def render() -> str:
  """The Performance section's text (without its heading)."""
  o = _load("overhead_cpu.json")
  lines = ["The course MLP on Fashion-MNIST (784-512-10, RMSprop, batch 128), the same model, data, optimizer and "
           "batch everywhere, measured by `benchmarks/overhead.py` (details in "
           "[benchmarks/results/overhead_cpu.md](benchmarks/results/overhead_cpu.md)):", "",
           "| | examples/s | jdl is |", "|---|---:|---:|",
           f"| jdl `fit` | {o['jdl_examples_per_second']:,.0f} | |",
           f"| hand-written `jax.jit` + `lax.scan` epoch | {o['raw_examples_per_second']:,.0f} | "
           f"{o['ratio_vs_raw']:.2f}× |",
           f"| Keras 3 `model.fit` (JAX backend) | {o['keras_examples_per_second']:,.0f} | {o['ratio_vs_keras']:.2f}× |",
           f"| PyTorch eager loop | {o['torch_examples_per_second']:,.0f} | {o['ratio_vs_torch']:.2f}× |", "",
           *_source("overhead_cpu.json"), "",
           "Keras 3 runs this MLP at about the hand-written loop's own speed on that machine; "
           "[overhead_cpu.md](benchmarks/results/overhead_cpu.md) compares an earlier sitting on another host, "
           "where it ran slower.", "",
           "Convolutional nets against the same network, optimizer and batch (128) in a PyTorch eager loop "
           "(`benchmarks/compare_torch_conv.py`, both alternating in one sitting; "
           "[benchmarks/results/conv_cpu.md](benchmarks/results/conv_cpu.md) explains the figures and the gaps):", "",
           "| model | jdl examples/s | PyTorch examples/s | jdl is |", "|---|---:|---:|---:|"]
  for name, model, label in CONV_ROWS:
    m = _load(name)["models"][model]
    jdl, torch = m["jdl_examples_per_second"], m["torch_examples_per_second"]
    figures = [f"{v:,.1f}" if v < 100 else f"{v:,.0f}" for v in (jdl, torch)]
    lines.append(f"| {label} | {figures[0]} | {figures[1]} | {m['ratio_vs_torch']:.2f}× |")
  lines += ["", *_source("conv_cpu.json", "conv_cpu_micro4.json"), ""]
  recipes = _load("recipes_cpu.json")
  small = _load("small_runs_cpu.json")["experiments"]["mnist1d_logreg"]
  cnn_acc, cnn_seeds, cnn = _recipe(recipes, "cnn_fashion_mnist")
  mlp_acc, mlp_seeds, _ = _recipe(recipes, "mlp_fashion_mnist")
  lines += [f"`jdl train cnn_fashion_mnist` reaches a test accuracy of {cnn_acc} over {cnn_seeds}, trained on "
            "`train[:90%]` (the "
            f"validation protocol; a median of {cnn['train_seconds_median']:.0f} s of training on a shared machine). "
            f"`jdl train mlp_fashion_mnist` takes {o['jdl_train_wall_seconds']:.1f} s end to end "
            f"({o['jdl_train_train_seconds']:.1f} s of training) against {o['keras_script_wall_seconds']:.1f} s for "
            "the equivalent Keras script; a small run such as `jdl train mnist1d_logreg` (150 epochs of 40 steps, "
            f"an evaluation after each) takes {small['warm_wall_seconds']:.1f} s end to end on a warm compilation "
            f"cache, {small['jdl_loop_seconds']:.2f} s of it in the training loop "
            "([benchmarks/results/small_runs_cpu.md](benchmarks/results/small_runs_cpu.md)), and the default "
            f"experiment reaches **a test accuracy of {mlp_acc}** over {mlp_seeds}, trained on 54,000 images. "
            "More results: "
            "[docs/results.md](docs/results.md); parallel strategies: "
            "[benchmarks/results/scaling_cpu.md](benchmarks/results/scaling_cpu.md).", "",
            *_source("small_runs_cpu.json", "recipes_cpu.json"), "",
            f"This section is written by `python benchmarks/readme_performance.py --docs` from those files "
            "(`tests/test_docs.py` checks that it still agrees with them)."]
  return _doc_blocks.wrap(lines)


def render_docs() -> dict[tuple[str, str], str]:
  """Every block this script writes, ``(page, block) → text``, from the recorded result files."""
  return {(PAGE, BLOCK): render()}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  parser.add_argument("--docs", action="store_true", help=f"rewrite the {BLOCK} block of {PAGE}")
  args = parser.parse_args(argv)
  _doc_blocks.publish(render_docs(), args.docs)
  return 0


if __name__ == "__main__":
  sys.exit(main())
