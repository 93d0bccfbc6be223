"""Losses by name: ``register``, ``get``, ``list_losses``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax

from jdl.losses._helpers import LossFn
from jdl.losses.classification import binary_crossentropy, categorical_crossentropy, hinge, multiclass_hinge, multilabel_binary_crossentropy, sparse_categorical_crossentropy
from jdl.losses.regression import huber, mae, mse, rmse
from jdl.registry import Registry


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
    >>> import jax.numpy as jnp
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
