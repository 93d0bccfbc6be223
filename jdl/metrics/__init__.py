"""Evaluation metrics: functional, mergeable states and scikit-learn-style one-shots.

**Metric states.** Each metric is an immutable pytree (a ``flax.struct``
dataclass; its configuration — ``num_classes``, ``k``, ``capacity`` ... — is
static, its statistics are arrays) with four methods:

* ``Metric.empty(**config)`` — the state before any data (also via
  ``get(name, **config)``);
* ``state.update(outputs, labels, mask=None)`` — pure, returns a new state;
  works inside ``jax.jit`` and ``lax.scan`` (fixed shapes and dtypes);
  ``mask`` is ``[B]`` with 0 marking padded examples, which are ignored;
* ``state.merge(other)`` — combines states of disjoint data (batches, hosts);
  ``state.merge_across(axis_name)`` does it across the devices of a
  ``shard_map``/``pmap`` axis (``psum``, or ``all_gather`` where a sum does not
  merge); ``merge_stacked`` folds a leading device axis;
* ``state.compute()`` — the value (jit-able; NaN when undefined, with a
  :class:`MetricWarning` when called outside a trace).

So for any split of a dataset into batches (of any sizes, padded or not) and
devices, updating and merging gives the value of the one-shot computation on
the whole dataset.

``outputs`` are what the model returns: ``[B, C]`` scores/logits (argmax for
class metrics), ``[B]``/``[B, 1]`` binary scores (class 1 when ``> threshold``,
default 0.0 for logits), or integer class ids. ``labels`` are integer ids or
one-hot rows (multi-hot for multi-label metrics).

**Curve metrics** (AUROC, PR curve, average precision, mAP) are exact: their
state is a preallocated buffer of ``capacity`` examples (scores, labels,
validity) that ``update`` fills in order; ``compute`` sorts it. Choose
``capacity >=`` the number of examples evaluated (e.g. the test-set size); past
it examples are counted in ``dropped`` and ``compute`` returns NaN (warning)
instead of a silently partial value. Merging concatenates buffers. Thresholds
/ bins (approximate, constant memory) are not implemented.

**One-shot functions** take ``(y_true, y_pred_or_scores)`` in scikit-learn's
order, compute exactly on the host in float64 NumPy (the jit-able states use
float32) and return Python floats / NumPy arrays: :func:`confusion_matrix`,
:func:`precision_recall_f1`, :func:`roc_auc`, :func:`roc_curve`,
:func:`average_precision`, :func:`precision_recall_curve`,
:func:`top_k_accuracy`, :func:`accuracy`, :func:`mean_absolute_error`,
:func:`mean_squared_error`, :func:`root_mean_squared_error`,
:func:`r2_score`, :func:`classification_report`, :func:`plot_confusion_matrix`.

Example:

  >>> import jax, jax.numpy as jnp
  >>> import jdl.metrics as M
  >>> metrics = M.collection(["accuracy", "f1"], num_classes=3, average="macro")
  >>> sorted(metrics)
  ['accuracy', 'f1_macro']
  >>> logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
  >>> metrics = jax.jit(M.update_all)(metrics, logits, jnp.array([0, 2, 2]), jnp.array([1, 1, 0]))
  >>> M.compute_all(metrics)
  {'accuracy': 0.5, 'f1_macro': 0.3333333432674408}
"""

from __future__ import annotations

from jdl.metrics._base import (  # noqa: F401
    AVERAGES,
    Metric,
    MetricWarning,
    merge_across,
    merge_stacked,
    update_all,
)
from jdl.metrics.classification import (  # noqa: F401
    Accuracy,
    ConfusionMatrix,
    F1,
    Precision,
    PrecisionRecallF1,
    Recall,
    TopKAccuracy,
)
from jdl.metrics.ranking import (  # noqa: F401
    AUROC,
    AveragePrecision,
    PrecisionAtK,
    RecallAtK,
)
from jdl.metrics.regression import (  # noqa: F401
    MeanAbsoluteError,
    MeanSquaredError,
    R2Score,
    RootMeanSquaredError,
)
from jdl.metrics.registry import (  # noqa: F401
    METRICS,
    collection,
    compute_all,
    get,
    list_metrics,
    register,
)
from jdl.metrics.specs import (  # noqa: F401
    MetricSpec,
    parse_spec,
    parse_specs,
)
from jdl.metrics.oneshot import (  # noqa: F401
    accuracy,
    average_precision,
    confusion_matrix,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_curve,
    precision_recall_f1,
    r2_score,
    roc_auc,
    roc_curve,
    root_mean_squared_error,
    top_k_accuracy,
)
from jdl.metrics.reports import (  # noqa: F401
    classification_report,
    plot_confusion_matrix,
)


__all__ = [
    "AUROC", "Accuracy", "AveragePrecision", "ConfusionMatrix", "F1", "MeanAbsoluteError", "MeanSquaredError",
    "Metric", "MetricSpec", "MetricWarning", "Precision", "PrecisionAtK", "PrecisionRecallF1", "R2Score",
    "Recall", "RecallAtK", "RootMeanSquaredError", "TopKAccuracy", "accuracy", "average_precision",
    "classification_report", "collection", "compute_all", "confusion_matrix", "get", "list_metrics",
    "mean_absolute_error", "mean_squared_error", "merge_across", "merge_stacked", "parse_spec", "parse_specs",
    "plot_confusion_matrix", "precision_recall_curve", "precision_recall_f1", "r2_score", "register", "roc_auc",
    "roc_curve", "root_mean_squared_error", "top_k_accuracy", "update_all",
]
