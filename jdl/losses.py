"""Per-example losses, label encoders, loss combinators and the loss registry.

A loss, as the train step sees it, is ``loss_fn(outputs, batch) -> per-example
array``; the caller reduces it (with the batch's ``mask`` when there is one, see
:func:`masked_mean`). The plain functions (``sparse_categorical_crossentropy(
logits, labels)``) are the building blocks and take ``(outputs, targets)`` in
that order, like optax; ``get(name, **options)`` turns a name into the
``(outputs, batch)`` form, reading the target from ``batch["label"]``.

Which loss for which output layer:

* one sigmoid unit (binary): ``binary_crossentropy`` on the logit;
* softmax over C classes: ``sparse_categorical_crossentropy`` (integer labels)
  or ``categorical_crossentropy`` (one-hot / soft labels);
* L independent sigmoids (multi-label): ``multilabel_binary_crossentropy``;
* real-valued outputs (regression): ``mse``, ``mae``, ``huber`` (``rmse`` for
  reporting).

Every cross-entropy takes logits by default (``from_logits=True``), which is
both what jdl models return and the numerically stable choice.

Example:

  >>> import jax.numpy as jnp
  >>> import jdl.losses
  >>> loss_fn = jdl.losses.get("sparse_categorical_crossentropy", label_smoothing=0.1)
  >>> batch = {"label": jnp.array([0, 2]), "mask": jnp.array([1.0, 0.0])}
  >>> per_example = loss_fn(jnp.zeros((2, 3)), batch)
  >>> per_example.shape
  (2,)
  >>> round(float(jdl.losses.masked_mean(per_example, batch["mask"])), 4)  # log(3)
  1.0986
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdl.registry import Registry

LossFn = Callable[[Any, dict[str, Any]], jax.Array]
"""``loss_fn(outputs, batch) -> per-example loss`` (the registry's form)."""

Regularizer = Callable[[Any], jax.Array]
"""``regularizer(params) -> scalar`` (see :mod:`jdl.regularizers`)."""

_EPSILON = 1e-7


# --------------------------------------------------------------------------- #
# Helpers.
# --------------------------------------------------------------------------- #


def _is_concrete(x: Any) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _as_float(x: Any, name: str, fn: str) -> jax.Array:
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{fn}: {name} must be a floating-point array, got dtype {x.dtype}")
  return x


def _check_label_smoothing(label_smoothing: float, fn: str) -> None:
  if not 0.0 <= float(label_smoothing) <= 1.0:
    raise ValueError(f"{fn}: label_smoothing must be in [0, 1], got {label_smoothing!r}")


def _squeeze_binary(outputs: jax.Array, labels: jax.Array, fn: str) -> tuple[jax.Array, jax.Array]:
  """Accepts ``[B]`` or ``[B, 1]`` for either; returns both as ``[B]``."""
  if outputs.ndim == 2 and outputs.shape[1] == 1:
    outputs = outputs[:, 0]
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  if outputs.ndim != 1 or outputs.shape != labels.shape:
    raise ValueError(
        f"{fn}: outputs and labels must hold one score/target per example, [B] or [B, 1]; got outputs "
        f"{outputs.shape} and labels {labels.shape} (several labels per example: use "
        f"multilabel_binary_crossentropy)")
  return outputs, labels


def _match_regression(predictions: Any, targets: Any, fn: str) -> tuple[jax.Array, jax.Array]:
  """Shapes must agree; a ``[B, 1]`` head against ``[B]`` targets is squeezed.

  Refusing other shape pairs avoids the silent ``[B, 1] - [B] -> [B, B]``
  broadcast.
  """
  predictions = _as_float(predictions, "predictions", fn)
  targets = jnp.asarray(targets, dtype=predictions.dtype)
  if predictions.ndim == targets.ndim + 1 and predictions.shape[-1] == 1:
    predictions = predictions[..., 0]
  if predictions.shape != targets.shape:
    raise ValueError(
        f"{fn}: predictions and targets must have the same shape; got predictions "
        f"{predictions.shape} and targets {targets.shape}")
  return predictions, targets


def _mean_over_features(x: jax.Array) -> jax.Array:
  """Per-example mean over every axis after the first (identity for ``[B]``)."""
  return x if x.ndim <= 1 else jnp.mean(x, axis=tuple(range(1, x.ndim)))


def masked_mean(values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  r"""Mean of per-example values over the real (unpadded) examples.

  .. math:: \bar\ell = \frac{\sum_i m_i \ell_i}{\max(\sum_i m_i, \epsilon)}

  An all-padding batch gives 0 rather than NaN.

  Args:
    values: per-example values, ``[B, ...]``.
    mask: ``[B]`` (or any prefix of ``values.shape``); 1 = real example,
      0 = padding. ``None`` means every example is real.

  Returns:
    a scalar.

  Example:
    >>> float(masked_mean(jnp.array([1.0, 3.0, 100.0]), jnp.array([1, 1, 0])))
    2.0
  """
  values = jnp.asarray(values)
  if mask is None:
    return jnp.mean(values)
  mask = jnp.asarray(mask)
  if mask.shape != values.shape[:mask.ndim]:
    raise ValueError(
        f"masked_mean: mask shape must be a prefix of the values' shape {values.shape}, "
        f"got mask {mask.shape}")
  mask = mask.astype(values.dtype).reshape(mask.shape + (1,) * (values.ndim - mask.ndim))
  weights = jnp.broadcast_to(mask, values.shape)
  total = jnp.sum(weights)
  return jnp.sum(values * weights) / jnp.where(total > 0, total, 1.0)


# --------------------------------------------------------------------------- #
# Label encoders.
# --------------------------------------------------------------------------- #


def _check_num_classes(num_classes: Any, fn: str) -> int:
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
    raise TypeError(f"{fn}: num_classes must be an int, got {type(num_classes).__name__} {num_classes!r}")
  if num_classes < 1:
    raise ValueError(f"{fn}: num_classes must be >= 1, got {num_classes}")
  return int(num_classes)


def one_hot(labels: Any, num_classes: int, *, dtype: Any = jnp.float32) -> jax.Array:
  """Encodes integer class ids as one-hot rows.

  Args:
    labels: integer class ids, shape ``[...]``.
    num_classes: C.
    dtype: the output dtype.

  Returns:
    ``[..., C]`` with a single 1 per row. Concrete labels outside ``[0, C)``
    raise; under ``jit`` they cannot be checked and encode as all-zero rows.

  Raises:
    ValueError: bad ``num_classes`` or (concrete) out-of-range labels.

  Example:
    >>> one_hot(jnp.array([2, 0]), 3)
    Array([[0., 0., 1.],
           [1., 0., 0.]], dtype=float32)
  """
  num_classes = _check_num_classes(num_classes, "one_hot")
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"one_hot: labels must be integer class ids, got dtype {labels.dtype}")
  if _is_concrete(labels) and labels.size:
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
      raise ValueError(
          f"one_hot: labels must lie in [0, num_classes={num_classes}), got values in [{lo}, {hi}]")
  return jax.nn.one_hot(labels, num_classes, dtype=dtype)


def multi_hot(labels: Any, num_classes: int, *, dtype: Any = jnp.float32) -> jax.Array:
  """Encodes sets of class ids (multi-label targets) as multi-hot rows.

  Args:
    labels: either a padded integer array ``[B, K]`` whose entries ``-1`` are
      padding, or a Python sequence of ``B`` sequences of class ids (ragged;
      padded here). Repeated ids count once.
    num_classes: C.
    dtype: the output dtype.

  Returns:
    ``[B, C]`` with a 1 at every listed class.

  Raises:
    ValueError: bad ``num_classes`` or (concrete) ids outside ``[-1, C)``.

  Example:
    >>> multi_hot([[0, 2], [], [1, 1]], 3)
    Array([[1., 0., 1.],
           [0., 0., 0.],
           [0., 1., 0.]], dtype=float32)
  """
  num_classes = _check_num_classes(num_classes, "multi_hot")
  if isinstance(labels, Sequence) and not isinstance(labels, (str, bytes)):
    rows = [list(row) for row in labels]
    width = max([len(row) for row in rows] + [1])
    padded = np.full((len(rows), width), -1, dtype=np.int32)
    for i, row in enumerate(rows):
      padded[i, :len(row)] = row
    labels = padded
  labels = jnp.asarray(labels)
  if labels.ndim != 2 or not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(
        f"multi_hot: labels must be a padded integer array [B, K] (-1 = padding) or a list "
        f"of lists of ints; got shape {labels.shape} dtype {labels.dtype}")
  if _is_concrete(labels) and labels.size:
    lo, hi = int(labels.min()), int(labels.max())
    if lo < -1 or hi >= num_classes:
      raise ValueError(
          f"multi_hot: class ids must lie in [0, num_classes={num_classes}) (-1 = padding), "
          f"got values in [{lo}, {hi}]")
  # one_hot(-1) is an all-zero row, so padding drops out of the max.
  return jnp.max(jax.nn.one_hot(labels, num_classes, dtype=dtype), axis=-2, initial=0)


# --------------------------------------------------------------------------- #
# Classification losses.
# --------------------------------------------------------------------------- #


def binary_crossentropy(outputs: jax.Array, labels: jax.Array, *, from_logits: bool = True,
                        label_smoothing: float = 0.0, epsilon: float = _EPSILON) -> jax.Array:
  r"""Binary cross-entropy, one value per example.

  With :math:`p = \sigma(z)` and a target :math:`y \in [0, 1]`:

  .. math:: \ell = -y \log p - (1 - y) \log(1 - p)

  From logits this is computed as ``-y log_sigmoid(z) - (1-y) log_sigmoid(-z)``
  (via ``optax.losses.sigmoid_binary_cross_entropy``), finite with a finite
  gradient even for ``|z| = 1e4``. From probabilities, ``p`` is clipped to
  ``[epsilon, 1 - epsilon]`` (the gradient is zero outside that range).

  Args:
    outputs: one logit (or probability) per example, ``[B]`` or ``[B, 1]``.
    labels: targets in ``[0, 1]``, ``[B]`` or ``[B, 1]``.
    from_logits: whether ``outputs`` are logits (default) or probabilities.
    label_smoothing: ``y <- y (1 - s) + s / 2``.
    epsilon: probability clipping for ``from_logits=False``.

  Returns:
    ``[B]``.

  Example:
    >>> binary_crossentropy(jnp.array([0.0, 1e4]), jnp.array([1.0, 1.0]))
    Array([0.6931472, 0.       ], dtype=float32)
  """
  fn = "binary_crossentropy"
  _check_label_smoothing(label_smoothing, fn)
  outputs = _as_float(outputs, "outputs", fn)
  labels = jnp.asarray(labels)
  outputs, labels = _squeeze_binary(outputs, labels, fn)
  return _elementwise_bce(outputs, labels.astype(outputs.dtype), from_logits, label_smoothing, epsilon)


def _elementwise_bce(outputs: jax.Array, labels: jax.Array, from_logits: bool,
                     label_smoothing: float, epsilon: float) -> jax.Array:
  if label_smoothing:
    labels = labels * (1.0 - label_smoothing) + 0.5 * label_smoothing
  if from_logits:
    return optax.losses.sigmoid_binary_cross_entropy(outputs, labels)
  probs = jnp.clip(outputs, epsilon, 1.0 - epsilon)
  return -labels * jnp.log(probs) - (1.0 - labels) * jnp.log1p(-probs)


def multilabel_binary_crossentropy(outputs: jax.Array, labels: jax.Array, *, from_logits: bool = True,
                                   label_smoothing: float = 0.0, reduction: str = "mean",
                                   epsilon: float = _EPSILON) -> jax.Array:
  r"""Per-label binary cross-entropy, reduced over the labels of each example.

  For L independent sigmoid outputs (multi-label classification):

  .. math:: \ell = \frac{1}{L} \sum_{l=1}^{L} \mathrm{BCE}(z_l, y_l)
     \quad (\text{``reduction="mean"``, the default, as Keras})

  or the sum over labels with ``reduction="sum"``.

  Args:
    outputs: ``[B, L]`` logits (or probabilities with ``from_logits=False``).
    labels: ``[B, L]`` multi-hot targets (see :func:`multi_hot`).
    from_logits: whether ``outputs`` are logits.
    label_smoothing: ``y <- y (1 - s) + s / 2``.
    reduction: ``"mean"`` or ``"sum"`` over the L labels.
    epsilon: probability clipping for ``from_logits=False``.

  Returns:
    ``[B]``.

  Example:
    >>> multilabel_binary_crossentropy(jnp.zeros((1, 4)), jnp.array([[1, 0, 1, 0]]))
    Array([0.6931472], dtype=float32)
  """
  fn = "multilabel_binary_crossentropy"
  _check_label_smoothing(label_smoothing, fn)
  if reduction not in ("mean", "sum"):
    raise ValueError(f"{fn}: reduction must be 'mean' or 'sum', got {reduction!r}")
  outputs = _as_float(outputs, "outputs", fn)
  labels = jnp.asarray(labels)
  if outputs.ndim < 2 or outputs.shape != labels.shape:
    raise ValueError(
        f"{fn}: outputs and labels must both be [B, L] with the same shape; got outputs "
        f"{outputs.shape} and labels {labels.shape}")
  per_label = _elementwise_bce(outputs, labels.astype(outputs.dtype), from_logits, label_smoothing, epsilon)
  axes = tuple(range(1, per_label.ndim))
  return jnp.mean(per_label, axis=axes) if reduction == "mean" else jnp.sum(per_label, axis=axes)


def categorical_crossentropy(outputs: jax.Array, labels: jax.Array, *, from_logits: bool = True,
                             label_smoothing: float = 0.0, epsilon: float = _EPSILON) -> jax.Array:
  r"""Softmax cross-entropy against one-hot or soft labels, one value per example.

  .. math:: \ell = -\sum_c y_c \log \mathrm{softmax}(z)_c

  Label smoothing replaces ``y`` by ``(1 - s) y + s / C``
  (``optax.smooth_labels``).

  Args:
    outputs: ``[B, C]`` logits (or probabilities summing to 1 with
      ``from_logits=False``; those are clipped to ``[epsilon, 1]``).
    labels: ``[B, C]`` one-hot rows or any distributions over the C classes.
    from_logits: whether ``outputs`` are logits.
    label_smoothing: the smoothing mass s in ``[0, 1]``.
    epsilon: probability clipping for ``from_logits=False``.

  Returns:
    ``[B]``.

  Example:
    >>> categorical_crossentropy(jnp.zeros((1, 4)), jnp.array([[0.0, 1.0, 0.0, 0.0]]))
    Array([1.3862944], dtype=float32)
  """
  fn = "categorical_crossentropy"
  _check_label_smoothing(label_smoothing, fn)
  outputs = _as_float(outputs, "outputs", fn)
  labels = jnp.asarray(labels)
  if outputs.ndim < 1 or outputs.shape != labels.shape:
    raise ValueError(
        f"{fn}: labels must be one-hot/soft rows with the outputs' shape [B, C]; got outputs "
        f"{outputs.shape} and labels {labels.shape} (integer labels: use "
        f"sparse_categorical_crossentropy)")
  labels = labels.astype(outputs.dtype)
  if label_smoothing:
    labels = optax.smooth_labels(labels, label_smoothing)
  if from_logits:
    return optax.losses.softmax_cross_entropy(outputs, labels)
  return -jnp.sum(labels * jnp.log(jnp.clip(outputs, epsilon, 1.0)), axis=-1)


def sparse_categorical_crossentropy(logits: jax.Array, labels: jax.Array, *, from_logits: bool = True,
                                    label_smoothing: float = 0.0, epsilon: float = _EPSILON) -> jax.Array:
  r"""Softmax cross-entropy against integer labels, one value per example.

  .. math:: \ell = -\log \mathrm{softmax}(z)_y = \log\sum_c e^{z_c} - z_y

  Args:
    logits_BxC: unnormalised scores (probabilities with ``from_logits=False``).
    labels_B: integer class ids in ``[0, C)``.
    from_logits: whether ``logits`` are logits.
    label_smoothing: as :func:`categorical_crossentropy` on ``one_hot(labels)``.
    epsilon: probability clipping for ``from_logits=False``.

  Returns:
    per-example loss, shape ``labels.shape``.

  Raises:
    ValueError: mismatched shapes, or concrete labels outside ``[0, C)``
      (traced ones cannot be checked; their loss is NaN).

  Example:
    >>> sparse_categorical_crossentropy(jnp.array([[0.0, 0.0]]), jnp.array([1]))
    Array([0.6931472], dtype=float32)
  """
  fn = "sparse_categorical_crossentropy"
  _check_label_smoothing(label_smoothing, fn)
  logits = _as_float(logits, "logits", fn)
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(
        f"{fn}: labels must be integer class ids, got dtype {labels.dtype} "
        f"(one-hot labels: use categorical_crossentropy)")
  if logits.ndim < 1 or labels.shape != logits.shape[:-1]:
    raise ValueError(
        f"{fn}: labels must have the logits' shape without the class axis; got logits "
        f"{logits.shape} and labels {labels.shape}")
  if _is_concrete(labels) and labels.size:  # under jit they cannot be checked (and give NaN)
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= logits.shape[-1]:
      raise ValueError(
          f"{fn}: labels must lie in [0, C={logits.shape[-1]}) for logits {logits.shape}; got labels "
          f"{labels.shape} with values in [{lo}, {hi}]")
  if label_smoothing or not from_logits:
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return categorical_crossentropy(logits, onehot, from_logits=from_logits,
                                    label_smoothing=label_smoothing, epsilon=epsilon)
  return optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)


