"""08 · Dropout, ensembles, data augmentation and batch normalisation.

Syllabus §4 and §5. An ensemble averages the predictions of networks trained apart; they err differently, so the
average errs less, and the more diverse the members the more it gains. Dropout trains one network as if it were
many thinned ones sharing weights: a cheap approximation of an ensemble. Data augmentation (shifts, flips,
rotations) shows the network variants of its training images it must treat alike. BatchNorm normalises with the
batch's statistics: with small batches they are noisy, so its batches want to be a few dozen examples or more.
(`--quick` leaves out the three trainings.)

    python lessons/08_dropout_ensembles_augmentation.py [--quick] [--out lessons/out]
"""

from __future__ import annotations

import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import jdl
from jdl.data import augment
from jdl.train import experiment


def _config(**changes):
  """An MLP on scikit-learn's digits, as an experiment (what `jdl train` runs)."""
  config = jdl.config.base_config()
  config.data.name = "digits"
  config.data.batch_size = 32
  config.model.name = "mlp"
  config.model.options.hidden = (256,)
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.progress = "false"
  config.checkpoint.enabled = False
  config.tensorboard = False
  config.plot = False
  config.strategy = "single"
  for key, value in changes.items():
    group, _, leaf = key.rpartition(".")
    node = config
    for part in group.split(".") if group else ():
      node = node[part]
    with node.unlocked():
      node[leaf] = value
  return config


def run(quick: bool = False, out: str = "lessons/out") -> dict:
  accuracy, disagreement = {}, float("nan")
  if not quick:  # three trainings: the reduced version (the tests') leaves them out
    with tempfile.TemporaryDirectory() as tmp:
      # Fewer training images than usual, so that the networks overfit and the differences show.
      base = {"data.train_split": "train[:40%]", "epochs": 30}
      single = experiment.train_and_evaluate(_config(**base), f"{tmp}/single")
      dropout = experiment.train_and_evaluate(_config(**base, **{"model.options.dropout": 0.5}), f"{tmp}/dropout")
      ensemble = experiment.train_and_evaluate(_config(**base, **{"ensemble.members": 5}), f"{tmp}/ensemble")
    accuracy = {"one network": single["test_accuracy"], "with dropout 0.5": dropout["test_accuracy"],
                "ensemble of 5": ensemble["test_accuracy"],
                "best member of the 5": ensemble["test_best_member_accuracy"]}
    disagreement = ensemble["test_disagreement"]
    for name, value in accuracy.items():
      print(f"{name:22s} test accuracy {value:.4f}")
    print(f"the members disagree on {disagreement:.1%} of test images")

  # Augmentation: what the network sees of one image; and strength 0 changes nothing.
  images = jdl.data.load("fashion_mnist", "test[:8]")["image"]
  batch = {"image": jnp.asarray(images, jnp.float32) / 255.0, "label": jnp.zeros(8, jnp.int32)}
  variants = {}
  for spec in ("crop:3", "flip", "rotate:20", "cutout:10"):
    transform = augment.transforms(spec, "image")[0]
    variants[spec] = np.asarray(transform(None, batch, jax.random.key(1))["image"])
  identity = augment.transforms("rotate:0", "image")[0](None, batch, jax.random.key(1))["image"]
  identity_error = float(jnp.max(jnp.abs(identity - batch["image"])))
  print(f"rotate:0 leaves the images unchanged (largest difference {identity_error:.1e})")

  # BatchNorm's statistics from a batch: the noise of the batch mean of one feature, by batch size.
  feature = np.random.default_rng(0).normal(1.0, 2.0, 100_000)
  noise = {size: float(np.std([feature[i:i + size].mean() for i in range(0, 20_000, size)]))
           for size in (4, 16, 64, 256)}
  print("standard deviation of a batch's mean (true mean 1, sd 2):",
        {k: round(v, 3) for k, v in noise.items()}, "- it shrinks as 2/sqrt(batch)")

  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(out) / "08_augmentation.png"
  path.parent.mkdir(parents=True, exist_ok=True)
  fig, axes = plt.subplots(len(variants) + 1, 6, figsize=(7, 6.5))
  rows = {"original": np.asarray(batch["image"]), **variants}
  for r, (name, imgs) in enumerate(rows.items()):
    for c in range(6):
      axes[r, c].imshow(imgs[c, ..., 0], cmap="gray", vmin=0, vmax=1)
      axes[r, c].axis("off")
    axes[r, 0].set_title(name, fontsize=8, loc="left")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return {"test_accuracy": accuracy, "disagreement": disagreement,
          "augment_identity_error": identity_error, "batch_mean_noise": noise, "figure": str(path)}


if __name__ == "__main__":
  import argparse

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a reduced size (what the tests run)")
  parser.add_argument("--out", default="lessons/out", help="where the figures go")
  args = parser.parse_args()
  for name, value in run(quick=args.quick, out=args.out).items():
    print(f"{name}: {value}")
