"""11 · The first network: Fashion-MNIST with jdl, and the same network from scratch in plain JAX.

Syllabus §6 (the textbook chapter) and §5. Load the images, define a 784-512-10 dense network, choose a loss
and an optimizer, prepare the images (pixels to [0, 1]), fit, evaluate, predict. In jdl that is an experiment:
`jdl train mlp_fashion_mnist`, or the few lines below. Then the same network from scratch, with nothing but
JAX: a naive dense layer, a sequential container, a batch generator, one training step with explicit
gradients (`jax.grad`, where Keras has GradientTape and PyTorch autograd), a hand-written SGD update and the
loop (experiments/mlp_from_scratch.py). Both learn; the library's version is the one you would run.

    python lessons/11_first_network.py [--quick] [--out lessons/out]
"""

from __future__ import annotations

import importlib.util
import pathlib
import time

import jax
import numpy as np
import optax

import jdl
from jdl.train import create_train_state, fit, make_eval_step, make_train_step

SCRATCH = pathlib.Path(__file__).resolve().parent.parent / "experiments" / "mlp_from_scratch.py"


def run(quick: bool = False, out: str = "lessons/out") -> dict:
  limit = 2000 if quick else 60000
  epochs = 2 if quick else 5
  train = {k: v[:limit] for k, v in jdl.data.load("fashion_mnist", "train").items()}
  test = jdl.data.load("fashion_mnist", "test")
  names = jdl.data.info("fashion_mnist").class_names

  # With jdl: model, optimizer, loss, a compiled step, fit (uint8 images are scaled to [0, 1] in the step).
  start = time.perf_counter()
  model = jdl.models.create("mlp", num_classes=10, hidden=(512,))
  tx = optax.rmsprop(1e-3)
  loss = jdl.losses.get("sparse_categorical_crossentropy")
  result = fit(create_train_state(model, tx, train["image"][:1]),
               make_train_step(apply_fn=model.apply, loss_fn=loss, tx=tx), train, batch_size=128, epochs=epochs,
               eval_step=make_eval_step(apply_fn=model.apply, loss_fn=loss), eval_data=test, progress=False)
  jdl_accuracy = result.history[-1]["eval_accuracy"]
  jdl_seconds = time.perf_counter() - start
  probabilities = jax.nn.softmax(model.apply({"params": result.state.params}, test["image"][:3] / 255.0))
  predicted = [names[int(i)] for i in np.argmax(probabilities, axis=1)]
  print(f"jdl: test accuracy {jdl_accuracy:.4f} after {epochs} epochs ({jdl_seconds:.1f} s); "
        f"first three test images: {predicted} (true: {[names[int(i)] for i in test['label'][:3]]})")

  # From scratch: the same architecture, plain JAX and a hand-written SGD.
  spec = importlib.util.spec_from_file_location("mlp_from_scratch", SCRATCH)
  scratch = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(scratch)
  flatten = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0  # noqa: E731
  key1, key2 = jax.random.split(jax.random.key(0))
  net = scratch.NaiveSequential([scratch.NaiveDense(key1, 784, 512, jax.nn.relu),
                                 scratch.NaiveDense(key2, 512, 10, jax.nn.softmax)])
  start = time.perf_counter()
  weights = scratch.fit(net, flatten(train["image"]), train["label"], epochs=epochs, learning_rate=0.1)
  scratch_accuracy = float(scratch.evaluate(net, weights, flatten(test["image"]), test["label"]))
  scratch_seconds = time.perf_counter() - start
  print(f"from scratch: test accuracy {scratch_accuracy:.4f} ({scratch_seconds:.1f} s)")

  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(out) / "11_first_network.png"
  path.parent.mkdir(parents=True, exist_ok=True)
  fig, axes = plt.subplots(1, 3, figsize=(7, 2.6))
  for ax, image, guess in zip(axes, test["image"][:3], predicted):
    ax.imshow(image[..., 0], cmap="gray")
    ax.set_title(f"predicted: {guess}", fontsize=9)
    ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return {"jdl_test_accuracy": jdl_accuracy, "scratch_test_accuracy": scratch_accuracy, "jdl_seconds": jdl_seconds,
          "scratch_seconds": scratch_seconds, "figure": str(path)}


if __name__ == "__main__":
  import argparse

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a reduced size (what the tests run)")
  parser.add_argument("--out", default="lessons/out", help="where the figures go")
  args = parser.parse_args()
  for name, value in run(quick=args.quick, out=args.out).items():
    print(f"{name}: {value}")
