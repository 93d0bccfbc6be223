"""Classification losses: cross-entropy (sparse, categorical, binary), focal, hinge."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdl.losses._helpers import _EPSILON, _as_float, _check_label_smoothing, _is_concrete, _mean_over_features, _squeeze_binary


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
    lo, hi = int(np.min(np.asarray(labels))), int(np.max(np.asarray(labels)))
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
