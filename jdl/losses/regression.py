"""Regression losses: MSE, MAE, Huber, log-cosh."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jdl.losses._helpers import _match_regression, _mean_over_features


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