def hinge(outputs: jax.Array, labels: jax.Array) -> jax.Array:
  r"""Binary hinge loss (SVM), one value per example.

  .. math:: \ell = \max(0, 1 - t\, f), \qquad t = +1 \text{ if } y > 0 \text{ else } -1

  so labels may be given as {0, 1} or {-1, +1}. Multi-output ``[B, L]``
  scores are averaged over L.

  Args:
    outputs: raw scores f, ``[B]``, ``[B, 1]`` or ``[B, L]``.
    labels: same shape, {0, 1} or {-1, +1}.

  Returns:
    ``[B]``.

  Example:
    >>> hinge(jnp.array([0.3, -2.0]), jnp.array([1, 0]))
    Array([0.7, 0. ], dtype=float32)
  """
  fn = "hinge"
  outputs = _as_float(outputs, "outputs", fn)
  labels = jnp.asarray(labels)
  if outputs.shape != labels.shape:
    outputs, labels = _squeeze_binary(outputs, labels, fn)
  signs = jnp.where(labels > 0, 1.0, -1.0).astype(outputs.dtype)
  return _mean_over_features(optax.losses.hinge_loss(outputs, signs))


def multiclass_hinge(logits: jax.Array, labels: jax.Array) -> jax.Array:
  r"""Crammer–Singer multi-class hinge loss against integer labels.

  .. math:: \ell = \max_c \left(z_c + [c \ne y]\right) - z_y

  (``optax.losses.multiclass_hinge_loss``).

  Args:
    logits: ``[B, C]`` scores.
    labels: ``[B]`` integer class ids.

  Returns:
    ``[B]``.

  Example:
    >>> multiclass_hinge(jnp.array([[2.0, 1.5, 0.0]]), jnp.array([0]))
    Array([0.5], dtype=float32)
  """
  fn = "multiclass_hinge"
  logits = _as_float(logits, "logits", fn)
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer) or labels.shape != logits.shape[:-1]:
    raise ValueError(
        f"{fn}: labels must be integer class ids of shape {logits.shape[:-1]}, got "
        f"shape {labels.shape} dtype {labels.dtype}")
  return optax.losses.multiclass_hinge_loss(logits, labels)


