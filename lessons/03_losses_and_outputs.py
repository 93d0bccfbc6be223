"""03 · Losses and the outputs they pair with: why cross-entropy, not MSE, for classification.

Syllabus §2, §3 and §7. Each task has its output activation and loss: a sigmoid and binary cross-entropy for
binary (and multi-label) classification, a softmax and categorical cross-entropy for one of many classes, a
linear output and the mean squared error for regression. Targets are one-hot for one class, multi-hot for
several. Cross-entropy's gradient stays large when the prediction is confidently wrong, where MSE's vanishes:
the spam e-mail the network gives probability 0.1 costs 2.30 nats under cross-entropy and 0.81 under MSE, and
its gradient pushes the logit more than 5x harder. PyTorch's `CrossEntropyLoss` is log-softmax followed by the negative
log-likelihood; so is jdl's. A model with two heads trains on a dict of losses.

    python lessons/03_losses_and_outputs.py [--quick] [--out lessons/out]
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import jdl

PAIRS = (
    ("binary classification", "sigmoid", "binary_crossentropy", "0 or 1"),
    ("one of C classes", "softmax", "sparse_categorical_crossentropy", "class id (one-hot: categorical_)"),
    ("several labels per example", "sigmoid per label", "multilabel_binary_crossentropy", "multi-hot row"),
    ("regression", "none (linear)", "mse", "a number"),
)


def run(quick: bool = False, out: str = "lessons/out") -> dict:
  del quick  # everything here is a handful of numbers
  for task, activation, loss, target in PAIRS:
    print(f"{task:28s} output: {activation:18s} loss: {loss:32s} target: {target}")
  print("one-hot of class 2 of 4:", jdl.losses.one_hot(jnp.array([2]), 4)[0].tolist(),
        "   multi-hot of labels {0, 3}:", jdl.losses.multi_hot(jnp.array([[0, 3]]), 4)[0].tolist())

  # The spam e-mail: label 1, predicted probability 0.1 (logit log(0.1/0.9)).
  logit = jnp.log(0.1 / 0.9)
  bce = lambda z: -jnp.log(jax.nn.sigmoid(z))            # noqa: E731  (label 1)
  mse = lambda z: (1.0 - jax.nn.sigmoid(z)) ** 2         # noqa: E731
  spam = {"bce": float(bce(logit)), "mse": float(mse(logit)),
          "bce_gradient": float(jax.grad(bce)(logit)), "mse_gradient": float(jax.grad(mse)(logit))}
  print(f"spam at p=0.1: BCE {spam['bce']:.2f}, MSE {spam['mse']:.2f}; gradient on the logit "
        f"{spam['bce_gradient']:.2f} vs {spam['mse_gradient']:.3f} ({spam['bce_gradient'] / spam['mse_gradient']:.0f}x)")

  # Over a range of wrong predictions: MSE's gradient dies as the prediction gets more wrong.
  logits = jnp.linspace(-8.0, 4.0, 121)
  grad_bce = jax.vmap(jax.grad(bce))(logits)
  grad_mse = jax.vmap(jax.grad(mse))(logits)

  # jdl's sparse categorical cross-entropy is log-softmax + negative log-likelihood (PyTorch's CrossEntropyLoss).
  scores = jnp.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
  labels = jnp.array([0, 1])
  ce = jdl.losses.get("sparse_categorical_crossentropy")(scores, {"label": labels})
  nll = -jnp.take_along_axis(jax.nn.log_softmax(scores), labels[:, None], axis=1)[:, 0]
  ce_error = float(jnp.max(jnp.abs(ce - nll)))
  print(f"cross-entropy vs log-softmax + NLL: difference {ce_error:.1e}")

  # Two heads, one dict of losses (Keras' loss={...}): a class and a number from the same features.
  two_heads = jdl.losses.weighted({"cultivar": "sparse_categorical_crossentropy", "alcohol": "mse"},
                                  weights={"alcohol": 0.5})
  outputs = {"cultivar": scores, "alcohol": jnp.array([12.9, 13.4])}
  batch = {"label": {"cultivar": labels, "alcohol": jnp.array([13.0, 13.0])}}
  per_example = two_heads(outputs, batch)
  print("two-headed loss per example:", np.round(np.asarray(per_example), 4).tolist())

  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(out) / "03_losses.png"
  path.parent.mkdir(parents=True, exist_ok=True)
  fig, ax = plt.subplots(figsize=(5.5, 3.4))
  p = jax.nn.sigmoid(logits)
  ax.plot(p, -grad_bce, label="cross-entropy")
  ax.plot(p, -grad_mse, label="mean squared error")
  ax.axvline(0.1, color="gray", ls=":", label="the spam e-mail, p = 0.1")
  ax.set_xscale("log")
  ax.set_xlabel("predicted probability of the true class")
  ax.set_ylabel("push on the logit (−dL/dz)")
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return {**spam, "ce_vs_nll": ce_error, "two_heads_shape": tuple(per_example.shape), "figure": str(path)}


if __name__ == "__main__":
  import argparse

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a reduced size (what the tests run)")
  parser.add_argument("--out", default="lessons/out", help="where the figures go")
  args = parser.parse_args()
  for name, value in run(quick=args.quick, out=args.out).items():
    print(f"{name}: {value}")
