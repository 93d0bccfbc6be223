"""jdl's training throughput against a hand-written JAX loop, Keras 3 and PyTorch.

The same work everywhere: Fashion-MNIST's 60,000 training images, the course
MLP (784-512-10, ReLU), RMSprop (lr 1e-3), sparse categorical cross-entropy,
batch 128, data in memory. Steady-state examples/s is the median over epochs
after the first (compilation excluded); jdl and the hand-written loop alternate
in one process so they see the same machine load.

    python benchmarks/overhead.py [--epochs 4] [--rounds 3] [--compare] [--e2e] [--json FILE]

``--compare`` adds Keras 3 (JAX backend) ``model.fit`` and a PyTorch eager loop
(each in a subprocess, needs the ``compare`` extra); ``--e2e`` times the whole
``jdl train mlp_fashion_mnist`` command against the equivalent Keras script.
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

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH, LR, HIDDEN = 128, 1e-3, 512


def load_fashion_mnist():
  from jdl import data

  train = data.load("fashion_mnist", "train")
  return train["image"], train["label"]


def jdl_throughput(images, labels, epochs: int) -> list[float]:
  """Per-epoch examples/s of ``jdl.train.fit`` (the library path `jdl train` uses)."""
  import jax.numpy as jnp

  import jdl.losses
  import jdl.models
  import jdl.optim
  from jdl.train import create_train_state, fit, make_train_step

  model = jdl.models.create("mlp", num_classes=10, hidden=(HIDDEN,))
  tx = jdl.optim.create("rmsprop", learning_rate=LR)
  state = create_train_state(model, tx, jnp.zeros((1, 28, 28, 1)), seed=0)
  step = make_train_step(apply_fn=model.apply, loss_fn=jdl.losses.get("sparse_categorical_crossentropy"), tx=tx)
  result = fit(state, step, {"image": images, "label": labels}, batch_size=BATCH, epochs=epochs, progress=False)
  return [h["examples_per_second"] for h in result.history]


def raw_throughput(images, labels, epochs: int) -> list[float]:
  """A minimal hand-written loop: one jitted ``lax.scan`` over an epoch's batches."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import optax

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = x.reshape((x.shape[0], -1))
      return nn.Dense(10)(nn.relu(nn.Dense(HIDDEN)(x)))

  net, tx = Net(), optax.rmsprop(LR)
  params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
  opt_state = tx.init(params)
  x_dev, y_dev = jax.device_put(images), jax.device_put(labels)
  steps = len(images) // BATCH

  def step(carry, idx):
    params, opt_state = carry
    x = x_dev[idx].astype(jnp.float32) / 255.0

    def loss_fn(p):
      logits = net.apply(p, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y_dev[idx]).mean(), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == y_dev[idx])
    return (optax.apply_updates(params, updates), opt_state), (loss, accuracy)

  @jax.jit
  def epoch(params, opt_state, key):
    perm = jax.random.permutation(key, len(images))[:steps * BATCH].reshape(steps, BATCH)
    return jax.lax.scan(step, (params, opt_state), perm)

  out = []
  for e in range(epochs + 1):  # +1: the first call compiles
    start = time.perf_counter()
    (params, opt_state), metrics = epoch(params, opt_state, jax.random.PRNGKey(e))
    jax.block_until_ready(metrics)
    if e:
      out.append(steps * BATCH / (time.perf_counter() - start))
  return out


def subprocess_json(args: list[str], env_extra: dict[str, str] | None = None) -> dict:
  env = dict(os.environ, **(env_extra or {}))
  out = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> dict:
  import jax

  cpu = ""
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
  except OSError:
    pass
  return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
          "python": platform.python_version(), "jax": jax.__version__, "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()]}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=4)
  parser.add_argument("--rounds", type=int, default=3, help="alternations of jdl and the hand-written loop")
  parser.add_argument("--compare", action="store_true", help="also run Keras 3 and PyTorch")
  parser.add_argument("--e2e", action="store_true", help="time `jdl train mlp_fashion_mnist` vs a Keras script")
  parser.add_argument("--json", help="write the figures here")
  args = parser.parse_args(argv)

  images, labels = load_fashion_mnist()
  jdl_eps, raw_eps = [], []
  for _ in range(args.rounds):
    jdl_eps += jdl_throughput(images, labels, args.epochs)[1:]
    raw_eps += raw_throughput(images, labels, args.epochs)[1:]
  result = {
      "benchmark": "overhead",
      "workload": f"fashion_mnist MLP 784-{HIDDEN}-10, rmsprop lr {LR}, batch {BATCH}",
      "jdl_examples_per_second": statistics.median(jdl_eps),
      "raw_examples_per_second": statistics.median(raw_eps),
      "jdl_epochs": jdl_eps,
      "raw_epochs": raw_eps,
  }
  result["ratio_vs_raw"] = result["jdl_examples_per_second"] / result["raw_examples_per_second"]
  if args.compare:
    keras = subprocess_json([os.path.join(HERE, "compare_keras.py"), "--epochs", str(args.epochs + 1)],
                            {"KERAS_BACKEND": "jax"})
    torch = subprocess_json([os.path.join(HERE, "compare_torch.py"), "--epochs", str(args.epochs + 1)])
    result["keras_examples_per_second"] = keras["examples_per_second"]
    result["torch_examples_per_second"] = torch["examples_per_second"]
    result["ratio_vs_keras"] = result["jdl_examples_per_second"] / keras["examples_per_second"]
    result["ratio_vs_torch"] = result["jdl_examples_per_second"] / torch["examples_per_second"]
    result["keras"], result["torch"] = keras, torch
  if args.e2e:
    with tempfile.TemporaryDirectory() as tmp:
      start = time.perf_counter()
      subprocess.run([os.path.join(os.path.dirname(sys.executable), "jdl"), "train", "mlp_fashion_mnist",
                      "--workdir", os.path.join(tmp, "run"), "--config.progress=false"],
                     check=True, capture_output=True)
      result["jdl_train_wall_seconds"] = time.perf_counter() - start
      with open(os.path.join(tmp, "run", "summary.json")) as f:
        summary = json.load(f)
      result["jdl_train_test_accuracy"] = summary["test_accuracy"]
      result["jdl_train_train_seconds"] = summary["train_seconds"]
    start = time.perf_counter()
    keras_e2e = subprocess_json([os.path.join(HERE, "compare_keras.py"), "--epochs", "5", "--evaluate"],
                                {"KERAS_BACKEND": "jax"})
    result["keras_script_wall_seconds"] = time.perf_counter() - start
    result["keras_script_test_accuracy"] = keras_e2e["test_accuracy"]
  result["machine"] = machine()
  print(json.dumps({k: v for k, v in result.items() if not isinstance(v, (list, dict))}, indent=2))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main()
