"""Small runs: `jdl train` end to end, and its training loop next to a hand-written `lax.scan`.

For the MNIST-1D experiments (6,000 steps, an evaluation on the test set each
of their 150 epochs) and the default experiment:

* the whole `jdl train EXP` command's wall time in a fresh process, on a cold
  and then a warm compilation cache (``--config.compilation_cache``);
* its training loop (``loop_seconds``: the epochs with their evaluations,
  checkpoints and logs; compilation excluded);
* a hand-written JAX loop of the same steps with the same evaluation schedule:
  the same Flax model and optax optimizer, data on the device, an epoch as one
  jitted ``lax.scan`` over batches gathered by index, then the evaluation, one
  host read of both per epoch (the minimum a loop that logs per epoch needs);
  compilation excluded.

    python benchmarks/small_runs.py [--experiments mnist1d_logreg,...] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EXPERIMENTS = ("mnist1d_logreg", "mnist1d_mlp", "mnist1d_cnn", "mnist1d_gru", "mlp_fashion_mnist")


def jdl_command(name: str, cache: Path) -> dict[str, Any]:
  """``jdl train NAME`` in a fresh process; its wall time and summary figures."""
  with tempfile.TemporaryDirectory() as tmp:
    env = {**os.environ, "JDL_CACHE_DIR": str(cache)}
    env.setdefault("JAX_PLATFORMS", "cpu")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jdl.cli", "train", name, "--workdir", f"{tmp}/run",
                    "--config.progress=false"], env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    summary = json.loads(Path(f"{tmp}/run/summary.json").read_text())
  return {"wall_seconds": wall, "loop_seconds": summary["loop_seconds"], "train_seconds": summary["train_seconds"],
          "compile_seconds": summary["compile_seconds"], "test_accuracy": summary["test_accuracy"]}


def hand_written(name: str) -> dict[str, Any]:
  """The experiment's steps and evaluations as a minimal loop; seconds of the epochs, compilation excluded."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  import jdl  # pylint: disable=g-import-not-at-top
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top
  from jdl.train import experiment  # pylint: disable=g-import-not-at-top

  config = config_lib.load_experiment(name)
  train, test = jdl.data.load(config.data.name, "train"), jdl.data.load(config.data.name, "test")
  key = "image" if "image" in train else "inputs"
  scale = (lambda x: x.astype(jnp.float32) / 255.0) if train[key].dtype == np.uint8 else (lambda x: x)
  model = jdl.models.create(config.model.name, num_classes=10, **config.model.options.to_dict())
  batch = config.data.batch_size
  steps = len(train["label"]) // batch
  tx = experiment.build_optimizer(config, total_steps=steps * config.epochs)
  variables = model.init(jax.random.key(0), scale(jnp.asarray(train[key][:1])))
  params, opt_state = variables["params"], tx.init(variables["params"])
  data = {k: jnp.asarray(v) for k, v in train.items()}
  x_test, y_test = jnp.asarray(test[key]), jnp.asarray(test["label"])

  def loss_fn(params, x, y):
    logits = model.apply({"params": params}, scale(x))
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def epoch(params, opt_state, perm):
    def body(carry, idx):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(loss_fn)(params, data[key][idx], data["label"][idx])
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), perm[:steps * batch].reshape(steps, batch))
    logits = model.apply({"params": params}, scale(x_test))
    test_loss = optax.softmax_cross_entropy_with_integer_labels(logits, y_test).mean()
    test_acc = jnp.mean(jnp.argmax(logits, -1) == y_test)
    return params, opt_state, (jnp.mean(losses), test_loss, test_acc)

  n = len(train["label"])
  perms = [jax.random.permutation(jax.random.key(e), n) for e in range(config.epochs)]
  start = time.perf_counter()
  compiled = epoch.lower(params, opt_state, perms[0]).compile()
  compile_seconds = time.perf_counter() - start
  start = time.perf_counter()
  for e in range(config.epochs):
    params, opt_state, metrics = compiled(params, opt_state, perms[e])
    metrics = jax.device_get(metrics)  # the epoch's one host read: train loss, test loss and accuracy
  return {"loop_seconds": time.perf_counter() - start, "compile_seconds": compile_seconds,
          "test_accuracy": float(metrics[2])}


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--experiments", default=",".join(EXPERIMENTS))
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--json")
  args = p.parse_args(argv)
  results = {}
  for name in args.experiments.split(","):
    with tempfile.TemporaryDirectory() as cache_dir:
      cache = Path(cache_dir) / "xla"
      cold = jdl_command(name, cache)  # fills the compilation cache (and prepares the data)
      rows = {"warm": [], "hand": []}
      for _ in range(args.rounds):
        rows["warm"].append(jdl_command(name, cache))
        rows["hand"].append(hand_written(name))
    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
    result = {"cold_wall_seconds": cold["wall_seconds"], "cold_compile_seconds": cold["compile_seconds"],
              "warm_wall_seconds": med(rows["warm"], "wall_seconds"),
              "warm_compile_seconds": med(rows["warm"], "compile_seconds"),
              "jdl_loop_seconds": med(rows["warm"], "loop_seconds"),
              "jdl_train_seconds": med(rows["warm"], "train_seconds"),
              "hand_loop_seconds": med(rows["hand"], "loop_seconds"),
              "jdl_test_accuracy": rows["warm"][0]["test_accuracy"],
              "hand_test_accuracy": rows["hand"][0]["test_accuracy"]}
    result["loop_ratio"] = result["jdl_loop_seconds"] / result["hand_loop_seconds"]
    results[name] = result
    print(f"{name}: jdl train {result['warm_wall_seconds']:.2f} s warm ({result['cold_wall_seconds']:.2f} s cold), "
          f"loop {result['jdl_loop_seconds']:.3f} s vs hand-written {result['hand_loop_seconds']:.3f} s "
          f"({result['loop_ratio']:.2f}x)", flush=True)
  if args.json:
    payload = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                           "python": platform.python_version()}, "rounds": args.rounds, "experiments": results}
    Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
