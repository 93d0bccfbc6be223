"""13 · Transfer learning, the "ideal" image of a class, and adversarial examples.

Syllabus §8. A network trained on one task has learned filters worth keeping: here a CNN trained on Fashion-MNIST's
tops, trousers, dresses and coats (classes 0-4) gives its convolutions to the other five classes (sandals,
shirts, sneakers, bags, ankle boots), learnt from 20 labelled images each, by feature extraction (the
convolutions frozen, a new head trained on their cached features) against the same network from scratch
(docs/transfer.md and `benchmarks/transfer.py` do it at scale, with ImageNet weights for your own photos).
Then the gradient of a class's score with respect to the input image: ascending it from noise (with a
total-variation penalty for smoothness) draws what the network thinks a "trouser" looks like; ascending the
loss instead, by a few small steps inside a box of radius eps (PGD), gives an image a person cannot tell from
the original that the network gets wrong.

`--quick` trains the source network briefly and leaves out the two transfer runs.

    python lessons/13_transfer_ideal_adversarial.py [--quick] [--out lessons/out]
"""

from __future__ import annotations

import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import jdl
from jdl.train import experiment, load_run


def _config(**changes):
  config = jdl.config.base_config()
  config.data.name = "fashion_mnist"
  config.data.batch_size = 64
  config.model.name = "cnn_small"
  config.model.options.features = (16, 32)
  config.model.options.kernel_size = 3
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2e-3
  config.progress = "false"
  config.tensorboard = False
  config.plot = False
  config.strategy = "single"
  config.checkpoint.monitor = ""
  for key, value in changes.items():
    group, _, leaf = key.rpartition(".")
    node = config
    for part in group.split(".") if group else ():
      node = node[part]
    with node.unlocked():
      node[leaf] = value
  return config


def run(quick: bool = False, out: str = "lessons/out") -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    source = experiment.train_and_evaluate(
        _config(**{"data.classes": (0, 1, 2, 3, 4), "data.train_split": "train[:25%]" if quick else "train[:90%]",
                   "data.batch_size": 32, "epochs": 2 if quick else 4}), f"{tmp}/source")
    print(f"source network, classes 0-4: test accuracy {source['test_accuracy']:.4f}")
    transfer = {}
    if not quick:  # two more trainings: the reduced version (the tests') leaves them out
      target = {"data.classes": (5, 6, 7, 8, 9), "data.train_per_class": 20, "data.batch_size": 20,
                "data.eval_split": "", "epochs": 60}
      scratch = experiment.train_and_evaluate(_config(**target), f"{tmp}/scratch")
      features = experiment.train_and_evaluate(
          _config(**target, **{"init_from": f"{tmp}/source", "init_from_skip": ("fc",),
                               "optimizer.freeze": ("conv_*", "bn_*"), "cache_features": True}), f"{tmp}/features")
      transfer = {"from scratch": scratch["test_accuracy"], "feature extraction": features["test_accuracy"]}
      print(f"classes 5-9 from 20 labels each: {transfer}")

    # The source network, back from its run: its "ideal" trouser and an adversarial example.
    run_ = load_run(f"{tmp}/source")
    logits_fn = run_.logits_fn()
    ideal = jdl.visualize.ideal_inputs(logits_fn, [1], (28, 28, 1), steps=64 if quick else 512,
                                       learning_rate=0.05, tv=0.5)
    test = run_.split("test")
    x, y = run_.inputs(test)[:200], test["label"][:200]
    eps = 0.1
    x_adv = jdl.attacks.pgd(logits_fn, x, y, eps=eps, step_size=0.025, steps=10, key=jax.random.key(0))
    clean = float(jnp.mean(jnp.argmax(logits_fn(x), -1) == y))
    attacked = float(jnp.mean(jnp.argmax(logits_fn(x_adv), -1) == y))
    largest_change = float(jnp.max(jnp.abs(x_adv - x)))
    print(f"ideal trouser: the network gives it probability {float(ideal['probability'][0]):.3f}")
    print(f"PGD at eps {eps}: accuracy {clean:.3f} -> {attacked:.3f}; no pixel moved more than {largest_change:.3f}")
    names = run_.class_names
    i = int(np.argmax(np.asarray((jnp.argmax(logits_fn(x), -1) == y) & (jnp.argmax(logits_fn(x_adv), -1) != y))))
    guess = names[int(jnp.argmax(logits_fn(x_adv[i:i + 1])))]

  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(out) / "13_ideal_and_adversarial.png"
  path.parent.mkdir(parents=True, exist_ok=True)
  fig, axes = plt.subplots(1, 3, figsize=(8, 3))
  axes[0].imshow(np.asarray(ideal["x"])[0, ..., 0], cmap="gray")
  axes[0].set_title(f"ideal '{names[1]}'", fontsize=9)
  axes[1].imshow(np.asarray(x)[i, ..., 0], cmap="gray", vmin=0, vmax=1)
  axes[1].set_title(f"a {names[int(y[i])]}", fontsize=9)
  axes[2].imshow(np.asarray(x_adv)[i, ..., 0], cmap="gray", vmin=0, vmax=1)
  axes[2].set_title(f"+ PGD (eps {eps}): '{guess}'", fontsize=9)
  for ax in axes:
    ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return {"source_test_accuracy": source["test_accuracy"], "transfer_test_accuracy": transfer,
          "ideal_probability": float(ideal["probability"][0]), "clean_accuracy": clean,
          "adversarial_accuracy": attacked, "largest_pixel_change": largest_change, "figure": str(path)}


if __name__ == "__main__":
  import argparse

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a reduced size (what the tests run)")
  parser.add_argument("--out", default="lessons/out", help="where the figures go")
  args = parser.parse_args()
  for name, value in run(quick=args.quick, out=args.out).items():
    print(f"{name}: {value}")
