"""10 · Evaluation: the confusion matrix and everything read from it, ROC and AUROC, mAP, precision@k.

Syllabus §7. The slides' three-class example: 15 animals, each a cat, a dog or a rabbit, and a classifier's
guesses. Per class, a true positive is a hit, a false positive a wrong claim of that class (a type I error), a
false negative a miss of it (a type II error), a true negative everything else. Precision = TP/(TP+FP), recall =
TP/(TP+FN), F1 their harmonic mean; macro averages treat classes alike, micro averages pool the counts. For
scores, the ROC curve plots the true- against the false-positive rate over all thresholds, and AUROC is its
area; average precision summarises the precision-recall curve, mAP averages it over labels; precision@k and
recall@k look at each example's k best-ranked labels. Every figure is checked against scikit-learn.

    python lessons/10_evaluation.py [--quick] [--out lessons/out]
"""

from __future__ import annotations

import pathlib

import jax.numpy as jnp
import numpy as np
import sklearn.metrics

import jdl

CLASSES = ("cat", "dog", "rabbit")
Y_TRUE = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2])
Y_PRED = np.array([0, 0, 0, 1, 2, 1, 1, 1, 0, 1, 1, 2, 2, 0, 1])


def run(quick: bool = False, out: str = "lessons/out") -> dict:
  cm = jdl.metrics.confusion_matrix(Y_TRUE, Y_PRED, num_classes=3)
  print("confusion matrix (rows: true, columns: predicted)\n", cm)
  table = {}
  for c, name in enumerate(CLASSES):
    tp = int(cm[c, c])
    fp = int(cm[:, c].sum() - tp)   # type I errors: claimed c, was not
    fn = int(cm[c, :].sum() - tp)   # type II errors: was c, missed
    tn = int(cm.sum() - tp - fp - fn)
    table[name] = {"TP": tp, "FP": fp, "FN": fn, "TN": tn, "precision": tp / (tp + fp), "recall": tp / (tp + fn)}
    print(f"{name:7s} TP {tp}  FP {fp}  FN {fn}  TN {tn}  precision {tp / (tp + fp):.3f}  recall {tp / (tp + fn):.3f}")
  ours = jdl.metrics.precision_recall_f1(Y_TRUE, Y_PRED, num_classes=3, average="macro")
  theirs = sklearn.metrics.precision_recall_fscore_support(Y_TRUE, Y_PRED, average="macro")[:3]
  accuracy = jdl.metrics.accuracy(Y_TRUE, Y_PRED)
  print(f"accuracy {accuracy:.3f}; macro precision, recall, F1 {np.round(ours, 3).tolist()} "
        f"(scikit-learn {np.round(theirs, 3).tolist()})")
  prf_error = float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))))

  # Scores: is it a dog? ROC, AUROC, average precision; mAP over the three one-vs-rest tasks; precision@k.
  rng = np.random.default_rng(0)
  n = 40 if quick else 400
  labels = rng.integers(0, 3, n)
  scores = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[labels]      # a decent but imperfect classifier
  is_dog = (labels == 1).astype(int)
  auroc = jdl.metrics.roc_auc(is_dog, scores[:, 1])
  fpr, tpr, _ = jdl.metrics.roc_curve(is_dog, scores[:, 1])
  onehot = np.eye(3)[labels]
  ap = [jdl.metrics.average_precision(onehot[:, c], scores[:, c]) for c in range(3)]
  # precision@k and recall@k rank each example's labels: how many of its k best-scored are relevant.
  precision_at_2 = jdl.metrics.get("precision_at_k", k=2).update(jnp.asarray(scores), jnp.asarray(onehot)).compute()
  recall_at_2 = jdl.metrics.get("recall_at_k", k=2).update(jnp.asarray(scores), jnp.asarray(onehot)).compute()
  top2 = np.argsort(-scores, axis=1)[:, :2]
  hits = np.take_along_axis(onehot, top2, axis=1).sum(axis=1)
  checks = {"auroc": (auroc, sklearn.metrics.roc_auc_score(is_dog, scores[:, 1])),
            "map": (float(np.mean(ap)), sklearn.metrics.average_precision_score(onehot, scores, average="macro")),
            "precision_at_2": (float(precision_at_2), float(np.mean(hits / 2))),
            "recall_at_2": (float(recall_at_2), float(np.mean(hits / onehot.sum(axis=1))))}
  for name, (mine, reference) in checks.items():
    print(f"{name:15s} {mine:.4f}   (reference {reference:.4f})")
  metric_error = max(abs(a - b) for a, b in checks.values())

  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  folder = pathlib.Path(out)
  folder.mkdir(parents=True, exist_ok=True)
  confusion_path = folder / "10_confusion.png"
  plt.close(jdl.metrics.plot_confusion_matrix(cm, class_names=CLASSES, path=str(confusion_path),
                                              title="the slides' three-class example"))
  path = folder / "10_roc.png"
  fig, ax = plt.subplots(figsize=(4.5, 3.8))
  ax.plot(fpr, tpr, label=f"dog vs rest, AUROC {auroc:.3f}")
  ax.plot([0, 1], [0, 1], ":", color="gray", label="chance")
  ax.set_xlabel("false-positive rate")
  ax.set_ylabel("true-positive rate")
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return {"per_class": table, "accuracy": accuracy, "prf_vs_sklearn": prf_error, "metrics_vs_reference": metric_error,
          "figure": str(confusion_path), "roc_figure": str(path)}


if __name__ == "__main__":
  import argparse

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a reduced size (what the tests run)")
  parser.add_argument("--out", default="lessons/out", help="where the figures go")
  args = parser.parse_args()
  for name, value in run(quick=args.quick, out=args.out).items():
    print(f"{name}: {value}")
