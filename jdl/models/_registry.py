"""Name → model factory registry, open to users' own modules."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn

from jdl.registry import Registry


@dataclasses.dataclass(frozen=True)
class _Entry:
  factory: Callable[..., nn.Module]
  input_shape: tuple[int, ...] | None


def _check_factory(name: str, factory: Any, meta: Any) -> None:
  del meta
  if not callable(factory):
    raise TypeError(f"register({name!r}): expected a Module class or a function, got {factory!r}")


MODELS: Registry[Callable[..., nn.Module]] = Registry("model", check=_check_factory)


def register(name: str, factory: Callable[..., nn.Module] | None = None, *, overwrite: bool = False,
             input_shape: Sequence[int] | None = None) -> Any:
  """Registers a model factory (a linen Module class or a function returning one).

  Use it from your own file; ``jdl train`` then finds the model by name::

    @jdl.models.register("my_net")
    class MyNet(nn.Module):
      num_classes: int
      @nn.compact
      def __call__(self, x, train: bool = False): ...

  or as a call: ``jdl.models.register("resnet10", functools.partial(ResNet, stage_sizes=(1, 1, 1, 1)))``.

  Args:
    name: the name configs use (``config.model.name``).
    factory: the factory; omitted, ``register`` returns a decorator.
    overwrite: allow replacing an existing registration (a built-in one too).
    input_shape: the model's usual input shape without the batch axis, e.g.
      ``(224, 224, 3)``; ``jdl summary`` uses it when no shape is given.

  Returns:
    ``factory`` (or a decorator that registers its argument and returns it unchanged).

  Registering the same definition again (a re-imported file, a notebook cell run
  again: same module, qualified name and source line) is a no-op.

  Raises:
    TypeError: ``name`` is not a non-empty string, or the factory is not callable.
    ValueError: ``name`` is taken (by a different factory) and not ``overwrite``.
  """
  shape = None
  if input_shape is not None:
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
      raise ValueError(f"register: input_shape must be a sequence of positive ints, got {input_shape!r}")
  if factory is None:  # the decorator form
    return MODELS.register(name, overwrite=overwrite, input_shape=shape)
  return MODELS.register(name, factory, overwrite=overwrite, input_shape=shape)


def list_models() -> list[str]:
  """The registered model names, sorted."""
  return MODELS.names()


def _entry(name: str, caller: str) -> _Entry:
  entry = MODELS.entry(name, caller)
  return _Entry(entry.obj, entry.meta.get("input_shape"))


def default_input_shape(name: str) -> tuple[int, ...] | None:
  """The input shape (without batch axis) a model was registered with, if any."""
  return _entry(name, "default_input_shape").input_shape


def model_options(name: str) -> dict[str, Any]:
  """A registered model's options and their defaults (``num_classes`` excluded).

  For a Module class (or a ``functools.partial`` of one) these are its dataclass
  fields, with the partial's values as defaults; for a plain function, its
  keyword parameters. Options without a default map to ``inspect.Parameter.empty``.
  """
  factory = _entry(name, "model_options").factory
  bound: dict[str, Any] = {}
  while isinstance(factory, functools.partial):
    bound = {**factory.keywords, **bound}
    factory = factory.func
  options: dict[str, Any] = {}
  if isinstance(factory, type) and issubclass(factory, nn.Module):
    for field in dataclasses.fields(factory):
      if not field.init or field.name in ("parent", "name", "num_classes"):
        continue
      if field.default is not dataclasses.MISSING:
        options[field.name] = field.default
      elif field.default_factory is not dataclasses.MISSING:
        options[field.name] = field.default_factory()
      else:
        options[field.name] = inspect.Parameter.empty
  else:
    for param in inspect.signature(factory).parameters.values():
      if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL) or param.name == "num_classes":
        continue
      options[param.name] = param.default
  options.update({k: v for k, v in bound.items() if k != "num_classes"})
  return options


def create(name: str, *, num_classes: int, **options: Any) -> nn.Module:
  """Builds a registered model: ``create("resnet18", num_classes=10)``.

  Args:
    name: a registered name (``list_models()``).
    num_classes: width of the logits.
    **options: the model's options (``model_options(name)``), e.g.
      ``create("resnet18", num_classes=10, stem="small")``.

  Raises:
    ValueError: unknown name (the message lists the known ones), or
      ``num_classes`` not a positive int.
    TypeError: an option the model does not take (the message lists its options).
  """
  entry = _entry(name, "create")
  if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"create: num_classes must be a positive int, got {num_classes!r}")
  try:
    known = model_options(name)
  except (TypeError, ValueError):  # an exotic factory: let it check its own options
    known = None
  if known is not None and not _accepts_var_kwargs(entry.factory):
    unknown = sorted(set(options) - set(known))
    if unknown:
      raise TypeError(
          f"create: model {name!r} has no option(s) {unknown}; its options: "
          f"{', '.join(sorted(known)) or 'none'}")
  return entry.factory(num_classes=num_classes, **options)


def _accepts_var_kwargs(factory: Callable[..., Any]) -> bool:
  while isinstance(factory, functools.partial):
    factory = factory.func
  if isinstance(factory, type):
    return False
  try:
    params = inspect.signature(factory).parameters.values()
  except (TypeError, ValueError):
    return True
  return any(p.kind == p.VAR_KEYWORD for p in params)
