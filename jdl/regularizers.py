"""Parameter penalties, parameter masks and constraint transforms.

Penalties are ``regularizer(params) -> scalar`` functions built by factories
(``l2(1e-4)``), added once per batch to the reduced data loss (see
``jdl.losses.with_regularizer``). Each honours a *parameter mask*: a pytree of
Python bools with the params' structure (True = regularized), or a function
``params -> mask``. The default mask, :func:`default_mask`, leaves out biases and
normalization scales/offsets (Flax leaves named ``bias`` and ``scale``, as in
``Dense``, ``Conv``, ``LayerNorm``, ``BatchNorm``); :func:`make_mask` builds
others from glob or regex patterns over ``'/'``-joined paths such as
``"Dense_0/kernel"``.

Constraints act on the optimizer side as optax ``GradientTransformation``\\ s
that go **last** in a chain, after the learning-rate scaling, because they look
at the parameters the update would produce:

* :func:`max_norm` projects each unit's incoming weight vector back into a ball;
* :func:`l1_proximal` applies the L1 proximal (soft-threshold) step so that L1
  training gives exact zeros;
* :func:`weight_decay` is decoupled weight decay (goes *before* the optimizer),
  which for plain SGD equals an L2 penalty.

Example:

  >>> import jax.numpy as jnp, optax
  >>> import jdl.regularizers as reg
  >>> params = {"Dense_0": {"kernel": jnp.array([[3.0, -4.0]]), "bias": jnp.array([10.0, 10.0])}}
  >>> float(reg.l2(0.1)(params))  # 0.1 / 2 * (9 + 16); the bias is left out
  1.25
  >>> tx = optax.chain(optax.sgd(0.1), reg.l1_proximal(0.01, learning_rate=0.1))
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Params = Any
Mask = Any
"""A pytree of bools with the params' structure (True = regularized)."""
MaskSpec = Mask | Callable[[Params], Mask] | None
"""A mask, a function ``params -> mask``, or ``None`` for :func:`default_mask`."""
Regularizer = Callable[[Params], jax.Array]

DEFAULT_EXCLUDE: tuple[str, ...] = ("bias", "*/bias", "scale", "*/scale")
"""Glob patterns of the parameters the default mask leaves out: biases and the
scale/offset of normalization layers (Flax names both ``bias``/``scale``)."""


# --------------------------------------------------------------------------- #
# Paths and masks.
# --------------------------------------------------------------------------- #


