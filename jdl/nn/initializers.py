"""Weight initializers by name.

``get_initializer("he_normal")`` returns a ``jax.nn.initializers``-style function
``init(key, shape, dtype) -> array``. Every Dense/Conv in ``jdl.nn`` and in the
model zoo accepts its kernel initializer as such a name (or as a function).

Variance-scaling initializers draw weights with variance ``scale / fan``:

=================  =====  ========  ===================  =========================
name               scale  fan       distribution         aliases
=================  =====  ========  ===================  =========================
glorot_uniform     1      fan_avg   uniform              xavier_uniform
glorot_normal      1      fan_avg   truncated normal     xavier_normal
he_uniform         2      fan_in    uniform              kaiming_uniform
he_normal          2      fan_in    truncated normal     kaiming_normal
lecun_uniform      1      fan_in    uniform
lecun_normal       1      fan_in    truncated normal     (Flax's default)
=================  =====  ========  ===================  =========================

(the truncated normal is rescaled so that the variance is exactly ``scale / fan``,
as in ``jax.nn.initializers``). Keyword arguments override a row, e.g.
``get_initializer("he_normal", mode="fan_out")`` is torchvision's ResNet
initialization, ``get_initializer("he_normal", distribution="normal")`` an
untruncated normal. Other names: ``orthogonal`` (``scale``), ``normal``
(``stddev``, default 0.01), ``truncated_normal`` (``stddev``), ``uniform``
(``scale``: U[0, scale)), ``constant`` (``value``), ``zeros``, ``ones``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

Initializer = Callable[..., jax.Array]

_VARIANCE_SCALING: dict[str, tuple[float, str, str]] = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}

_ALIASES: dict[str, str] = {
    "xavier_uniform": "glorot_uniform",
    "xavier_normal": "glorot_normal",
    "kaiming_uniform": "he_uniform",
    "kaiming_normal": "he_normal",
    "zero": "zeros",
    "one": "ones",
}

_OTHERS: dict[str, Callable[..., Initializer]] = {
    "orthogonal": jax.nn.initializers.orthogonal,
    "normal": jax.nn.initializers.normal,
    "truncated_normal": jax.nn.initializers.truncated_normal,
    "uniform": jax.nn.initializers.uniform,
    "constant": jax.nn.initializers.constant,
    "zeros": lambda: jax.nn.initializers.zeros,
    "ones": lambda: jax.nn.initializers.ones,
}


def list_initializers() -> list[str]:
  """The initializer names ``get_initializer`` accepts (aliases included), sorted."""
  return sorted([*_VARIANCE_SCALING, *_OTHERS, *_ALIASES])


def _canonical(name: str) -> str:
  key = name.strip().lower().replace("-", "_")
  return _ALIASES.get(key, key)


def get_initializer(name: str | Initializer, **kwargs: Any) -> Initializer:
  """Returns the initializer called ``name`` (a function is returned unchanged).

  Args:
    name: one of ``list_initializers()`` (case-insensitive; ``-`` and ``_`` are
      the same), or an initializer function ``init(key, shape, dtype)``.
    **kwargs: options of that initializer: ``scale``, ``mode``
      (``fan_in``/``fan_out``/``fan_avg``), ``distribution``
      (``normal``/``truncated_normal``/``uniform``), ``in_axis``, ``out_axis``
      for the variance-scaling family; ``scale`` for ``orthogonal`` and
      ``uniform``; ``stddev`` for ``normal``/``truncated_normal``; ``value`` for
      ``constant``.

  Raises:
    ValueError: unknown name (the message lists the known ones).
    TypeError: ``name`` is neither a string nor callable, or an option the
      initializer does not take.
  """
  if callable(name):
    if kwargs:
      raise TypeError(
          f"get_initializer: options {sorted(kwargs)} apply to initializer names only, "
          f"got a function {name!r}")
    return name
  if not isinstance(name, str):
    raise TypeError(
        f"get_initializer: name must be an initializer name (str) or function, got {name!r}")
  key = _canonical(name)
  if key in _VARIANCE_SCALING:
    scale, mode, distribution = _VARIANCE_SCALING[key]
    options = {"scale": scale, "mode": mode, "distribution": distribution}
    unknown = set(kwargs) - {"scale", "mode", "distribution", "in_axis", "out_axis", "batch_axis"}
    if unknown:
      raise TypeError(
          f"get_initializer: {name!r} takes scale, mode, distribution, in_axis, out_axis, "
          f"batch_axis; got unexpected option(s) {sorted(unknown)}")
    options.update(kwargs)
    if options["mode"] not in ("fan_in", "fan_out", "fan_avg", "fan_geo_avg"):
      raise ValueError(
          "get_initializer: mode must be one of 'fan_in', 'fan_out', 'fan_avg', "
          f"'fan_geo_avg', got {options['mode']!r}")
    if options["distribution"] not in ("normal", "truncated_normal", "uniform"):
      raise ValueError(
          "get_initializer: distribution must be one of 'normal', 'truncated_normal', "
          f"'uniform', got {options['distribution']!r}")
    return jax.nn.initializers.variance_scaling(**options)
  if key in _OTHERS:
    try:
      return _OTHERS[key](**kwargs)
    except TypeError as e:
      raise TypeError(f"get_initializer: bad option(s) {sorted(kwargs)} for {name!r}: {e}") from e
  raise ValueError(
      f"get_initializer: unknown initializer {name!r}; known initializers: "
      f"{', '.join(list_initializers())}")
