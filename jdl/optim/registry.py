"""The optimizer registry: ``register``, ``create``, ``get_spec``, ``list_optimizers``."""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

import optax

from jdl.optim._checks import Factory, SearchSpace, _bind, _check_learning_rate, _check_nonneg
from jdl.optim.spaces import check_search_space, log_uniform
from jdl.registry import Registry, same_definition


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """A registered optimizer.

  Attributes:
    name: the registry name.
    factory: ``factory(learning_rate, **hyperparams) -> GradientTransformation``.
    learning_rate: the default learning rate (used by ``from_config`` when the
      config gives none).
    search_space: hyperparameter name → search dimension (see ``log_uniform``,
      ``uniform``, ``one_minus_log_uniform``, ``choice``).
  """

  name: str
  factory: Factory
  learning_rate: float
  search_space: SearchSpace


OPTIMIZERS: Registry[OptimizerSpec] = Registry(
    "optimizer", same=lambda old, new: same_definition(old.factory, new.factory))


def register(
    name: str,
    factory: Factory | None = None,
    *,
    learning_rate: float = 1e-3,
    search_space: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Any:
  """Registers an optimizer factory under ``name``; use it from your own file.

  The factory takes the learning rate (a float or an ``optax.Schedule``) and
  keyword hyperparameters, and returns a ``GradientTransformation``::

    @jdl.optim.register("signsgd", search_space={"learning_rate": jdl.optim.log_uniform(1e-5, 1e-2)})
    def signsgd(learning_rate, *, weight_decay: float = 0.0) -> optax.GradientTransformation:
      return optax.chain(optax.scale_by_sign(), optax.add_decayed_weights(weight_decay),
                         optax.scale_by_learning_rate(learning_rate))

  or as a call, ``jdl.optim.register("signsgd", signsgd)``.

  Args:
    name: the name configs use (``cfg.optimizer.name``).
    factory: the factory; omitted, ``register`` returns a decorator.
    learning_rate: default learning rate for configs that give none.
    search_space: default hyperparameter search space; must include
      ``learning_rate``. Defaults to ``{"learning_rate": log_uniform(1e-5, 1e-1)}``.
    overwrite: allow replacing an existing registration (a built-in one too).

  Returns:
    ``factory`` (or a decorator that registers and returns it unchanged).
    Registering the same factory again (or its file imported again) is a no-op.
  """
  if not isinstance(name, str) or not name:
    raise TypeError(f"register: name must be a non-empty string, got {name!r}")
  where = f"register({name!r})"
  learning_rate = _check_nonneg(where, "learning_rate", learning_rate)
  space = check_search_space(where, search_space if search_space is not None else
                              {"learning_rate": log_uniform(1e-5, 1e-1)})

  def decorator(factory: Factory) -> Factory:
    if not callable(factory):
      raise TypeError(f"{where}: the factory must be callable, got {factory!r}")
    params = inspect.signature(factory).parameters
    if "learning_rate" not in params and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
      raise TypeError(f"{where}: the factory must accept a learning_rate argument, got parameters {list(params)}")
    for arg in space:
      if arg != "learning_rate":
        _bind(f"{where} search_space", factory, {"learning_rate": 1.0, arg: None})
    OPTIMIZERS.register(name, OptimizerSpec(name, factory, learning_rate, space), overwrite=overwrite)
    return factory

  return decorator if factory is None else decorator(factory)


def list_optimizers() -> list[str]:
  """Returns the registered optimizer names, sorted."""
  return OPTIMIZERS.names()


def get_spec(name: str) -> OptimizerSpec:
  """Returns the registration of optimizer ``name`` (factory, default lr, search space)."""
  return OPTIMIZERS[name]


def search_space(name: str) -> SearchSpace:
  """Returns a copy of optimizer ``name``'s default hyperparameter search space.

  Args:
    name: a registered optimizer.

  Returns:
    hyperparameter → dimension dict, e.g. ``{"learning_rate": {"distribution":
    "log_uniform", "low": 1e-5, "high": 1e-2}, "b1": {"distribution":
    "uniform", "low": 0.8, "high": 0.95}, ...}``. Distributions:
    ``log_uniform``/``uniform`` (``low``, ``high``), ``one_minus_log_uniform``
    (``1 - x`` log-uniform; for decay rates near 1), ``choice`` (``values``).
  """
  return copy.deepcopy(get_spec(name).search_space)


def create(name: str, *, learning_rate: float | optax.Schedule, **hyperparams: Any) -> optax.GradientTransformation:
  """Builds the optimizer ``name`` with its hyperparameters.

  Args:
    name: a registered optimizer (``list_optimizers()``).
    learning_rate: a float ``>= 0`` or an ``optax.Schedule`` of the update count.
    **hyperparams: the optimizer's own hyperparameters (see its docstring).

  Returns:
    the optimizer, an ``optax.GradientTransformation``.

  Raises:
    ValueError: unknown name (the message lists the known ones), or a
      hyperparameter out of range.
    TypeError: an argument the optimizer does not take, or of the wrong type.
  """
  spec = get_spec(name)
  where = f"optimizer {name!r}"
  learning_rate = _check_learning_rate(where, learning_rate)
  _bind(where, spec.factory, {"learning_rate": learning_rate, **hyperparams})
  return spec.factory(learning_rate=learning_rate, **hyperparams)
