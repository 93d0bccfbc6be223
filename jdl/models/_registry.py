"""Name → model factory registry, open to users' own modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, *, overwrite: bool = False) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
  """Registers a model factory (a linen Module class or a function returning one).

  Use it from your own file; ``jdl train`` then finds the model by name::

    @jdl.models.register("my_net")
    class MyNet(nn.Module):
      num_classes: int
      @nn.compact
      def __call__(self, x, train: bool = False): ...

  Args:
    name: the name configs use (``config.model.name``).
    overwrite: allow replacing an existing registration.
  """
  if not isinstance(name, str) or not name:
    raise TypeError(f"register: name must be a non-empty string, got {name!r}")

  def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if name in _MODELS and not overwrite and _MODELS[name] is not factory:
      raise ValueError(
          f"register: a model named {name!r} is already registered "
          f"({_MODELS[name]!r}); pass overwrite=True to replace it")
    _MODELS[name] = factory
    return factory

  return decorator


def list_models() -> list[str]:
  """The registered model names, sorted."""
  return sorted(_MODELS)


def create(name: str, *, num_classes: int, **options: Any) -> nn.Module:
  """Builds a registered model: ``create("resnet18", num_classes=10)``.

  Raises:
    ValueError: unknown name (the message lists the known ones).
  """
  if name not in _MODELS:
    raise ValueError(
        f"create: unknown model {name!r}; known models: {', '.join(list_models())}")
  return _MODELS[name](num_classes=num_classes, **options)