# --------------------------------------------------------------------------- #
# Regression losses.
# --------------------------------------------------------------------------- #


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  r"""Squared error, averaged over each example's outputs.

  .. math:: \ell_i = \frac{1}{D} \sum_d (\hat y_{id} - y_{id})^2

  Args:
    predictions: ``[B]``, ``[B, 1]`` (against ``[B]`` targets) or ``[B, ...]``.
    targets: the predictions' shape.

  Returns:
    ``[B]``.

  Example:
    >>> mse(jnp.array([[1.0, 3.0]]), jnp.array([[0.0, 0.0]]))
    Array([5.], dtype=float32)
  """
  predictions, targets = _match_regression(predictions, targets, "mse")
  return _mean_over_features(jnp.square(predictions - targets))


def rmse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  r"""Root of each example's mean squared error.

  .. math:: \ell_i = \sqrt{\tfrac{1}{D} \textstyle\sum_d (\hat y_{id} - y_{id})^2}

  For scalar targets this is :math:`|\hat y_i - y_i|`. Note that the mean of
  per-example RMSEs is *not* the dataset RMSE :math:`\sqrt{\mathrm{MSE}}` (use
  ``jdl.metrics`` for that). The gradient at exactly zero error is 0 (not NaN).

  Args:
    predictions: as :func:`mse`.
    targets: as :func:`mse`.

  Returns:
    ``[B]``.

  Example:
    >>> rmse(jnp.array([[1.0, 1.0]]), jnp.array([[4.0, -3.0]]))
    Array([3.535534], dtype=float32)
  """
  per_example = mse(predictions, targets)
  positive = per_example > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, per_example, 1.0)), 0.0)


