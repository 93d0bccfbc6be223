"""15 · Hardware and parallelism: the machine's matrix-multiply rate, 16-bit compute, data vs model parallelism.

Syllabus §2 and §5. Deep learning is mostly matrix products, so a machine's speed is its rate of multiply-adds
(FLOP/s) and the memory that feeds them: a GPU has thousands of simple cores and fast memory, a CPU a few
general ones; bfloat16 halves the bytes moved and, on hardware with 16-bit units, doubles the rate (this CPU has
none: it widens bfloat16 to float32). Data parallelism gives each device a slice of every batch and a copy of
the weights, and adds up their gradients; model parallelism splits each large weight matrix over devices. Both
must compute what one device computes. A cluster runs many such jobs: examples/slurm/train.sbatch is a SLURM
job script for a jdl sweep (Kubernetes and Docker package the same command as a container).

    python lessons/15_hardware_and_parallelism.py [--quick] [--out lessons/out]
"""

from __future__ import annotations

import os

# Eight simulated devices on this one CPU, to show the strategies (set before JAX starts).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import pathlib  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jdl  # noqa: E402
from jdl.train import create_train_state, fit, make_eval_step, make_train_step  # noqa: E402


def matmul_rate(n, dtype, repeats=5):
  """GFLOP/s of an n x n matrix product (2 n^3 flops)."""
  a = jnp.ones((n, n), dtype)
  product = jax.jit(lambda a: a @ a)
  product(a).block_until_ready()
  start = time.perf_counter()
  for _ in range(repeats):
    product(a).block_until_ready()
  return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def run(quick: bool = False, out: str = "lessons/out") -> dict:
  sizes = (128, 512) if quick else (128, 256, 512, 1024, 2048)
  rates = {dtype.__name__: {n: matmul_rate(n, dtype) for n in sizes} for dtype in (jnp.float32, jnp.bfloat16)}
  for dtype, by_size in rates.items():
    print(f"{dtype:9s} matmul GFLOP/s by size: " + ", ".join(f"{n}: {r:.1f}" for n, r in by_size.items()))
  print(f"{jax.device_count()} devices: {jax.devices()[0].platform}")

  # One epoch of an MLP on the digits, under each strategy: the same losses.
  train, test = jdl.data.load("digits", "train"), jdl.data.load("digits", "test")
  losses, seconds = {}, {}
  for strategy in ("single", "data_parallel", "model_parallel"):
    model = jdl.models.create("mlp", num_classes=10, hidden=(256,))
    tx = optax.sgd(0.05, momentum=0.9)
    loss = jdl.losses.get("sparse_categorical_crossentropy")
    result = fit(create_train_state(model, tx, train["inputs"][:1]),
                 make_train_step(apply_fn=model.apply, loss_fn=loss, tx=tx, input_key="inputs"), train,
                 batch_size=64, epochs=1 if quick else 3, progress=False, strategy=strategy,
                 eval_step=make_eval_step(apply_fn=model.apply, loss_fn=loss, input_key="inputs"), eval_data=test)
    losses[strategy] = result.history[-1]["eval_loss"]
    seconds[strategy] = result.train_seconds
    print(f"{strategy:15s} test loss {losses[strategy]:.6f}  ({result.train_seconds:.2f} s)")
  spread = max(losses.values()) - min(losses.values())
  print(f"the strategies agree to {spread:.1e} (the order of a float32 sum); on simulated devices they share "
        "one CPU, so they are not faster here")
  script = pathlib.Path(__file__).resolve().parent.parent / "examples" / "slurm" / "train.sbatch"
  if script.is_file():
    print(f"a SLURM job for a sweep: examples/slurm/{script.name} ({len(script.read_text().splitlines())} lines)")

  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(out) / "15_matmul_rate.png"
  path.parent.mkdir(parents=True, exist_ok=True)
  fig, ax = plt.subplots(figsize=(5.5, 3.4))
  for dtype, by_size in rates.items():
    ax.plot(list(by_size), list(by_size.values()), "o-", label=dtype)
  ax.set_xscale("log", base=2)
  ax.set_xlabel("matrix size n (n x n @ n x n)")
  ax.set_ylabel("GFLOP/s")
  ax.set_title(f"this machine: {os.cpu_count()} CPU cores")
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return {"gflops": rates, "test_loss": losses, "strategy_spread": spread, "seconds": seconds, "figure": str(path)}


if __name__ == "__main__":
  import argparse

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a reduced size (what the tests run)")
  parser.add_argument("--out", default="lessons/out", help="where the figures go")
  args = parser.parse_args()
  for name, value in run(quick=args.quick, out=args.out).items():
    print(f"{name}: {value}")
