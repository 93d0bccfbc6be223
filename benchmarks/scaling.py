"""Training throughput by strategy, device count and precision; correctness against `single`.

On a CPU the device counts are simulated (``XLA_FLAGS=--xla_force_host_platform_device_count=N``,
one subprocess per count): all "devices" share the same cores, so the figures
measure what each strategy costs (partitioning, collectives, per-device
programs) and check that it computes what ``single`` computes; they cannot
show a speed-up. On GPUs the real devices are used, and the model FLOPs
utilisation (MFU) is reported from XLA's cost analysis of the compiled step
(``compiled.cost_analysis()['flops']``) and the device's peak.

    python benchmarks/scaling.py [--devices 1,2,4,8] [--strategies single,data_parallel,pmap,model_parallel]
                                 [--model mlp | --model resnet18 --synthetic] [--precision float32,mixed_bfloat16]
                                 [--batch 128] [--epochs 3] [--json FILE] [--md FILE]

Every row: examples/s (median over the epochs after the first; compilation
excluded), compile seconds, the largest parameter difference from ``single``
relative to the parameter's scale (same devices, same precision, same
batches), FLOPs per example (XLA's count for the single-device step) and the
achieved GFLOP/s and, where the device's peak is known, MFU =
FLOPs/example × examples/s ÷ (peak × devices).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# Dense peak TFLOP/s by device kind and compute dtype (vendor datasheets, SXM parts; float32 matmuls
# run as TF32 on tensor cores under XLA's default precision).
PEAK_TFLOPS = {
    "H100": {"bfloat16": 989.4, "float32": 494.7},
    "H200": {"bfloat16": 989.4, "float32": 494.7},
    "A100": {"bfloat16": 312.0, "float32": 156.0},
}


def _peak(device_kind: str, precision: str, override: float | None) -> float | None:
  if override:
    return override
  dtype = "bfloat16" if "bfloat16" in precision else ("float16" if "float16" in precision else "float32")
  for name, peaks in PEAK_TFLOPS.items():
    if name in device_kind:
      return peaks.get(dtype, peaks["bfloat16"] if dtype == "float16" else None)
  return None


def _data(args) -> tuple[dict[str, Any], tuple[int, ...], int]:
  import numpy as np

  import jdl.models

  if args.synthetic:
    shape = tuple(args.image_shape) if args.image_shape else jdl.models.default_input_shape(args.model)
    n = args.batch * args.steps
    rng = np.random.default_rng(0)
    return ({"image": rng.integers(0, 256, (n,) + shape, dtype=np.uint8),
             "label": rng.integers(0, 10, n).astype(np.int32)}, shape, 10)
  from jdl import data

  train = data.load("fashion_mnist", "train")
  return train, train["image"].shape[1:], 10


def _model(args):
  import jdl.models

  if args.model == "mlp":
    return jdl.models.create("mlp", num_classes=10, hidden=(512,))
  small_images = bool(args.image_shape) and args.image_shape[0] < 64
  options = {"stem": "small"} if args.model.startswith("resnet") and small_images else {}
  return jdl.models.create(args.model, num_classes=10, **options)


def _flops_per_example(step, state, batch_size: int, shape) -> float | None:
  """FLOPs of one single-device train step from XLA's cost analysis, per example."""
  import jax
  import numpy as np

  batch = {"image": jax.ShapeDtypeStruct((batch_size,) + tuple(shape), np.uint8),
           "label": jax.ShapeDtypeStruct((batch_size,), np.int32)}
  try:
    analysis = jax.jit(step).lower(state, batch).compile().cost_analysis()
  except Exception:  # pylint: disable=broad-except  # some backends have none
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  flops = (analysis or {}).get("flops")
  return float(flops) / batch_size if flops else None


def _max_relative_diff(a, b) -> float:
  import jax
  import numpy as np

  diffs = jax.tree.map(lambda x, y: float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(y))), 1e-12)), a, b)
  return max(jax.tree.leaves(diffs))


