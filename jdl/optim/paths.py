"""Parameter paths and masks: globs over '/'-joined parameter paths, freezing."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from typing import Any

import jax
import optax


def param_paths(tree: Any) -> Any:
  """Returns a tree like ``tree`` whose leaves are their ``'/'``-joined key paths.

  Args:
    tree: a parameter pytree (nested dicts from flax, lists, tuples ...).

  Returns:
    the same structure with each leaf replaced by a string such as
    ``"Dense_0/kernel"``.
  """
  return jax.tree_util.tree_map_with_path(
      lambda path, _: jax.tree_util.keystr(path, simple=True, separator="/"), tree)


def matches(path: str, patterns: str | Sequence[str]) -> bool:
  """Whether a ``'/'``-joined parameter path matches one of the globs (a pattern also matches everything below it).

  >>> matches("layer1_0/conv1/kernel", ("layer1*", "fc"))
  True
  """
  return any(_matches(path, p) for p in ((patterns,) if isinstance(patterns, str) else patterns))


def check_patterns(where: str, arg: str, patterns: Any) -> tuple[str, ...]:
  """``patterns`` (a glob or a list of globs) as a tuple; a ``TypeError`` naming ``where`` and ``arg`` otherwise."""
  return _check_patterns(where, arg, patterns)


def _matches(path: str, pattern: str) -> bool:
  return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern + "/*")


def _check_patterns(where: str, arg: str, patterns: Any) -> tuple[str, ...]:
  if isinstance(patterns, str):
    patterns = (patterns,)
  if not isinstance(patterns, Sequence) or not all(isinstance(p, str) and p for p in patterns):
    raise TypeError(f"{where}: {arg} must be a list of non-empty glob strings, got {patterns!r}")
  return tuple(patterns)


def path_mask(patterns: str | Sequence[str], *, where: str = "path_mask") -> Callable[[Any], Any]:
  """Builds ``mask_fn(params) -> tree of bools``: True where a path matches a pattern.

  The result plugs into optax masks (``optax.masked``, ``weight_decay_mask`` ...).
  A pattern that matches no parameter is an error (a typo would otherwise
  silently do nothing); it is raised when the mask first sees the parameters.

  Args:
    patterns: glob patterns over ``'/'``-joined parameter paths; a pattern also
      matches everything below it.
    where: the name used in error messages.

  Returns:
    the mask function.
  """
  patterns = _check_patterns(where, "patterns", patterns)

  def mask_fn(params: Any) -> Any:
    paths = param_paths(params)
    all_paths = jax.tree.leaves(paths)
    for pattern in patterns:
      if not any(_matches(p, pattern) for p in all_paths):
        shown = ", ".join(all_paths[:20]) + (" ..." if len(all_paths) > 20 else "")
        raise ValueError(f"{where}: pattern {pattern!r} matches no parameter; parameter paths: {shown}")
    return jax.tree.map(lambda p: any(_matches(p, pat) for pat in patterns), paths)

  return mask_fn


def freeze(inner: optax.GradientTransformation, patterns: str | Sequence[str], *,
           where: str = "freeze") -> optax.GradientTransformation:
  """Applies ``inner`` to trainable parameters and zero updates to frozen ones.

  Built with ``optax.partition``: frozen leaves go through
  ``optax.set_to_zero()``, so their updates are exactly 0 (the parameters stay
  bit-identical) and ``inner`` keeps no state for them (no moments, no weight
  decay, and they do not count in ``inner``'s global-norm clipping).

  Args:
    inner: the transformation for trainable parameters.
    patterns: glob patterns over ``'/'``-joined parameter paths to freeze.
    where: the name used in error messages.

  Returns:
    the partitioned transformation.
  """
  mask_fn = path_mask(patterns, where=where)

  def labels(params: Any) -> Any:
    return jax.tree.map(lambda frozen: "frozen" if frozen else "trainable", mask_fn(params))

  return optax.partition({"trainable": inner, "frozen": optax.set_to_zero()}, labels)


def _weight_decay_mask(where: str, exclude: Any) -> Callable[[Any], Any] | None:
  """``weight_decay_exclude`` patterns → optax mask (True = decay this leaf)."""
  exclude = _check_patterns(where, "weight_decay_exclude", exclude)
  if not exclude:
    return None
  excluded = path_mask(exclude, where=f"{where} weight_decay_exclude")
  return lambda params: jax.tree.map(lambda x: not x, excluded(params))
