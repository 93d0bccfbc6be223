"""Mixed precision: a dtype policy and dynamic loss scaling for float16.

A ``Policy`` keeps the parameters (and the optimizer state) in float32, runs the
forward and backward pass in a 16-bit compute dtype, and returns outputs and the
loss in float32. bfloat16 has float32's exponent range and needs nothing else.
float16 has a 5-bit exponent (largest finite 65504, smallest subnormal ≈ 6e-8),
so small gradients of activations flush to zero in the backward pass: the loss
is multiplied by a large scale before differentiation and the gradients divided
by it afterwards (``DynamicLossScale``). When the scale is too large the
gradients overflow to inf; the step is then skipped and the scale halved; after
``growth_interval`` finite steps in a row it is doubled again.

A train step with loss scaling::

  policy = get_policy("mixed_float16")
  loss_scale = DynamicLossScale.create()          # part of the train state

  def train_step(params, opt_state, loss_scale, batch):
    def loss_fn(p):
      logits = model.apply({"params": policy.cast_to_compute(p)}, policy.cast_to_compute(batch["x"]))
      loss = policy.cast_to_output(loss_of(logits, batch)).mean()
      return loss_scale.scale_loss(loss), loss
    grads, loss = jax.grad(loss_fn, has_aux=True)(params)     # float32: d cast(p)/dp casts back
    grads, finite = loss_scale.unscale_and_check(grads)
    updates, new_opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    params, opt_state = select_tree(finite, (new_params, new_opt_state), (params, opt_state))
    return params, opt_state, loss_scale.adjust(finite), loss

With bfloat16 or float32 the three loss-scale calls are simply left out
(``policy.needs_loss_scaling`` is False).
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

_PRESETS: dict[str, tuple[str, str, str]] = {
    "float32": ("float32", "float32", "float32"),
    "mixed_bfloat16": ("float32", "bfloat16", "float32"),
    "bfloat16": ("float32", "bfloat16", "float32"),
    "mixed_float16": ("float32", "float16", "float32"),
    "float16": ("float32", "float16", "float32"),
}
_FLOAT_DTYPES = ("float32", "bfloat16", "float16", "float64")


def _cast_floats(tree: Any, dtype: jnp.dtype) -> Any:
  """Casts the floating-point array leaves of ``tree``; integer, bool and non-array leaves stay."""

  def cast(x: Any) -> Any:
    if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != dtype:
      return jnp.asarray(x).astype(dtype)
    return x

  return jax.tree.map(cast, tree)


@dataclasses.dataclass(frozen=True)
class Policy:
  """Which dtype parameters, computation and outputs use.

  Attributes:
    param_dtype: storage dtype of parameters and optimizer state.
    compute_dtype: dtype of the forward/backward pass.
    output_dtype: dtype of model outputs and the loss.
  """

  param_dtype: jnp.dtype = jnp.dtype("float32")
  compute_dtype: jnp.dtype = jnp.dtype("float32")
  output_dtype: jnp.dtype = jnp.dtype("float32")

  def __post_init__(self) -> None:
    for field in ("param_dtype", "compute_dtype", "output_dtype"):
      value = getattr(self, field)
      try:
        dtype = jnp.dtype(value)
      except TypeError:
        raise TypeError(f"Policy: {field} must be one of {_FLOAT_DTYPES}, got {value!r}") from None
      if dtype.name not in _FLOAT_DTYPES:
        raise ValueError(f"Policy: {field} must be one of {_FLOAT_DTYPES}, got {value!r}")
      object.__setattr__(self, field, dtype)

  @classmethod
  def from_string(cls, name: str) -> Policy:
    """Builds a policy from a preset name or an explicit spec.

    Presets: ``"float32"``; ``"mixed_bfloat16"`` (alias ``"bfloat16"``) and
    ``"mixed_float16"`` (alias ``"float16"``): float32 parameters and outputs,
    16-bit compute. Parameters are never stored in 16 bits by a preset; for
    that, spell it out: ``"params=bfloat16,compute=bfloat16,output=float32"``.

    Args:
      name: the preset or ``params=...,compute=...,output=...`` spec.

    Returns:
      the policy.
    """
    if not isinstance(name, str):
      raise TypeError(f"Policy.from_string: name must be a string, got {name!r}")
    key = name.strip().lower()
    if key in _PRESETS:
      return cls(*(jnp.dtype(d) for d in _PRESETS[key]))
    if "=" in key:
      fields = {"params": "param_dtype", "compute": "compute_dtype", "output": "output_dtype"}
      kwargs = {}
      for part in key.split(","):
        field, _, value = part.partition("=")
        if field.strip() not in fields:
          raise ValueError(f"Policy.from_string: unknown field {field.strip()!r} in {name!r}; "
                           f"expected {', '.join(fields)}")
        kwargs[fields[field.strip()]] = value.strip()
      return cls(**kwargs)
    raise ValueError(f"Policy.from_string: unknown policy {name!r}; known policies: {', '.join(_PRESETS)} "
                     f"or 'params=...,compute=...,output=...'")

  @property
  def needs_loss_scaling(self) -> bool:
    """True when computation runs in float16 (its gradients can underflow)."""
    return self.compute_dtype == jnp.dtype("float16")

  def cast_to_compute(self, tree: Any) -> Any:
    """Casts floating leaves (parameters, inputs) to ``compute_dtype``."""
    return _cast_floats(tree, self.compute_dtype)

  def cast_to_param(self, tree: Any) -> Any:
    """Casts floating leaves to ``param_dtype``."""
    return _cast_floats(tree, self.param_dtype)

  def cast_to_output(self, tree: Any) -> Any:
    """Casts floating leaves (logits, loss) to ``output_dtype``."""
    return _cast_floats(tree, self.output_dtype)


def get_policy(policy: str | Policy) -> Policy:
  """Returns ``policy`` if it is a ``Policy``, else ``Policy.from_string(policy)``.

  The one check of a ``precision`` argument (configs, steps, workloads):

  Raises:
    TypeError: neither a ``Policy`` nor a string.
    ValueError: an unknown name, with the known ones.
  """
  if isinstance(policy, Policy):
    return policy
  if not isinstance(policy, str):
    raise TypeError(f"precision: expected a Policy or a policy name such as 'mixed_bfloat16', got {policy!r}")
  try:
    return Policy.from_string(policy)
  except ValueError as e:
    raise ValueError(f"precision: expected 'float32', 'mixed_bfloat16' or 'mixed_float16', got {policy!r} "
                     f"({e})") from None


def all_finite(tree: Any) -> jax.Array:
  """A scalar bool: every element of every floating leaf of ``tree`` is finite."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  if not leaves:
    return jnp.asarray(True)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def select_tree(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
  """``jnp.where(pred, a, b)`` leaf by leaf over two trees of the same structure.

  Used to keep the old parameters and optimizer state when the gradients were
  not finite: ``select_tree(finite, (new_params, new_state), (params, state))``.

  Args:
    pred: a scalar bool.
    on_true: the tree returned where ``pred``.
    on_false: the tree returned otherwise; same structure, shapes and dtypes.

  Returns:
    the selected tree.
  """
  pred = jnp.asarray(pred)
  if pred.shape != () or pred.dtype != jnp.bool_:
    raise ValueError(f"select_tree: pred must be a scalar bool, got dtype {pred.dtype} shape {pred.shape}")
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


@struct.dataclass
class DynamicLossScale:
  """Dynamic loss scale: a pure pytree, kept in the train state and updated each step.

  ``scale`` and ``counter`` are arrays (carried through ``jit``/checkpoints);
  ``growth_interval``, ``factor``, ``min_scale`` and ``max_scale`` are static.

  Each step: ``loss·s`` is differentiated, the gradients are divided by ``s``
  and checked. Finite: ``counter ← counter + 1``, and when it reaches
  ``growth_interval``: ``s ← min(s·factor, max_scale)``, ``counter ← 0``.
  Not finite: the update is skipped, ``s ← max(s/factor, min_scale)``,
  ``counter ← 0``.

  Attributes:
    scale: the current scale ``s`` (float32 scalar).
    counter: finite steps since the last change of ``s`` (int32 scalar).
    growth_interval: finite steps in a row before ``s`` grows.
    factor: growth and backoff factor (> 1).
    min_scale: lower bound of ``s``.
    max_scale: upper bound of ``s``.
  """

  scale: jax.Array
  counter: jax.Array
  growth_interval: int = struct.field(pytree_node=False, default=2000)
  factor: float = struct.field(pytree_node=False, default=2.0)
  min_scale: float = struct.field(pytree_node=False, default=1.0)
  max_scale: float = struct.field(pytree_node=False, default=2.0**24)

  @classmethod
  def create(
      cls,
      initial_scale: float = 2.0**15,
      *,
      growth_interval: int = 2000,
      factor: float = 2.0,
      min_scale: float = 1.0,
      max_scale: float = 2.0**24,
  ) -> DynamicLossScale:
    """Builds the initial state.

    Args:
      initial_scale: starting scale (``2**15``: float16 loss values up to ~2 stay finite).
      growth_interval: finite steps in a row before the scale grows.
      factor: growth and backoff factor, > 1.
      min_scale: lower bound, > 0.
      max_scale: upper bound, >= ``initial_scale``.

    Returns:
      the loss-scale state.
    """

    def real(arg: str, value: Any) -> float:
      if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"DynamicLossScale.create: {arg} must be a finite real number, got {value!r}")
      return float(value)

    min_scale, max_scale = real("min_scale", min_scale), real("max_scale", max_scale)
    initial_scale, factor = real("initial_scale", initial_scale), real("factor", factor)
    if min_scale <= 0:
      raise ValueError(f"DynamicLossScale.create: min_scale must be > 0, got {min_scale!r}")
    if not min_scale <= initial_scale <= max_scale:
      raise ValueError(f"DynamicLossScale.create: initial_scale must be in [min_scale={min_scale:g}, "
                       f"max_scale={max_scale:g}], got {initial_scale!r}")
    if factor <= 1:
      raise ValueError(f"DynamicLossScale.create: factor must be > 1, got {factor!r}")
    if isinstance(growth_interval, bool) or not isinstance(growth_interval, numbers.Integral):
      raise TypeError(f"DynamicLossScale.create: growth_interval must be an integer, got {growth_interval!r}")
    if growth_interval < 1:
      raise ValueError(f"DynamicLossScale.create: growth_interval must be >= 1, got {growth_interval!r}")
    return cls(scale=jnp.asarray(initial_scale, jnp.float32), counter=jnp.zeros((), jnp.int32),
               growth_interval=int(growth_interval), factor=factor, min_scale=min_scale, max_scale=max_scale)

  def scale_loss(self, loss: jax.Array) -> jax.Array:
    """Returns ``loss·s`` (in ``loss``'s dtype; give it the float32 loss)."""
    return loss * self.scale.astype(loss.dtype)

  def unscale_and_check(self, grads: Any) -> tuple[Any, jax.Array]:
    """Divides the gradients by ``s`` (in float32) and checks that all are finite.

    Args:
      grads: gradients of ``scale_loss(loss)``.

    Returns:
      ``(grads / s`` in each leaf's dtype, scalar bool ``is_finite)``.
    """
    finite = all_finite(grads)
    inv = 1.0 / self.scale

    def unscale(g: Any) -> Any:
      g = jnp.asarray(g)
      if not jnp.issubdtype(g.dtype, jnp.inexact):
        return g
      return (g.astype(jnp.float32) * inv).astype(g.dtype)

    return jax.tree.map(unscale, grads), finite

  def adjust(self, is_finite: jax.Array) -> DynamicLossScale:
    """Returns the state for the next step (grow after ``growth_interval`` finite steps, back off on non-finite)."""
    is_finite = jnp.asarray(is_finite)
    counter = self.counter + 1
    grow = counter >= self.growth_interval
    grown = jnp.minimum(self.scale * self.factor, self.max_scale)
    shrunk = jnp.maximum(self.scale / self.factor, self.min_scale)
    scale = jnp.where(is_finite, jnp.where(grow, grown, self.scale), shrunk)
    counter = jnp.where(jnp.logical_and(is_finite, jnp.logical_not(grow)), counter, 0)
    return self.replace(scale=scale.astype(jnp.float32), counter=counter.astype(jnp.int32))
