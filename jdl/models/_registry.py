"""Name → model factory registry, open to users' own modules."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn


@dataclasses.dataclass(frozen=True)
class _Entry:
  factory: Callable[..., nn.Module]
  input_shape: tuple[int, ...] | None


_MODELS: dict[str, _Entry] = {}


def register(name: str, *, overwrite: bool = False, input_shape: Sequence[int] | None = None
             ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
  """Registers a model factory (a linen Module class or a function returning one).

  Use it from your own file; ``jdl train`` then finds the model by name::

    @jdl.models.register("my_net")
    class MyNet(nn.Module):
      num_classes: int
      @nn.compact
      def __call__(self, x, train: bool = False): ...

  A ``functools.partial`` of a Module class registers a named variant:
  ``register("resnet18")(functools.partial(ResNet, stage_sizes=(2, 2, 2, 2)))``.

  Args:
    name: the name configs use (``config.model.name``).
    overwrite: allow replacing an existing registration.
    input_shape: the model's usual input shape without the batch axis, e.g.
      ``(224, 224, 3)``; ``jdl summary`` uses it when no shape is given.

  Returns:
    A decorator that registers its argument and returns it unchanged.

  Re-running the same definition (a re-imported file, a notebook cell run again:
  same module and qualified name) replaces the old registration silently.

  Raises:
    TypeError: ``name`` is not a non-empty string.
    ValueError: ``name`` is taken (by a different factory) and not ``overwrite``.
  """
  if not isinstance(name, str) or not name:
    raise TypeError(f"register: name must be a non-empty string, got {name!r}")
  shape = None
  if input_shape is not None:
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
      raise ValueError(f"register: input_shape must be a sequence of positive ints, got {input_shape!r}")

  def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if not callable(factory):
      raise TypeError(f"register({name!r}): expected a Module class or a function, got {factory!r}")
    if (name in _MODELS and not overwrite and _MODELS[name].factory is not factory
        and not _same_definition(_MODELS[name].factory, factory)):
      raise ValueError(
          f"register: a model named {name!r} is already registered "
          f"({_MODELS[name].factory!r}); pass overwrite=True to replace it")
    _MODELS[name] = _Entry(factory, shape)
    return factory

  return decorator


def _same_definition(old: Callable[..., Any], new: Callable[..., Any]) -> bool:
  """Whether ``new`` is ``old`` defined again (same module and qualified name)."""
  if isinstance(old, functools.partial) or isinstance(new, functools.partial):
    return False
  origin_old = (getattr(old, "__module__", None), getattr(old, "__qualname__", None))
  origin_new = (getattr(new, "__module__", None), getattr(new, "__qualname__", None))
  return origin_old == origin_new and origin_old[1] is not None


def list_models() -> list[str]:
  """The registered model names, sorted."""
  return sorted(_MODELS)


def _entry(name: str, caller: str) -> _Entry:
  if not isinstance(name, str):
    raise TypeError(f"{caller}: model name must be a string, got {name!r}")
  if name not in _MODELS:
    raise ValueError(
        f"{caller}: unknown model {name!r}; known models: {', '.join(list_models())}")
  return _MODELS[name]


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