def measure(args) -> list[dict[str, Any]]:
  """Runs every strategy × precision on this process's devices."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  import jdl.losses
  from jdl import optim
  from jdl.train import create_train_state, fit, make_train_step, parallel, step as step_lib

  arrays, shape, _ = _data(args)
  loss = jdl.losses.get("sparse_categorical_crossentropy")
  rows = []
  devices = jax.device_count()
  for precision in args.precision:
    reference = None
    flops = None
    for name in args.strategies:
      if name == "model_parallel" and devices % 2:
        continue
      strategy = parallel.create(name)
      if args.batch % strategy.data_parallel_size:
        continue
      model = _model(args)
      tx = optim.create(args.optimizer, learning_rate=args.learning_rate)
      sample = jnp.zeros((1,) + tuple(shape), jnp.float32)
      state = create_train_state(model, tx, sample, seed=0)
      policy = None if precision == "float32" else precision
      if policy == "mixed_float16":
        state = step_lib.with_loss_scale(state)
      train_step = make_train_step(apply_fn=model.apply, loss_fn=loss, tx=tx, axis_name=strategy.axis_name,
                                   precision=policy)
      if flops is None and name == "single":
        flops = _flops_per_example(train_step, state, args.batch, shape)
      # Correctness first: 20 steps from the same initial state, parameters against single's.
      short = {k: v[:20 * args.batch] for k, v in arrays.items()}
      check = fit(jax.tree.map(jnp.copy, state), train_step, short, batch_size=args.batch, epochs=1,
                  progress=False, strategy=strategy)
      check_params = jax.tree.map(np.asarray, check.state.params)
      result = fit(state, train_step, arrays, batch_size=args.batch, epochs=args.epochs, progress=False,
                   strategy=strategy, chunks_per_epoch=1)
      eps = [h["examples_per_second"] for h in result.history]
      row = {
          "devices": devices,
          "strategy": name,
          "precision": precision,
          "examples_per_second": statistics.median(eps[1:] or eps),
          "epochs_examples_per_second": eps,
          "compile_seconds": result.compile_seconds,
          "final_train_loss": result.history[-1]["train_loss"],
          "mesh": strategy.describe().get("mesh"),
      }
      params = jax.tree.map(np.asarray, result.state.params)
      if name == "single":
        reference = (check_params, params, row["final_train_loss"])
      if reference is not None:
        # Largest |difference| relative to the leaf's largest |value|: after 20 steps (rounding level),
        # and at the end of the run, where float32 differences in the order of the gradient reductions
        # have grown along the trajectory (training is chaotic; the loss stays put).
        row["max_param_diff_vs_single_20_steps"] = _max_relative_diff(check_params, reference[0])
        row["max_param_diff_vs_single"] = _max_relative_diff(params, reference[1])
        row["train_loss_rel_diff_vs_single"] = abs(row["final_train_loss"] - reference[2]) / abs(reference[2])
      if flops:
        row["flops_per_example"] = flops
        peak = _peak(jax.devices()[0].device_kind, precision, args.peak_tflops)
        if peak:
          row["peak_tflops_per_device"] = peak
          row["mfu"] = flops * row["examples_per_second"] / (peak * 1e12 * devices)
      rows.append(row)
      print(json.dumps(row), flush=True)
  return rows


def machine() -> dict[str, Any]:
  import jax

  cpu = ""
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
  except OSError:
    pass
  return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(), "jax": jax.__version__,
          "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind}


def _worker_argv(args, devices: int) -> list[str]:
  argv = [sys.executable, os.path.abspath(__file__), "--worker", "--model", args.model, "--batch", str(args.batch),
          "--epochs", str(args.epochs), "--strategies", ",".join(args.strategies),
          "--precision", ",".join(args.precision), "--steps", str(args.steps), "--optimizer", args.optimizer,
          "--learning-rate", str(args.learning_rate)]
  if args.synthetic:
    argv.append("--synthetic")
  if args.image_shape:
    argv += ["--image-shape", ",".join(map(str, args.image_shape))]
  return argv


def to_markdown(result: dict[str, Any]) -> str:
  lines = [f"# Scaling: {result['workload']}", "",
           f"Machine: {result['machine']['cpu'] or result['machine']['device_kind']} "
           f"({result['machine']['cpu_count']} cores), backend {result['machine']['backend']}, "
           f"jax {result['machine']['jax']}. {result['note']}", "",
           "Param diff: the largest |difference| from single's parameters relative to the parameter's "
           "largest |value|, after 20 steps and after the run; loss diff: relative difference of the last "
           "epoch's train loss.", "",
           "| devices | strategy | precision | mesh | examples/s | vs single (same devices) | compile s "
           "| param diff, 20 steps | param diff, end | loss diff, end | GFLOP/s | MFU |",
           "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  singles = {(r["devices"], r["precision"]): r["examples_per_second"] for r in result["rows"]
             if r["strategy"] == "single"}
  for r in result["rows"]:
    base = singles.get((r["devices"], r["precision"]))
    ratio = f"{r['examples_per_second'] / base:.2f}" if base else ""
    diffs = [r.get(k) for k in ("max_param_diff_vs_single_20_steps", "max_param_diff_vs_single",
                                 "train_loss_rel_diff_vs_single")]
    diffs = " | ".join("" if d is None else f"{d:.1e}" for d in diffs)
    mfu = f"{r['mfu']:.1%}" if "mfu" in r else ""
    gflops = f"{r['flops_per_example'] * r['examples_per_second'] / 1e9:.1f}" if "flops_per_example" in r else ""
    mesh = "×".join(f"{k}={v}" for k, v in (r.get("mesh") or {}).items())
    lines.append(f"| {r['devices']} | {r['strategy']} | {r['precision']} | {mesh} | {r['examples_per_second']:,.0f} "
                 f"| {ratio} | {r['compile_seconds']:.1f} | {diffs} | {gflops} | {mfu} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--devices", default="1,2,4,8", help="CPU only: simulated device counts")
  parser.add_argument("--strategies", default="single,data_parallel,pmap,model_parallel")
  parser.add_argument("--model", default="mlp", help="mlp (Fashion-MNIST 784-512-10) or a registered model")
  parser.add_argument("--synthetic", action="store_true", help="random uint8 images of the model's input shape")
  parser.add_argument("--image-shape", default="", help="synthetic input shape, e.g. 32,32,3")
  parser.add_argument("--steps", type=int, default=50, help="synthetic: steps per epoch")
  parser.add_argument("--precision", default="float32", help="comma-separated: float32, mixed_bfloat16, ...")
  parser.add_argument("--batch", type=int, default=128)
  # Momentum SGD by default: with RMSprop/Adam the first update is ±lr whatever the gradient's size, so
  # rounding-level differences in near-zero gradients flip whole updates and parameters cannot be compared.
  parser.add_argument("--optimizer", default="momentum")
  parser.add_argument("--learning-rate", type=float, default=0.01)
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--peak-tflops", type=float, default=None, help="per-device peak for MFU (default: known GPUs)")
  parser.add_argument("--json", help="write the figures here")
  parser.add_argument("--md", help="write a Markdown table here")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  args.strategies = [s for s in args.strategies.split(",") if s]
  args.precision = [p for p in args.precision.split(",") if p]
  args.image_shape = [int(s) for s in args.image_shape.split(",") if s] if args.image_shape else []
  if args.model != "mlp" and not args.synthetic:
    parser.error("--model other than mlp needs --synthetic (only Fashion-MNIST is loaded for real)")

  if args.worker:
    measure(args)
    return {}

  import jax  # the parent only looks at the backend

  backend = jax.default_backend()
  rows: list[dict[str, Any]] = []
  start = time.perf_counter()
  if backend == "cpu":
    for count in [int(d) for d in args.devices.split(",") if d]:
      env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={count}", JAX_PLATFORMS="cpu")
      out = subprocess.run(_worker_argv(args, count), capture_output=True, text=True, env=env, check=False)
      if out.returncode:
        sys.stderr.write(out.stderr[-5000:])
        raise SystemExit(f"worker with {count} devices failed")
      rows += [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
      print(f"{count} devices done ({time.perf_counter() - start:.0f}s)", file=sys.stderr, flush=True)
    note = ("Simulated CPU devices share the same cores: these figures show each strategy's overhead and "
            "its agreement with single, not a speed-up.")
  else:
    rows = measure(args)
    note = "Real devices."
  shape = "x".join(map(str, args.image_shape)) if args.image_shape else "default"
  workload = (f"{args.model} on {'synthetic ' + shape + ' images' if args.synthetic else 'Fashion-MNIST (60,000)'}, "
              f"{args.optimizer} lr {args.learning_rate}, batch {args.batch}, {args.epochs} epochs")
  result = {"benchmark": "scaling", "workload": workload, "machine": machine(), "note": note, "rows": rows}
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
      f.write("\n")
  if args.md:
    with open(args.md, "w") as f:
      f.write(to_markdown(result))
  print(to_markdown(result))
  return result


if __name__ == "__main__":
  main()