def mae(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  r"""Absolute error, averaged over each example's outputs.

  .. math:: \ell_i = \frac{1}{D} \sum_d |\hat y_{id} - y_{id}|

  Args:
    predictions: as :func:`mse`.
    targets: as :func:`mse`.

  Returns:
    ``[B]``.

  Example:
    >>> mae(jnp.array([1.0, -1.0]), jnp.array([0.0, 1.0]))
    Array([1., 2.], dtype=float32)
  """
  predictions, targets = _match_regression(predictions, targets, "mae")
  return _mean_over_features(jnp.abs(predictions - targets))


def huber(predictions: jax.Array, targets: jax.Array, *, delta: float = 1.0) -> jax.Array:
  r"""Huber loss, averaged over each example's outputs.

  With :math:`e = \hat y - y`:

  .. math:: h(e) = \begin{cases} e^2 / 2 & |e| \le \delta \\
                   \delta (|e| - \delta / 2) & |e| > \delta \end{cases}

  (``optax.losses.huber_loss``): quadratic near 0, linear for outliers.

  Args:
    predictions: as :func:`mse`.
    targets: as :func:`mse`.
    delta: where the loss turns linear (> 0).

  Returns:
    ``[B]``.

  Example:
    >>> huber(jnp.array([0.5, 3.0]), jnp.array([0.0, 0.0]))
    Array([0.125, 2.5  ], dtype=float32)
  """
  if not float(delta) > 0:
    raise ValueError(f"huber: delta must be > 0, got {delta!r}")
  predictions, targets = _match_regression(predictions, targets, "huber")
  return _mean_over_features(optax.losses.huber_loss(predictions, targets, delta=delta))


# --------------------------------------------------------------------------- #
# Registry.
# --------------------------------------------------------------------------- #

_BUILTIN_FUNCTIONS: dict[str, Callable[..., jax.Array]] = {
    "binary_crossentropy": binary_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
    "multilabel_binary_crossentropy": multilabel_binary_crossentropy,
    "mse": mse,
    "rmse": rmse,
    "mae": mae,
    "huber": huber,
    "hinge": hinge,
    "multiclass_hinge": multiclass_hinge,
}


def _from_label(fn: Callable[..., jax.Array]) -> LossFn:
  """``fn(outputs, targets, **options)`` -> ``loss(outputs, batch, **options)``."""

  @functools.wraps(fn)
  def loss_fn(outputs: Any, batch: Mapping[str, Any], **options: Any) -> jax.Array:
    return fn(outputs, batch["label"], **options)

  return loss_fn


def _check_loss(name: str, fn: Any, meta: Any) -> None:
  del meta
  if not callable(fn):
    raise TypeError(f"register({name!r}): fn must be callable (outputs, batch) -> per-example loss, got {fn!r}")


LOSSES: Registry[LossFn] = Registry("loss", check=_check_loss, plural="losses")
for _name, _fn in _BUILTIN_FUNCTIONS.items():
  LOSSES.register(_name, _from_label(_fn))
LOSSES.seal()


def register(name: str, fn: LossFn | None = None, *, overwrite: bool = False) -> Any:
  """Registers ``fn(outputs, batch, **options) -> per-example loss`` under ``name``.

  Args:
    name: the name configs use.
    fn: the loss; ``get(name, **options)`` forwards options as keywords.
      Omitted, ``register`` returns a decorator (``@jdl.losses.register("my_l1")``).
    overwrite: allow replacing a different function registered under ``name``
      (a built-in one too).

  Returns:
    ``fn`` (or a decorator that registers and returns it).

  Example:
    >>> my_l1 = register("my_l1", lambda outputs, batch: jnp.abs(outputs - batch["label"]))
    >>> "my_l1" in list_losses()
    True
  """
  return LOSSES.register(name, overwrite=overwrite) if fn is None else LOSSES.register(name, fn, overwrite=overwrite)


def list_losses() -> list[str]:
  """The registered loss names, sorted."""
  return LOSSES.names()


def get(loss: str | LossFn, **options: Any) -> LossFn:
  """The ``(outputs, batch) -> per-example`` loss for a name (or ``loss`` itself).

  Args:
    loss: a registered name (see :func:`list_losses`) or a callable, returned
      as is (options are then bound as keywords).
    **options: the loss's keyword options, e.g. ``label_smoothing=0.1``,
      ``from_logits=False``, ``delta=2.0``, ``reduction="sum"``.

  Returns:
    ``loss_fn(outputs, batch)`` reading targets from ``batch["label"]``.

  Raises:
    ValueError: unknown name (the message lists the known ones).
    TypeError: an option the loss does not take (the message lists those it does).

  Example:
    >>> loss_fn = get("binary_crossentropy", label_smoothing=0.2)
    >>> loss_fn(jnp.array([0.0]), {"label": jnp.array([1.0])})
    Array([0.6931472], dtype=float32)
  """
  if callable(loss):
    return functools.partial(loss, **options) if options else loss
  if not isinstance(loss, str):
    raise TypeError(f"get: loss must be a name or a callable, got {type(loss).__name__} {loss!r}")
  fn = LOSSES.entry(loss, "get").obj
  if not options:
    return fn
  if loss in _BUILTIN_FUNCTIONS:
    params = inspect.signature(_BUILTIN_FUNCTIONS[loss]).parameters
    accepted = [p.name for p in params.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
      raise TypeError(
          f"get: loss {loss!r} does not take option(s) {', '.join(unknown)}; it takes: "
          f"{', '.join(accepted) or 'no options'}")
  return functools.partial(fn, **options)


# --------------------------------------------------------------------------- #
# Combinators.
# --------------------------------------------------------------------------- #


def head_target(batch: Mapping[str, Any], head: str, fn: str = "head_target") -> Any:
  """The targets of output ``head`` of a multi-output model.

  ``batch["label"][head]`` when ``batch["label"]`` is a dict; otherwise the
  batch's own array named ``head`` (a flat batch such as ``{"inputs", "cultivar",
  "alcohol"}``, as datasets and the training pipeline hold them).

  Raises:
    ValueError: neither exists (the message lists what the batch has).
  """
  labels = batch.get("label")
  if isinstance(labels, Mapping):
    if head in labels:
      return labels[head]
    raise ValueError(f"{fn}: batch['label'] has no target for output {head!r}; it has {sorted(labels)}")
  if head in batch:
    return batch[head]
  raise ValueError(f"{fn}: no target for output {head!r}: expected batch['label'] to be a dict with key {head!r} "
                   f"or the batch to hold an array {head!r}; the batch has {sorted(batch)}")


class WeightedLoss:
  r"""Weighted sum of per-head losses for a model with several outputs.

  .. math:: \ell_i = \sum_k w_k\, \ell^{(k)}_i

  The model's ``outputs`` are a dict ``{head: array}``; each head's targets are
  ``batch["label"][head]`` when ``batch["label"]`` is a dict, else the batch's
  array named ``head`` (:func:`head_target`) — Keras's ``loss={...},
  loss_weights={...}``. ``batch["mask"]``, when present, is shared by every
  head. Each head's loss sees the sub-batch ``{"label": <its targets>,
  "mask": batch["mask"]}``.

  Build it with :func:`weighted`. Calling it gives the per-example total
  ``[B]``; :meth:`per_head` gives ``{head: [B]}`` (unweighted) for logging and
  :meth:`with_heads` both at once.
  """

  def __init__(self, losses: Mapping[str, str | LossFn], weights: Mapping[str, float] | None = None):
    if not isinstance(losses, Mapping) or not losses:
      raise ValueError(f"weighted: losses must be a non-empty dict {{head: loss or name}}, got {losses!r}")
    weights = dict(weights or {})
    extra = sorted(set(weights) - set(losses))
    if extra:
      raise ValueError(
          f"weighted: weights has head(s) {', '.join(extra)} with no loss; heads with a loss: "
          f"{', '.join(sorted(losses))}")
    self.losses: dict[str, LossFn] = {head: get(fn) for head, fn in losses.items()}
    self.weights: dict[str, float] = {head: float(weights.get(head, 1.0)) for head in losses}

  def _sub_batch(self, head: str, batch: Mapping[str, Any]) -> dict[str, Any]:
    sub = {"label": head_target(batch, head, "weighted")}
    if batch.get("mask") is not None:
      sub["mask"] = batch["mask"]
    return sub

  def per_head(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Each head's unweighted per-example loss, ``{head: [B]}``."""
    if not isinstance(outputs, Mapping):
      raise ValueError(f"weighted: outputs must be a dict {{head: array}}, got {type(outputs).__name__}")
    missing = sorted(set(self.losses) - set(outputs))
    if missing:
      raise ValueError(f"weighted: outputs lack head(s) {', '.join(missing)}; outputs have {sorted(outputs)}")
    return {head: fn(outputs[head], self._sub_batch(head, batch)) for head, fn in self.losses.items()}

  def with_heads(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The weighted per-example total and the per-head values."""
    heads = self.per_head(outputs, batch)
    shapes = {head: value.shape for head, value in heads.items()}
    if len(set(shapes.values())) > 1:
      raise ValueError(f"weighted: per-example losses of the heads differ in shape: {shapes}")
    total = sum(self.weights[head] * value for head, value in heads.items())
    return total, heads

  def __call__(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> jax.Array:
    return self.with_heads(outputs, batch)[0]


def weighted(losses: Mapping[str, str | LossFn], weights: Mapping[str, float] | None = None) -> WeightedLoss:
  """A multi-output loss: ``Σ_k weights[k] · losses[k]`` per example.

  Args:
    losses: ``{head: loss}``, each a registered name or an
      ``(outputs, batch) -> per-example`` function (``get(name, **options)``
      for options).
    weights: ``{head: weight}``; heads left out weigh 1.

  Returns:
    a :class:`WeightedLoss`, itself a ``(outputs, batch) -> [B]`` loss.

  Example:
    >>> loss_fn = weighted({"cls": "sparse_categorical_crossentropy", "box": "mse"}, {"box": 0.5})
    >>> outputs = {"cls": jnp.zeros((2, 3)), "box": jnp.ones((2, 4))}
    >>> batch = {"label": {"cls": jnp.array([0, 1]), "box": jnp.zeros((2, 4))}}
    >>> total, heads = loss_fn.with_heads(outputs, batch)
    >>> total.shape, sorted(heads)
    ((2,), ['box', 'cls'])
  """
  return WeightedLoss(losses, weights)


def with_heads(loss_fn: LossFn, outputs: Any, batch: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
  """``(per-example loss, {head: per-example loss})``: the heads of a :class:`WeightedLoss`, else none."""
  if isinstance(loss_fn, WeightedLoss):
    return loss_fn.with_heads(outputs, batch)
  return loss_fn(outputs, batch), {}


def with_regularizer(loss_fn: str | LossFn, regularizer: Regularizer | None = None, *,
                     reduce: Callable[[jax.Array, Any], jax.Array] | None = None,
                     ) -> Callable[[Any, Any, Mapping[str, Any]], tuple[jax.Array, dict[str, jax.Array]]]:
  r"""The training objective: the masked batch mean of a loss plus a parameter penalty.

  .. math:: J(\theta) = \frac{\sum_i m_i \ell_i}{\sum_i m_i} + R(\theta)

  The penalty is added once per batch, not per example. Under ``pmap`` each
  device adds :math:`R/n` (the train step scales the regularizer by its share)
  and the gradients are summed over the :math:`n` devices, so :math:`\nabla R`
  counts once. This is the objective
  ``jdl.train.make_train_step`` differentiates.

  Args:
    loss_fn: a registered name or an ``(outputs, batch) -> [B]`` loss. A
      :class:`WeightedLoss` (several outputs) also reports each head's loss.
    regularizer: ``params -> scalar`` (e.g. ``jdl.regularizers.l2(1e-4)``) or
      ``None``.
    reduce: ``(values_B, mask_B) -> scalar``, how per-example values become
      the batch's value (default :func:`masked_mean`; the train step passes a
      cross-device mean under ``pmap``).

  Returns:
    ``objective(params, outputs, batch) -> (total, aux)`` with ``aux``
    holding ``"loss"`` (the data term), ``"regularization"`` (only with a
    regularizer) and ``"loss/<head>"`` for each head of a ``WeightedLoss``
    (unweighted); ready for ``jax.value_and_grad(..., has_aux=True)`` once
    ``outputs`` is computed from ``params`` inside the differentiated
    function.

  Example:
    >>> import jdl.regularizers
    >>> objective = with_regularizer("mse", jdl.regularizers.l2(0.1))
    >>> params = {"kernel": jnp.array([1.0, 2.0])}
    >>> total, aux = objective(params, jnp.array([1.0]), {"label": jnp.array([0.0])})
    >>> float(total), float(aux["regularization"])  # 1 + 0.1 / 2 * 5
    (1.25, 0.25)
  """
  loss_fn = get(loss_fn)
  if regularizer is not None and not callable(regularizer):
    raise TypeError(f"with_regularizer: regularizer must be callable params -> scalar or None, got {regularizer!r}")
  reduce = masked_mean if reduce is None else reduce

  def objective(params: Any, outputs: Any, batch: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
    mask = batch.get("mask")
    per_example, heads = with_heads(loss_fn, outputs, batch)
    aux: dict[str, jax.Array] = {f"loss/{head}": reduce(values, mask) for head, values in heads.items()}
    data_loss = reduce(per_example, mask)
    aux["loss"] = data_loss
    if regularizer is None:
      return data_loss, aux
    penalty = jnp.asarray(regularizer(params))
    if penalty.shape != ():
      raise ValueError(f"with_regularizer: the regularizer must return a scalar, got shape {penalty.shape}")
    aux["regularization"] = penalty
    return data_loss + penalty, aux

  return objective
