"""07 · Regularisation: L1 (exact zeros) vs L2 (small weights), weight decay in one step, early stopping.

Syllabus §4. Regularisation trades a little training fit for a network that generalises. An L2 penalty
lambda*||w||² pulls every weight towards zero in proportion to its size, so weights become small but rarely
zero; an L1 penalty lambda*||w||_1 pulls with a constant force, and with its proximal step (soft-thresholding)
the weights it pulls across zero become exactly zero: a sparse network. Weight decay is L2 inside the update:
one SGD step with it is w <- (1 - lr*lambda) w - lr*g. Biases and normalisation scales are not penalised
(they do not make the network more complex, and shrinking them only shifts its outputs). Early stopping keeps
the epoch with the best validation loss.

    python lessons/07_regularisation.py [--quick] [--out lessons/out]
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jdl
from jdl.train import EarlyStopping, create_train_state, fit, make_eval_step, make_train_step


def train(data, test, *, tx, regularizer=None, hidden=(), epochs, callbacks=(), seed=0):
  model = jdl.models.create("mlp", num_classes=10, hidden=hidden)
  state = create_train_state(model, tx, data["inputs"][:1], seed=seed)
  loss = jdl.losses.get("sparse_categorical_crossentropy")
  step = make_train_step(apply_fn=model.apply, loss_fn=loss, tx=tx, input_key="inputs", regularizer=regularizer)
  evaluate = make_eval_step(apply_fn=model.apply, loss_fn=loss, input_key="inputs")
  return fit(state, step, data, batch_size=32, epochs=epochs, eval_step=evaluate, eval_data=test, seed=seed,
             progress=False, callbacks=callbacks)


def run(quick: bool = False, out: str = "lessons/out") -> dict:
  train_data, test = jdl.data.load("digits", "train"), jdl.data.load("digits", "test")
  epochs = 10 if quick else 40
  lr = 0.05
  # Softmax regression on the 64 pixels: its kernel is what the penalties act on.
  runs = {
      "none": train(train_data, test, tx=optax.sgd(lr), epochs=epochs),
      "L2 (1e-2)": train(train_data, test, tx=optax.sgd(lr), regularizer=jdl.regularizers.l2(1e-2), epochs=epochs),
      "L1 as a penalty (1e-2)": train(train_data, test, tx=optax.sgd(lr), regularizer=jdl.regularizers.l1(1e-2),
                                      epochs=epochs),
      "L1, proximal (1e-2)": train(train_data, test, tx=optax.chain(optax.sgd(lr),
                                                                    jdl.regularizers.l1_proximal(1e-2, lr)),
                                   epochs=epochs),
  }
  kernels = {name: np.asarray(r.state.params["Dense_0"]["kernel"]).ravel() for name, r in runs.items()}
  zeros = {name: float(np.mean(k == 0.0)) for name, k in kernels.items()}
  accuracy = {name: r.history[-1]["eval_accuracy"] for name, r in runs.items()}
  for name in runs:
    print(f"{name:24s} test accuracy {accuracy[name]:.3f}   |w| mean {np.abs(kernels[name]).mean():.3f}   "
          f"exact zeros {zeros[name]:.0%}")

  # Weight decay in one SGD step: w <- (1 - lr * lam) * w - lr * g.
  lam, w, g = 0.1, jnp.array([2.0, -1.0, 0.5]), jnp.array([0.3, 0.3, 0.3])
  tx = optax.chain(optax.add_decayed_weights(lam), optax.sgd(lr))
  updates, _ = tx.update(g, tx.init(w), w)
  decay_error = float(jnp.max(jnp.abs(optax.apply_updates(w, updates) - ((1 - lr * lam) * w - lr * g))))
  print(f"one step of weight decay equals (1 - lr*lambda) w - lr g to {decay_error:.1e}")
  mask = jdl.regularizers.make_mask()  # the default: penalise kernels, not biases or normalisation scales
  params = runs["none"].state.params
  print("penalised:", {path: bool(on) for path, on in zip(jdl.regularizers.param_paths(params),
                                                           jax.tree.leaves(mask(params)))})

  # Early stopping: a wide MLP on 96 training images overfits; the best validation epoch is kept.
  small = {k: v[:96] for k, v in train_data.items()}
  stopper = EarlyStopping(monitor="eval_loss", patience=3 if quick else 5)
  overfit = train(small, test, tx=optax.adam(1e-2), hidden=(512,), epochs=40 if quick else 100,
                  callbacks=[stopper])
  eval_loss = [h["eval_loss"] for h in overfit.history]
  train_loss = [h["train_loss"] for h in overfit.history]
  print(f"early stopping: stopped after epoch {len(eval_loss)}, kept epoch {stopper.best_epoch} "
        f"(validation loss {min(eval_loss):.3f}; training loss went on falling to {train_loss[-1]:.3f})")

  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(out) / "07_regularisation.png"
  path.parent.mkdir(parents=True, exist_ok=True)
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
  bins = np.linspace(-0.6, 0.6, 61)
  for name, k in kernels.items():
    axes[0].hist(np.clip(k, -0.6, 0.6), bins=bins, histtype="step", label=f"{name} ({zeros[name]:.0%} zeros)")
  axes[0].set_yscale("log")
  axes[0].set_title("weights of a softmax regression on digits")
  axes[0].legend(fontsize=7)
  epochs_run = range(1, len(eval_loss) + 1)
  axes[1].plot(epochs_run, train_loss, label="training loss")
  axes[1].plot(epochs_run, eval_loss, label="validation loss")
  axes[1].axvline(stopper.best_epoch, color="gray", ls=":", label=f"kept: epoch {stopper.best_epoch}")
  axes[1].set_title("early stopping")
  axes[1].set_xlabel("epoch")
  axes[1].legend(fontsize=8)
  for ax in axes:
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return {"exact_zeros": zeros, "test_accuracy": accuracy, "weight_decay_error": decay_error,
          "early_stopping_best_epoch": stopper.best_epoch, "epochs_run": len(eval_loss), "figure": str(path)}


if __name__ == "__main__":
  import argparse

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a reduced size (what the tests run)")
  parser.add_argument("--out", default="lessons/out", help="where the figures go")
  args = parser.parse_args()
  for name, value in run(quick=args.quick, out=args.out).items():
    print(f"{name}: {value}")