def _key_name(key: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def path_str(path: Sequence[Any]) -> str:
  """``'/'``-joins a pytree key path: ``(DictKey('Dense_0'), DictKey('kernel'))`` -> ``'Dense_0/kernel'``."""
  return "/".join(_key_name(key) for key in path)


def param_paths(params: Params) -> list[str]:
  """The ``'/'``-joined path of every leaf, in ``jax.tree.leaves`` order.

  Example:
    >>> param_paths({"Dense_0": {"bias": 0.0, "kernel": 1.0}})
    ['Dense_0/bias', 'Dense_0/kernel']
  """
  return [path_str(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def make_mask(include: Sequence[str] | str | None = None, exclude: Sequence[str] | str = DEFAULT_EXCLUDE,
              *, syntax: str = "glob") -> Callable[[Params], Mask]:
  """A mask function from name patterns over ``'/'``-joined parameter paths.

  A leaf is regularized iff it matches some ``include`` pattern (any leaf when
  ``include`` is None) and matches no ``exclude`` pattern. Patterns match the
  whole path — globs with ``fnmatch`` (``*`` also crosses ``/``), regexes with
  ``re.fullmatch`` — and, as in ``jdl.optim``, a pattern also matches
  everything below it (``"Embed_0"`` covers ``"Embed_0/embedding"``).

  Args:
    include: patterns of the leaves to regularize; None = all.
    exclude: patterns of the leaves to leave out; defaults to
      :data:`DEFAULT_EXCLUDE` (biases and norm scales); ``()`` leaves out none.
    syntax: ``"glob"`` or ``"regex"``.

  Returns:
    ``mask_fn(params) -> pytree of bools``, usable wherever a mask is taken
    here and as ``optax.masked`` / ``optax.add_decayed_weights`` masks.

  Example:
    >>> mask_fn = make_mask(exclude=("*bias", "Embed_0"))
    >>> mask_fn({"Embed_0": {"embedding": 1.0}, "Dense_0": {"bias": 1.0, "kernel": 1.0}})
    {'Dense_0': {'bias': False, 'kernel': True}, 'Embed_0': {'embedding': False}}
  """
  if syntax not in ("glob", "regex"):
    raise ValueError(f"make_mask: syntax must be 'glob' or 'regex', got {syntax!r}")

  def compile_all(patterns: Sequence[str] | str | None, arg: str) -> list[Callable[[str], bool]] | None:
    if patterns is None:
      return None
    if isinstance(patterns, str):
      patterns = (patterns,)
    matchers = []
    for pattern in patterns:
      if not isinstance(pattern, str):
        raise TypeError(f"make_mask: {arg} must hold strings, got {pattern!r}")
      if syntax == "glob":
        matchers.append(lambda path, p=pattern: fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path, p + "/*"))
      else:
        try:
          compiled = re.compile(f"(?:{pattern})(?:/.*)?")
        except re.error as e:
          raise ValueError(f"make_mask: {arg} pattern {pattern!r} is not a valid regex: {e}") from None
        matchers.append(lambda path, c=compiled: c.fullmatch(path) is not None)
    return matchers

  includes = compile_all(include, "include")
  excludes = compile_all(exclude, "exclude") or []

  def mask_fn(params: Params) -> Mask:
    def decide(path: Sequence[Any], _: Any) -> bool:
      name = path_str(path)
      wanted = includes is None or any(match(name) for match in includes)
      return wanted and not any(match(name) for match in excludes)

    return jax.tree_util.tree_map_with_path(decide, params)

  return mask_fn


default_mask: Callable[[Params], Mask] = make_mask()
"""Regularizes every leaf except biases and normalization scales/offsets."""


def resolve_mask(mask: MaskSpec, params: Params) -> Mask:
  """The pytree of bools that ``mask`` (a tree, a function, or None) means for ``params``."""
  tree = default_mask(params) if mask is None else mask(params) if callable(mask) else mask
  if jax.tree.structure(tree) != jax.tree.structure(params):
    raise ValueError(
        f"mask: the mask's tree structure {jax.tree.structure(tree)} does not match the params' "
        f"{jax.tree.structure(params)}")
  for leaf in jax.tree.leaves(tree):
    if not isinstance(leaf, bool) and not (hasattr(leaf, "dtype") and leaf.shape == () and leaf.dtype == bool):
      raise TypeError(f"mask: leaves must be bools (True = regularized), got {leaf!r}")
  return tree


def _masked_leaves(params: Params, mask: MaskSpec) -> list[jax.Array]:
  tree = resolve_mask(mask, params)
  return [jnp.asarray(w) for w, keep in zip(jax.tree.leaves(params), jax.tree.leaves(tree)) if bool(keep)]


def _check_strength(value: Any, name: str, fn: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
    raise ValueError(f"{fn}: {name} must be a non-negative number, got {value!r}")
  return float(value)


def _sum(values: list[jax.Array]) -> jax.Array:
  return sum(values, jnp.zeros((), jnp.float32))


# --------------------------------------------------------------------------- #
# Penalties.
# --------------------------------------------------------------------------- #


def l1(strength: float, *, mask: MaskSpec = None) -> Regularizer:
  r"""L1 penalty :math:`\lambda \sum_i |w_i|` over the masked leaves.

  Its subgradient pushes weights to zero but plain (sub)gradient descent only
  makes them oscillate around it; use :func:`l1_proximal` for exact zeros.

  Args:
    strength: :math:`\lambda \ge 0`.
    mask: see :func:`resolve_mask`; None = :func:`default_mask`.

  Returns:
    ``regularizer(params) -> scalar``.

  Example:
    >>> float(l1(0.5)({"kernel": jnp.array([1.0, -3.0])}))
    2.0
  """
  strength = _check_strength(strength, "strength", "l1")
  return lambda params: strength * _sum([jnp.sum(jnp.abs(w)) for w in _masked_leaves(params, mask)])


def l2(strength: float, *, mask: MaskSpec = None) -> Regularizer:
  r"""L2 penalty :math:`\frac{\lambda}{2} \sum_i w_i^2` over the masked leaves.

  The factor 1/2 makes the gradient :math:`\lambda w`, so SGD on loss + penalty
  is :math:`w \leftarrow w - \eta(\nabla L + \lambda w)`: weight decay
  (:func:`weight_decay`).

  Args:
    strength: :math:`\lambda \ge 0`.
    mask: see :func:`resolve_mask`.

  Returns:
    ``regularizer(params) -> scalar``.

  Example:
    >>> float(l2(0.5)({"kernel": jnp.array([1.0, -3.0])}))
    2.5
  """
  strength = _check_strength(strength, "strength", "l2")
  return lambda params: 0.5 * strength * _sum([jnp.sum(jnp.square(w)) for w in _masked_leaves(params, mask)])


def linf(strength: float, *, mask: MaskSpec = None) -> Regularizer:
  r"""L∞ penalty :math:`\lambda \max_i |w_i|` over all masked weights together.

  Args:
    strength: :math:`\lambda \ge 0`.
    mask: see :func:`resolve_mask`.

  Returns:
    ``regularizer(params) -> scalar`` (0 when the mask selects nothing).

  Example:
    >>> float(linf(2.0)({"a": jnp.array([1.0, -3.0]), "b": jnp.array([2.0])}))
    6.0
  """
  strength = _check_strength(strength, "strength", "linf")

  def regularizer(params: Params) -> jax.Array:
    maxima = [jnp.max(jnp.abs(w), initial=0.0) for w in _masked_leaves(params, mask)]
    return strength * (jnp.max(jnp.stack(maxima)) if maxima else jnp.zeros((), jnp.float32))

  return regularizer


def elastic_net(l1_strength: float, l2_strength: float, *, mask: MaskSpec = None) -> Regularizer:
  r"""Elastic net :math:`\lambda_1 \sum|w| + \frac{\lambda_2}{2} \sum w^2`.

  Args:
    l1_strength: :math:`\lambda_1 \ge 0`.
    l2_strength: :math:`\lambda_2 \ge 0`.
    mask: see :func:`resolve_mask`.

  Returns:
    ``regularizer(params) -> scalar``.

  Example:
    >>> float(elastic_net(1.0, 2.0)({"kernel": jnp.array([1.0, -3.0])}))
    14.0
  """
  l1_fn = l1(_check_strength(l1_strength, "l1_strength", "elastic_net"), mask=mask)
  l2_fn = l2(_check_strength(l2_strength, "l2_strength", "elastic_net"), mask=mask)
  return lambda params: l1_fn(params) + l2_fn(params)


def l0(*, tol: float = 0.0, mask: MaskSpec = None) -> Callable[[Params], jax.Array]:
  r"""L0 count: the number of masked weights that are (near-)zero.

  It counts the (near-)zero weights :math:`\#\{i : |w_i| \le
  \mathrm{tol}\}` — exact zeros with the default ``tol=0``. A diagnostic
  (sparsity) metric, not a differentiable penalty: it returns an int32.

  Args:
    tol: weights with ``|w| <= tol`` count as zero.
    mask: see :func:`resolve_mask`.

  Returns:
    ``count(params) -> int32 scalar``.

  Example:
    >>> int(l0()({"kernel": jnp.array([0.0, 1.0, -0.0, 1e-9])}))
    2
  """
  tol = _check_strength(tol, "tol", "l0")
  return lambda params: sum([jnp.sum(jnp.abs(w) <= tol, dtype=jnp.int32) for w in _masked_leaves(params, mask)],
                            jnp.zeros((), jnp.int32))


def count_params(params: Params, *, mask: MaskSpec = None) -> int:
  """The number of masked weights (the denominator of a sparsity fraction)."""
  return sum(int(w.size) for w in _masked_leaves(params, mask))


_REGULARIZERS: dict[str, Callable[..., Callable[[Params], jax.Array]]] = {
    "l1": l1,
    "l2": l2,
    "linf": linf,
    "elastic_net": elastic_net,
    "l0": l0,
}


def get(name: str, **options: Any) -> Callable[[Params], jax.Array]:
  """A penalty by name: ``get("l2", strength=1e-4)``.

  Args:
    name: one of ``l1``, ``l2``, ``linf``, ``elastic_net``, ``l0``.
    **options: the factory's arguments (``strength``, ``mask``, ...).

  Raises:
    ValueError: unknown name (the message lists the known ones).

  Example:
    >>> float(get("l1", strength=1.0)({"kernel": jnp.array([-2.0])}))
    2.0
  """
  if name not in _REGULARIZERS:
    raise ValueError(f"get: unknown regularizer {name!r}; known regularizers: {', '.join(sorted(_REGULARIZERS))}")
  return _REGULARIZERS[name](**options)


def parse_spec(spec: str) -> list[tuple[str, tuple[float, ...]]]:
  """``"l2:1e-4,l1:1e-5"`` → ``[("l2", (1e-4,)), ("l1", (1e-5,))]``; ``elastic_net:L1:L2`` takes two strengths.

  Raises:
    ValueError: an unknown name (the known ones listed), a strength that is not a number >= 0, or the
      wrong number of strengths.
  """
  if not isinstance(spec, str):
    raise ValueError(f"regularizer: expected a string such as 'l2:1e-4' or 'l1:1e-5,l2:1e-4', got {spec!r}")
  terms = []
  for part in (p.strip() for p in spec.split(",")):
    if not part:
      continue
    name, *values = (v.strip() for v in part.split(":"))
    known = sorted(set(_REGULARIZERS) - {"l0"})
    if name not in known:
      raise ValueError(f"regularizer: unknown regularizer {name!r} in {spec!r}; known regularizers: "
                       f"{', '.join(known)} (written name:strength, e.g. l2:1e-4)")
    wanted = 2 if name == "elastic_net" else 1
    if len(values) != wanted:
      form = "elastic_net:L1_STRENGTH:L2_STRENGTH" if wanted == 2 else f"{name}:STRENGTH"
      raise ValueError(f"regularizer: {part!r} should be written {form}")
    try:
      numbers = tuple(float(v) for v in values)
    except ValueError:
      raise ValueError(f"regularizer: the strength in {part!r} is not a number") from None
    if any(not (n >= 0 and n < float("inf")) for n in numbers):
      raise ValueError(f"regularizer: strengths must be finite numbers >= 0, got {part!r}")
    terms.append((name, numbers))
  return terms


def from_spec(spec: str, exclude: Sequence[str] | str = DEFAULT_EXCLUDE,
              include: Sequence[str] | str | None = None) -> Regularizer | None:
  """The penalty a config names (``config.regularizer``): the sum of the ``parse_spec`` terms, each over the
  parameters ``make_mask(include, exclude)`` selects (by default every weight but biases and normalisation
  scales). None for an empty spec.

  Example:
    >>> params = {"Dense_0": {"kernel": jnp.array([[3.0, -4.0]]), "bias": jnp.array([10.0, 10.0])}}
    >>> round(float(from_spec("l2:0.1,l1:0.01")(params)), 4)  # 0.1 / 2 * 25 + 0.01 * 7
    1.32
  """
  terms = parse_spec(spec)
  if not terms:
    return None
  mask = make_mask(include, exclude)
  parts = [elastic_net(*numbers, mask=mask) if name == "elastic_net" else _REGULARIZERS[name](numbers[0], mask=mask)
           for name, numbers in terms]

  def penalty(params: Params) -> jax.Array:
    return _sum([fn(params) for fn in parts])

  return penalty


# --------------------------------------------------------------------------- #
# Optimizer-side transforms.
# --------------------------------------------------------------------------- #


def weight_decay(strength: float | optax.Schedule, *, mask: MaskSpec = None) -> optax.GradientTransformation:
  r"""Decoupled weight decay ``updates + λ w`` on the masked leaves.

  Put it **before** the optimizer: ``optax.chain(weight_decay(λ), optax.sgd(η))``
  gives :math:`w \leftarrow w - \eta(\nabla L + \lambda w)`, the same step as
  SGD on :math:`L + \frac{\lambda}{2}\sum w^2` (:func:`l2`). With adaptive
  optimizers the two differ (use ``optax.adamw`` for decoupled decay there).

  Args:
    strength: :math:`\lambda` (or a schedule).
    mask: see :func:`resolve_mask`; biases and norm scales are not decayed by
      default.

  Returns:
    ``optax.add_decayed_weights`` with the resolved mask.
  """
  return optax.add_decayed_weights(strength, mask=lambda params: resolve_mask(mask, params))


class L1ProximalState(NamedTuple):
  """The step count, for learning-rate schedules."""
  count: jax.Array


def _need_params(params: Any, fn: str) -> None:
  if params is None:
    raise ValueError(
        f"{fn}: this transform needs the current parameters; call tx.update(grads, state, params)")


def l1_proximal(strength: float, learning_rate: float | optax.Schedule, *,
                mask: MaskSpec = None) -> optax.GradientTransformation:
  r"""Proximal step for an L1 penalty :math:`\lambda\|w\|_1` (soft-thresholding).

  Proximal gradient descent (ISTA) takes the plain gradient step on the data
  loss, :math:`z = w - \eta \nabla L`, then applies the proximal operator of
  :math:`\eta\lambda\|\cdot\|_1`:

  .. math:: w \leftarrow \operatorname{sign}(z)\,\max(|z| - \eta\lambda,\ 0)

  Every weight whose step lands within :math:`\eta\lambda` of zero becomes
  **exactly** 0 (``w + (0 - w)`` is exactly 0 in floating point), which
  subgradient descent on :math:`\lambda\|w\|_1` never achieves.

  Place it **last** in the chain, after the optimizer has produced the final
  update ``-η ∇L``: ``optax.chain(optax.sgd(η), l1_proximal(λ, η))``; do *not*
  also add the L1 penalty to the loss. ``learning_rate`` must be the
  optimizer's (same schedule). This is exact ISTA for plain SGD; with momentum
  or Adam it is the usual heuristic.

  Args:
    strength: :math:`\lambda \ge 0`.
    learning_rate: :math:`\eta`, a float or an optax schedule of the step.
    mask: see :func:`resolve_mask`.

  Returns:
    a ``GradientTransformation`` whose ``update`` needs ``params``.
  """
  strength = _check_strength(strength, "strength", "l1_proximal")

  def init_fn(params: Params) -> L1ProximalState:
    del params
    return L1ProximalState(count=jnp.zeros((), jnp.int32))

  def update_fn(updates: Any, state: L1ProximalState, params: Params = None) -> tuple[Any, L1ProximalState]:
    _need_params(params, "l1_proximal")
    lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
    threshold = jnp.asarray(lr * strength, jnp.float32)

    def prox(u: jax.Array, w: jax.Array, keep: bool) -> jax.Array:
      if not keep:
        return u
      z = w + u
      shrunk = jnp.sign(z) * jnp.maximum(jnp.abs(z) - threshold.astype(z.dtype), 0)
      return (shrunk - w).astype(u.dtype)

    new_updates = jax.tree.map(prox, updates, params, resolve_mask(mask, params))
    return new_updates, L1ProximalState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


def max_norm(max_value: float, *, axis: int | Sequence[int] | None = None,
             mask: MaskSpec = None) -> optax.GradientTransformation:
  r"""Max-norm constraint: each unit's incoming weight vector has norm <= ``max_value``.

  After the update, for every output unit j the weights into it,
  :math:`w_{\cdot j}` (a ``Dense`` kernel's column ``[:, j]``, a ``Conv``
  filter ``[..., j]``), are rescaled if needed:

  .. math:: w_{\cdot j} \leftarrow w_{\cdot j} \min\!\left(1, \frac{c}{\|w_{\cdot j}\|_2}\right)

  It rewrites the update as ``projected(w + u) - w``, so it must sit **last** in
  the chain, after the learning-rate scaling:
  ``optax.chain(optax.sgd(η), max_norm(3.0))`` — then
  ``optax.apply_updates`` yields the projected weights (up to float rounding).
  Units already inside the ball keep the update unchanged.

  Args:
    max_value: the radius c > 0.
    axis: the axes the norm runs over; default all but the last (the incoming
      axes of Flax ``Dense``/``Conv`` kernels). For ``Embed`` tables pass
      ``axis=-1``.
    mask: see :func:`resolve_mask`; by default only non-bias, non-scale leaves.

  Returns:
    a ``GradientTransformation`` whose ``update`` needs ``params``.
  """
  if isinstance(max_value, bool) or not isinstance(max_value, (int, float)) or not max_value > 0:
    raise ValueError(f"max_norm: max_value must be a positive number, got {max_value!r}")
  max_value = float(max_value)

  def update_fn(updates: Any, state: optax.EmptyState, params: Params = None) -> tuple[Any, optax.EmptyState]:
    _need_params(params, "max_norm")

    def project(u: jax.Array, w: jax.Array, keep: bool) -> jax.Array:
      if not keep:
        return u
      new = w + u
      axes = axis if axis is not None else (tuple(range(new.ndim - 1)) if new.ndim > 1 else None)
      norms = jnp.sqrt(jnp.sum(jnp.square(new), axis=axes, keepdims=True))
      too_long = norms > max_value
      factor = max_value / jnp.where(too_long, norms, 1.0)
      return jnp.where(too_long, new * factor - w, u).astype(u.dtype)

    return jax.tree.map(project, updates, params, resolve_mask(mask, params)), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
