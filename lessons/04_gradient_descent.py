"""04 · Gradient descent: full-batch, stochastic and mini-batch; the learning rate too low, right and too high.

Syllabus §3. An epoch is one pass over the training set; a step updates the parameters once, on a batch.
Full-batch gradient descent takes one exact step per epoch; stochastic gradient descent (batch 1) takes one
noisy step per example; mini-batches sit between, and are what hardware runs fast. The learning rate scales
every step: too low and the loss barely moves, too high and it overshoots and diverges. And a network's size in
bytes is its parameter count times the bytes of their dtype. (`--quick` compares the learning rates only.)

    python lessons/04_gradient_descent.py [--quick] [--out lessons/out]
"""

from __future__ import annotations

import pathlib

import numpy as np
import optax

import jdl
from jdl.train import create_train_state, fit, make_eval_step, make_train_step


def _train(data, test, *, batch_size, learning_rate, epochs, seed=0):
  """A small MLP on scikit-learn's digits with plain SGD: the per-epoch train loss and the time per epoch."""
  model = jdl.models.create("mlp", num_classes=10, hidden=(32,))
  tx = optax.sgd(learning_rate)
  state = create_train_state(model, tx, data["inputs"][:1], seed=seed)
  loss = jdl.losses.get("sparse_categorical_crossentropy")
  step = make_train_step(apply_fn=model.apply, loss_fn=loss, tx=tx, input_key="inputs")
  evaluate = make_eval_step(apply_fn=model.apply, loss_fn=loss, input_key="inputs")
  result = fit(state, step, data, batch_size=batch_size, epochs=epochs, eval_step=evaluate, eval_data=test,
               seed=seed, progress=False, nonfinite="stop")
  return result.history, result


def run(quick: bool = False, out: str = "lessons/out") -> dict:
  train, test = jdl.data.load("digits", "train"), jdl.data.load("digits", "test")
  if quick:  # a fifth of the images
    train = {k: v[:288] for k, v in train.items()}
  n = len(train["label"])
  epochs = 5 if quick else 30
  print(f"{n} training images of 8x8 digits, a 64-32-10 MLP, plain SGD, {epochs} epochs")

  # Full-batch GD, mini-batch and SGD: the same epochs, very different numbers of steps.
  regimes = {"full batch": (n, 0.5), "mini-batch (32)": (32, 0.1), "stochastic (1)": (1, 0.01)}
  if quick:  # the reduced version compares the learning rates only
    regimes = {}
  curves, seconds = {}, {}
  for name, (batch_size, lr) in regimes.items():
    history, _ = _train(train, test, batch_size=batch_size, learning_rate=lr, epochs=epochs)
    curves[name] = [h["eval_loss"] for h in history]
    seconds[name] = float(np.median([h["epoch_seconds"] for h in history[1:]] or [history[0]["epoch_seconds"]]))
    print(f"{name:16s} {n // batch_size:5d} steps/epoch  test loss {curves[name][-1]:.3f}  "
          f"{seconds[name] * 1000:.1f} ms/epoch")

  # The learning rate: too low, right, too high (mini-batches of 32).
  rates = {"too low (1e-4)": 1e-4, "right (0.05)": 0.05, "too high (50)": 50.0}
  lr_curves, diverged = {}, {}
  for name, lr in rates.items():
    history, result = _train(train, test, batch_size=32, learning_rate=lr, epochs=epochs)
    lr_curves[name] = [h["train_loss"] for h in history]
    if result.nonfinite is not None:  # the loss overflowed: training stopped at the last finite epoch
      diverged[name] = True
      print(f"learning rate {name:16s} the loss became {result.nonfinite['value']} at step "
            f"{result.nonfinite['step']} (diverged)")
      continue
    diverged[name] = not np.isfinite(lr_curves[name][-1]) or lr_curves[name][-1] > lr_curves[name][0]
    print(f"learning rate {name:16s} train loss {lr_curves[name][0]:.3f} -> {lr_curves[name][-1]:.3f}"
          + ("  (diverged)" if diverged[name] else ""))

  # Size in bytes: parameters times the bytes of their dtype.
  params = jdl.models.count_params("mlp", (64,), num_classes=10, hidden=(32,))
  sizes = {dtype: params * nbytes for dtype, nbytes in (("float32", 4), ("bfloat16", 2), ("int8", 1))}
  print(f"{params:,} parameters: " + ", ".join(f"{k} {v:,} bytes" for k, v in sizes.items()))

  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(out) / "04_gradient_descent.png"
  path.parent.mkdir(parents=True, exist_ok=True)
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
  for name, curve in curves.items():
    axes[0].plot(range(1, len(curve) + 1), curve, label=f"{name}: {seconds[name] * 1000:.0f} ms/epoch")
  axes[0].set_title("batch size")
  axes[0].set_ylabel("test loss")
  for name, curve in lr_curves.items():
    axes[1].plot(range(1, len(curve) + 1), curve, label=name)
  axes[1].set_title("learning rate")
  axes[1].set_ylabel("training loss")
  axes[1].set_yscale("log")
  for ax in axes:
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return {"final_test_loss": {k: v[-1] for k, v in curves.items()}, "ms_per_epoch": {k: v * 1000 for k, v in
          seconds.items()}, "diverged": diverged, "lr_final_loss": {k: v[-1] if v else float("nan") for k, v in lr_curves.items()},
          "bytes": sizes, "figure": str(path)}


if __name__ == "__main__":
  import argparse

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a reduced size (what the tests run)")
  parser.add_argument("--out", default="lessons/out", help="where the figures go")
  args = parser.parse_args()
  for name, value in run(quick=args.quick, out=args.out).items():
    print(f"{name}: {value}")
