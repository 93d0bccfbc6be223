"""Draws docs/figures/init_variance.png: signal propagation through a deep ReLU MLP at init.

A batch of standard normal inputs goes through a 20-layer, 512-wide ReLU MLP (no
biases unless stated) whose weights come from He, Glorot and a too-small N(0, 0.01²)
initializer; the left panel shows the variance of each layer's activations, the
right one the fraction of units that are off (pre-activation <= 0) for every input
of the batch, i.e. dead on that batch.

Usage: python scripts/init_figure.py [--out docs/figures/init_variance.png]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jdl.nn  # noqa: E402

DEPTH, WIDTH, BATCH = 20, 512, 512

CURVES = (
    # label, initializer, bias, matplotlib style
    ("He normal (var 2/fan_in)", "he_normal", 0.0, dict(color="C0", marker="o")),
    ("Glorot normal (var 2/(fan_in+fan_out))", "glorot_normal", 0.0,
     dict(color="C1", marker="s", linestyle="--", markersize=4)),
    ("N(0, 0.01²) (too small)", jdl.nn.get_initializer("normal", stddev=0.01), 0.0,
     dict(color="C3", marker="^")),
    ("He normal, bias -1", "he_normal", -1.0, dict(color="C7", marker="x", linestyle=":")),
)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=pathlib.Path,
                      default=pathlib.Path(__file__).resolve().parents[1] / "docs" / "figures"
                      / "init_variance.png")
  args = parser.parse_args(argv)

  layers = np.arange(1, DEPTH + 1)
  fig, (ax_var, ax_dead) = plt.subplots(1, 2, figsize=(10, 4), dpi=90)
  for label, init, bias, style in CURVES:
    stats = jdl.nn.signal_propagation(init, depth=DEPTH, width=WIDTH, batch=BATCH, bias=bias)
    ax_var.plot(layers, stats["variance"], label=label, **style)
    ax_dead.plot(layers, 100 * stats["dead_fraction"], label=label, **style)
    print(f"{label:40s} variance layer 1 {stats['variance'][0]:.3g}, layer {DEPTH} "
          f"{stats['variance'][-1]:.3g}; dead at layer {DEPTH}: {stats['dead_fraction'][-1]:.0%}")

  ax_var.set_yscale("log", nonpositive="mask")
  ax_var.set_xticks([1, 5, 10, 15, 20])
  ax_dead.set_xticks([1, 5, 10, 15, 20])
  ax_var.set_xlabel("layer")
  ax_var.set_ylabel("variance of the ReLU outputs")
  ax_var.set_title(f"Activation variance, {DEPTH}-layer ReLU MLP (width {WIDTH})", fontsize=10)
  ax_var.grid(True, which="major", alpha=0.3)
  ax_var.legend(fontsize=8, loc="lower left")
  ax_dead.set_xlabel("layer")
  ax_dead.set_ylabel(f"% of units off for all {BATCH} inputs")
  ax_dead.set_title("Dead ReLUs at initialization", fontsize=10)
  ax_dead.set_ylim(-3, 103)
  ax_dead.grid(True, alpha=0.3)
  ax_dead.legend(fontsize=8, loc="center right")
  fig.tight_layout()
  args.out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(args.out)
  print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
