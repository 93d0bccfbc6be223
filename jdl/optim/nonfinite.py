"""Skipping non-finite updates inside the step (``skip_nonfinite``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jdl.optim._checks import _check_int


class SkipNonfiniteState(NamedTuple):
  """``skip_nonfinite``'s state: the inner optimizer's, the current run of skips, and all skips so far."""

  inner_state: Any
  consecutive: jax.Array
  skipped: jax.Array


def _all_finite(tree: Any) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype,
                                                                                         jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def skip_nonfinite(inner: optax.GradientTransformation, max_consecutive: int = 10
                   ) -> optax.GradientTransformationExtraArgs:
  """Skips updates whose gradients or resulting update are not finite (NaN or ±inf).

  A skipped step changes neither the parameters (its update is zero) nor the
  inner optimizer's state; ``SkipNonfiniteState.skipped`` counts the skips.
  Like ``optax.apply_if_finite``, it gives up after ``max_consecutive`` skips
  in a row and applies the next update as it is, so a run that has really
  diverged still fails loudly. Unlike it, the *update* is checked too: a
  finite gradient times a huge learning rate that overflows is skipped as well.

  Args:
    inner: the optimizer.
    max_consecutive: skips in a row before giving up (>= 1).

  Returns:
    the wrapped optimizer (``config.nonfinite = "skip"`` in ``jdl train``).
  """
  max_consecutive = _check_int("skip_nonfinite", "max_consecutive", max_consecutive, low=1)

  def init_fn(params):
    # Two arrays, not one twice: each leaf of a donated state must be its own buffer.
    return SkipNonfiniteState(inner.init(params), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

  def update_fn(updates, state, params=None, **extra_args):
    new_updates, new_inner = optax.with_extra_args_support(inner).update(updates, state.inner_state, params,
                                                                          **extra_args)
    finite = _all_finite(updates) & _all_finite(new_updates)
    apply = finite | (state.consecutive >= max_consecutive)
    out_updates = jax.tree.map(lambda u: jnp.where(apply, u, jnp.zeros_like(u)), new_updates)
    out_inner = jax.tree.map(lambda a, b: jnp.where(apply, a, b), new_inner, state.inner_state)
    consecutive = jnp.where(finite, 0, state.consecutive + 1).astype(jnp.int32)
    skipped = (state.skipped + jnp.where(apply, 0, 1)).astype(jnp.int32)
    return out_updates, SkipNonfiniteState(out_inner, consecutive, skipped)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def skipped_steps(opt_state: Any) -> jax.Array | None:
  """The number of updates ``skip_nonfinite`` has skipped so far, or None without the wrapper."""
  found = _find_state(opt_state, SkipNonfiniteState)
  return None if found is None else found.skipped


def _find_state(state: Any, state_type: type) -> Any:
  if isinstance(state, state_type):
    return state
  children = state.values() if isinstance(state, Mapping) else state if isinstance(state, (tuple, list)) else ()
  for child in children:
    found = _find_state(child, state_type)
    if found is not None:
      return found
  return None
