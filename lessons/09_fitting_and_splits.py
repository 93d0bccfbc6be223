"""09 · Under- and overfitting, and what the training, validation and test sets each decide.

Syllabus §1 and §2. A network too small for its data underfits: training and validation loss stay high
together. One too large for its data overfits: training loss keeps falling while validation loss turns back up.
Between them, validation loss is lowest. The training set fits the parameters; the validation set, held out
of it, chooses everything else (epochs, sizes, learning rates: jdl's default keeps train[90%:] for it); the test
set is looked at once, at the end, to report. The lesson trains three MLPs on the same 150 digits.

    python lessons/09_fitting_and_splits.py [--quick] [--out lessons/out]
"""

from __future__ import annotations

import pathlib

import optax

import jdl
from jdl.train import create_train_state, fit, make_eval_step, make_train_step

SIZES = {"too small (2 units)": (2,), "right-sized (64)": (64,), "too large (1024 x 2)": (1024, 1024)}


def run(quick: bool = False, out: str = "lessons/out") -> dict:
  train = {k: v[:150] for k, v in jdl.data.load("digits", "train[:90%]").items()}
  validation = jdl.data.load("digits", "train[90%:]")
  epochs = 15 if quick else 150
  curves = {}
  for name, hidden in SIZES.items():
    model = jdl.models.create("mlp", num_classes=10, hidden=hidden)
    tx = optax.adam(3e-3)
    loss = jdl.losses.get("sparse_categorical_crossentropy")
    result = fit(create_train_state(model, tx, train["inputs"][:1]),
                 make_train_step(apply_fn=model.apply, loss_fn=loss, tx=tx, input_key="inputs"), train,
                 batch_size=30, epochs=epochs, eval_data=validation, progress=False,
                 eval_step=make_eval_step(apply_fn=model.apply, loss_fn=loss, input_key="inputs"))
    curves[name] = ([h["train_loss"] for h in result.history], [h["eval_loss"] for h in result.history])
  summary = {}
  for name, (train_loss, val_loss) in curves.items():
    best = min(range(len(val_loss)), key=val_loss.__getitem__)
    summary[name] = {"final_train_loss": train_loss[-1], "best_validation_loss": val_loss[best],
                     "best_epoch": best + 1, "final_validation_loss": val_loss[-1]}
    print(f"{name:22s} train loss {train_loss[-1]:.3f}  validation loss: best {val_loss[best]:.3f} at epoch "
          f"{best + 1}, last {val_loss[-1]:.3f}")

  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(out) / "09_fitting.png"
  path.parent.mkdir(parents=True, exist_ok=True)
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), sharey=True)
  for ax, (name, (train_loss, val_loss)) in zip(axes, curves.items()):
    ax.plot(range(1, epochs + 1), train_loss, label="training")
    ax.plot(range(1, epochs + 1), val_loss, label="validation")
    ax.set_title(name)
    ax.set_xlabel("epoch")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("loss")
  axes[0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return {**summary, "figure": str(path)}


if __name__ == "__main__":
  import argparse

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a reduced size (what the tests run)")
  parser.add_argument("--out", default="lessons/out", help="where the figures go")
  args = parser.parse_args()
  for name, value in run(quick=args.quick, out=args.out).items():
    print(f"{name}: {value}")
