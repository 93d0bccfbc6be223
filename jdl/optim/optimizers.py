"""The built-in optimizers, each an optax chain. g = gradient, p = parameters, lr = learning rate, t = step."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from optax import contrib

from jdl.optim._checks import _check_int, _check_learning_rate, _check_nonneg, _check_real, _check_unit, _nonzero
from jdl.optim.paths import _weight_decay_mask
from jdl.optim.registry import register
from jdl.optim.spaces import log_uniform, one_minus_log_uniform, uniform


def _lr(learning_rate: float | optax.Schedule) -> optax.GradientTransformation:
  return optax.scale_by_learning_rate(learning_rate)


def _decay(weight_decay: float, mask: Any = None) -> list[optax.GradientTransformation]:
  return [optax.add_decayed_weights(weight_decay, mask)] if _nonzero(weight_decay) else []


_ADAM_SPACE = {
    "learning_rate": log_uniform(1e-5, 1e-2),
    "b1": uniform(0.8, 0.95),
    "b2": one_minus_log_uniform(0.9, 0.9999),
    "eps": log_uniform(1e-10, 1e-6),
}


_ADAMW_SPACE = {**_ADAM_SPACE, "weight_decay": log_uniform(1e-5, 1e-1)}


@register("sgd", learning_rate=0.01, search_space={"learning_rate": log_uniform(1e-3, 1.0),
                                                    "weight_decay": log_uniform(1e-6, 1e-2)})
def sgd(learning_rate: float | optax.Schedule, *, weight_decay: float = 0.0) -> optax.GradientTransformation:
  """Plain gradient descent: ``p ← p - lr·(g + wd·p)``.

  Args:
    learning_rate: step size.
    weight_decay: L2 coefficient ``wd`` added to the gradient.

  Returns:
    ``chain(add_decayed_weights, scale_by_learning_rate)``.
  """
  wd = _check_nonneg("sgd", "weight_decay", weight_decay)
  return optax.chain(*_decay(wd), _lr(learning_rate))


@register("momentum", learning_rate=0.01, search_space={"learning_rate": log_uniform(1e-4, 1.0),
                                                         "momentum": uniform(0.8, 0.99)})
def momentum(learning_rate: float | optax.Schedule, *, momentum: float = 0.9,
             weight_decay: float = 0.0) -> optax.GradientTransformation:
  """Heavy-ball momentum: ``v ← μ·v + g``, ``p ← p - lr·v`` (``g`` includes ``wd·p``).

  Args:
    learning_rate: step size.
    momentum: ``μ`` in ``[0, 1)``.
    weight_decay: L2 coefficient added to the gradient.

  Returns:
    ``chain(add_decayed_weights, trace(μ), scale_by_learning_rate)``.
  """
  mu = _check_unit("momentum", "momentum", momentum)
  wd = _check_nonneg("momentum", "weight_decay", weight_decay)
  return optax.chain(*_decay(wd), optax.trace(decay=mu), _lr(learning_rate))


@register("nesterov", learning_rate=0.01, search_space={"learning_rate": log_uniform(1e-4, 1.0),
                                                         "momentum": uniform(0.8, 0.99)})
def nesterov(learning_rate: float | optax.Schedule, *, momentum: float = 0.9,
             weight_decay: float = 0.0) -> optax.GradientTransformation:
  """Nesterov momentum (Sutskever form): ``v ← μ·v + g``, ``p ← p - lr·(g + μ·v)``.

  Args:
    learning_rate: step size.
    momentum: ``μ`` in ``[0, 1)``.
    weight_decay: L2 coefficient added to the gradient.

  Returns:
    ``chain(add_decayed_weights, trace(μ, nesterov=True), scale_by_learning_rate)``.
  """
  mu = _check_unit("nesterov", "momentum", momentum)
  wd = _check_nonneg("nesterov", "weight_decay", weight_decay)
  return optax.chain(*_decay(wd), optax.trace(decay=mu, nesterov=True), _lr(learning_rate))


@register("adagrad", learning_rate=0.01, search_space={"learning_rate": log_uniform(1e-3, 1.0),
                                                        "initial_accumulator_value": log_uniform(1e-3, 1.0)})
def adagrad(learning_rate: float | optax.Schedule, *, initial_accumulator_value: float = 0.1,
            eps: float = 1e-7) -> optax.GradientTransformation:
  """Adagrad: ``G ← G + g²``, ``p ← p - lr·g/√(G + ε)`` with ``G₀ = initial_accumulator_value``.

  Args:
    learning_rate: step size.
    initial_accumulator_value: ``G₀ >= 0`` (Keras default 0.1).
    eps: ``ε`` inside the square root.

  Returns:
    ``chain(scale_by_rss, scale_by_learning_rate)``.
  """
  g0 = _check_nonneg("adagrad", "initial_accumulator_value", initial_accumulator_value)
  eps = _check_nonneg("adagrad", "eps", eps)
  return optax.chain(optax.scale_by_rss(initial_accumulator_value=g0, eps=eps), _lr(learning_rate))


@register("rmsprop", learning_rate=1e-3, search_space={"learning_rate": log_uniform(1e-5, 1e-2),
                                                        "decay": one_minus_log_uniform(0.8, 0.999),
                                                        "momentum": uniform(0.0, 0.95)})
def rmsprop(learning_rate: float | optax.Schedule, *, decay: float = 0.9, eps: float = 1e-8,
            momentum: float = 0.0, centered: bool = False) -> optax.GradientTransformation:
  """RMSProp: ``v ← ρ·v + (1-ρ)·g²``, ``u = g/(√v + ε)``, ``p ← p - lr·u``.

  Centered: also ``m ← ρ·m + (1-ρ)·g`` and ``u = g/(√(v - m²) + ε)``. With
  momentum ``μ > 0``: ``b ← μ·b + u``, ``p ← p - lr·b``. ``ε`` is outside the
  square root (as PyTorch and Keras).

  Args:
    learning_rate: step size.
    decay: ``ρ`` in ``[0, 1)``.
    eps: ``ε``.
    momentum: ``μ`` in ``[0, 1)``; 0 disables the momentum buffer.
    centered: divide by the gradient's standard deviation instead of its RMS.

  Returns:
    ``chain(scale_by_rms | scale_by_stddev, [trace(μ)], scale_by_learning_rate)``.
  """
  rho = _check_unit("rmsprop", "decay", decay)
  eps = _check_nonneg("rmsprop", "eps", eps)
  mu = _check_unit("rmsprop", "momentum", momentum)
  if not isinstance(centered, bool):
    raise TypeError(f"rmsprop: centered must be a bool, got {centered!r}")
  scale = optax.scale_by_stddev if centered else optax.scale_by_rms
  parts = [scale(decay=rho, eps=eps, eps_in_sqrt=False)]
  if _nonzero(mu):
    parts.append(optax.trace(decay=mu))
  return optax.chain(*parts, _lr(learning_rate))


def _adam_args(where: str, b1: float, b2: float, eps: float) -> tuple[float, float, float]:
  return _check_unit(where, "b1", b1), _check_unit(where, "b2", b2), _check_nonneg(where, "eps", eps)


@register("adam", learning_rate=1e-3, search_space=_ADAM_SPACE)
def adam(learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8) -> optax.GradientTransformation:
  """Adam: ``m ← β₁m + (1-β₁)g``, ``v ← β₂v + (1-β₂)g²``, ``p ← p - lr·m̂/(√v̂ + ε)``.

  ``m̂ = m/(1-β₁ᵗ)`` and ``v̂ = v/(1-β₂ᵗ)`` are the bias-corrected moments.

  Args:
    learning_rate: step size.
    b1: ``β₁`` in ``[0, 1)``.
    b2: ``β₂`` in ``[0, 1)``.
    eps: ``ε``.

  Returns:
    ``chain(scale_by_adam, scale_by_learning_rate)``.
  """
  b1, b2, eps = _adam_args("adam", b1, b2, eps)
  return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps), _lr(learning_rate))


@register("adamw", learning_rate=1e-3, search_space=_ADAMW_SPACE)
def adamw(learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 1e-4, weight_decay_exclude: Sequence[str] = ()) -> optax.GradientTransformation:
  """AdamW (decoupled weight decay): ``p ← p - lr·(m̂/(√v̂ + ε) + λ·p)``.

  Args:
    learning_rate: step size.
    b1: ``β₁``.
    b2: ``β₂``.
    eps: ``ε``.
    weight_decay: ``λ``.
    weight_decay_exclude: path patterns not decayed (e.g. ``["*bias", "*scale"]``).

  Returns:
    ``chain(scale_by_adam, add_decayed_weights, scale_by_learning_rate)``.
  """
  b1, b2, eps = _adam_args("adamw", b1, b2, eps)
  wd = _check_nonneg("adamw", "weight_decay", weight_decay)
  mask = _weight_decay_mask("adamw", weight_decay_exclude)
  return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps), *_decay(wd, mask), _lr(learning_rate))


@register("nadam", learning_rate=1e-3, search_space=_ADAM_SPACE)
def nadam(learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8) -> optax.GradientTransformation:
  """NAdam: Adam with a Nesterov look-ahead first moment.

  ``p ← p - lr·(β₁m/(1-β₁ᵗ⁺¹) + (1-β₁)g/(1-β₁ᵗ))/(√v̂ + ε)``.

  Args:
    learning_rate: step size.
    b1: ``β₁``.
    b2: ``β₂``.
    eps: ``ε``.

  Returns:
    ``chain(scale_by_adam(nesterov=True), scale_by_learning_rate)``.
  """
  b1, b2, eps = _adam_args("nadam", b1, b2, eps)
  return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps, nesterov=True), _lr(learning_rate))


@register("nadamw", learning_rate=1e-3, search_space=_ADAMW_SPACE)
def nadamw(learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
           weight_decay: float = 1e-4, weight_decay_exclude: Sequence[str] = ()) -> optax.GradientTransformation:
  """NAdamW: the NAdam direction plus decoupled weight decay ``lr·λ·p``.

  Args:
    learning_rate: step size.
    b1: ``β₁``.
    b2: ``β₂``.
    eps: ``ε``.
    weight_decay: ``λ``.
    weight_decay_exclude: path patterns not decayed.

  Returns:
    ``chain(scale_by_adam(nesterov=True), add_decayed_weights, scale_by_learning_rate)``.
  """
  b1, b2, eps = _adam_args("nadamw", b1, b2, eps)
  wd = _check_nonneg("nadamw", "weight_decay", weight_decay)
  mask = _weight_decay_mask("nadamw", weight_decay_exclude)
  return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps, nesterov=True), *_decay(wd, mask),
                     _lr(learning_rate))


@register("radam", learning_rate=1e-3, search_space=_ADAM_SPACE)
def radam(learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          threshold: float = 5.0) -> optax.GradientTransformation:
  """RAdam: Adam whose adaptive step is rectified while ``v`` is unreliable.

  ``ρ∞ = 2/(1-β₂) - 1``, ``ρₜ = ρ∞ - 2tβ₂ᵗ/(1-β₂ᵗ)``; if ``ρₜ >= threshold``:
  ``p ← p - lr·rₜ·m̂/(√v̂ + ε)`` with ``rₜ = √((ρₜ-4)(ρₜ-2)ρ∞/((ρ∞-4)(ρ∞-2)ρₜ))``,
  else the momentum step ``p ← p - lr·m̂``.

  Args:
    learning_rate: step size.
    b1: ``β₁``.
    b2: ``β₂``.
    eps: ``ε``.
    threshold: ``ρₜ`` above which the adaptive step is used.

  Returns:
    ``chain(scale_by_radam, scale_by_learning_rate)``.
  """
  b1, b2, eps = _adam_args("radam", b1, b2, eps)
  threshold = _check_nonneg("radam", "threshold", threshold)
  return optax.chain(optax.scale_by_radam(b1=b1, b2=b2, eps=eps, threshold=threshold), _lr(learning_rate))


@register("lamb", learning_rate=1e-3, search_space={**_ADAM_SPACE, "learning_rate": log_uniform(1e-4, 1e-1),
                                                     "weight_decay": log_uniform(1e-5, 1e-1)})
def lamb(learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
         weight_decay: float = 0.0, weight_decay_exclude: Sequence[str] = ()) -> optax.GradientTransformation:
  """LAMB: the AdamW direction ``u = m̂/(√v̂ + ε) + λp`` rescaled per layer by a trust ratio.

  ``p ← p - lr·(‖p‖/‖u‖)·u`` (ratio 1 when either norm is 0).

  Args:
    learning_rate: step size.
    b1: ``β₁``.
    b2: ``β₂``.
    eps: ``ε``.
    weight_decay: ``λ``.
    weight_decay_exclude: path patterns not decayed.

  Returns:
    ``chain(scale_by_adam, add_decayed_weights, scale_by_trust_ratio, scale_by_learning_rate)``.
  """
  b1, b2, eps = _adam_args("lamb", b1, b2, eps)
  wd = _check_nonneg("lamb", "weight_decay", weight_decay)
  mask = _weight_decay_mask("lamb", weight_decay_exclude)
  return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps), *_decay(wd, mask), optax.scale_by_trust_ratio(),
                     _lr(learning_rate))


@register("lion", learning_rate=1e-4, search_space={"learning_rate": log_uniform(1e-6, 1e-3),
                                                     "b1": uniform(0.8, 0.95),
                                                     "b2": one_minus_log_uniform(0.9, 0.999),
                                                     "weight_decay": log_uniform(1e-4, 1.0)})
def lion(learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.99, weight_decay: float = 0.0,
         weight_decay_exclude: Sequence[str] = ()) -> optax.GradientTransformation:
  """Lion: ``p ← p - lr·(sign(β₁m + (1-β₁)g) + λp)``, then ``m ← β₂m + (1-β₂)g``.

  Every coordinate moves by ``lr`` per step, so Lion wants a learning rate
  3-10x smaller than Adam's.

  Args:
    learning_rate: step size.
    b1: interpolation ``β₁`` for the update direction.
    b2: ``β₂`` for the momentum.
    weight_decay: ``λ``.
    weight_decay_exclude: path patterns not decayed.

  Returns:
    ``chain(scale_by_lion, add_decayed_weights, scale_by_learning_rate)``.
  """
  b1 = _check_unit("lion", "b1", b1)
  b2 = _check_unit("lion", "b2", b2)
  wd = _check_nonneg("lion", "weight_decay", weight_decay)
  mask = _weight_decay_mask("lion", weight_decay_exclude)
  return optax.chain(optax.scale_by_lion(b1=b1, b2=b2), *_decay(wd, mask), _lr(learning_rate))


@register("adafactor", learning_rate=1e-2, search_space={"learning_rate": log_uniform(1e-4, 1e-1),
                                                          "decay_rate": uniform(0.6, 0.9)})
def adafactor(learning_rate: float | optax.Schedule, *, decay_rate: float = 0.8, clipping_threshold: float | None = 1.0,
              multiply_by_parameter_scale: bool = True, min_dim_size_to_factor: int = 128,
              momentum: float | None = None, weight_decay_rate: float | None = None,
              eps: float = 1e-30) -> optax.GradientTransformation:
  """Adafactor: RMS scaling with factored second moments for large matrices.

  ``β₂ₜ = 1 - t^(-decay_rate)``; for a matrix, row and column means of
  ``g² + ε`` are tracked (``R ← β₂ₜR + (1-β₂ₜ)·rowmean``, same for ``C``) and
  ``v̂ = R Cᵀ / mean(R)``; vectors keep a full ``v``. ``u = g/√v̂`` is clipped
  to block-RMS ``<= clipping_threshold`` and ``p ← p - lr·max(1e-3, rms(p))·u``
  (the ``rms(p)`` factor only with ``multiply_by_parameter_scale``).

  Args:
    learning_rate: relative step size.
    decay_rate: exponent of the second-moment decay schedule.
    clipping_threshold: block-RMS clip of the update (``>= 1``), or None.
    multiply_by_parameter_scale: scale steps by the parameter's RMS.
    min_dim_size_to_factor: factor only when two dims are at least this big.
    momentum: optional EMA of updates (costs a full-size buffer).
    weight_decay_rate: optional decoupled decay.
    eps: regulariser added to ``g²``.

  Returns:
    ``optax.adafactor``'s chain.
  """
  decay_rate = _check_real("adafactor", "decay_rate", decay_rate, low=0.0, low_open=True, high=1.0)
  if clipping_threshold is not None:
    clipping_threshold = _check_real("adafactor", "clipping_threshold", clipping_threshold, low=1.0)
  min_dim = _check_int("adafactor", "min_dim_size_to_factor", min_dim_size_to_factor, low=1)
  if momentum is not None:
    momentum = _check_unit("adafactor", "momentum", momentum)
  if weight_decay_rate is not None:
    weight_decay_rate = _check_nonneg("adafactor", "weight_decay_rate", weight_decay_rate)
  return optax.adafactor(
      learning_rate=learning_rate, min_dim_size_to_factor=min_dim, decay_rate=decay_rate,
      multiply_by_parameter_scale=bool(multiply_by_parameter_scale), clipping_threshold=clipping_threshold,
      momentum=momentum, weight_decay_rate=weight_decay_rate, eps=_check_nonneg("adafactor", "eps", eps))


@register("muon", learning_rate=0.02, search_space={"learning_rate": log_uniform(1e-3, 1e-1),
                                                     "beta": uniform(0.8, 0.99)})
def muon(learning_rate: float | optax.Schedule, *, beta: float = 0.95, ns_steps: int = 5, nesterov: bool = True,
         weight_decay: float = 0.0, adam_b1: float = 0.9, adam_b2: float = 0.999,
         adam_learning_rate: float | optax.Schedule | None = None) -> optax.GradientTransformation:
  """Muon (``optax.contrib.muon``): momentum orthogonalised by Newton-Schulz, for 2-D weights.

  For each matrix: ``m ← βm + (1-β)g`` (Nesterov: use ``βm̂ + (1-β)ĝ``),
  ``O = NewtonSchulz(m)`` ≈ ``U Vᵀ`` of ``m = U S Vᵀ``,
  ``p ← p - lr·(√max(1, fan_out/fan_in)·O + λp)``. Parameters that are not
  matrices (biases, scales, vectors) get AdamW (``adam_b1``, ``adam_b2``) instead.

  Args:
    learning_rate: step size of the matrix updates.
    beta: momentum ``β``.
    ns_steps: Newton-Schulz iterations.
    nesterov: Nesterov momentum.
    weight_decay: ``λ`` on the matrices.
    adam_b1: AdamW ``β₁`` for non-matrix parameters.
    adam_b2: AdamW ``β₂`` for non-matrix parameters.
    adam_learning_rate: AdamW step size; None uses ``learning_rate``.

  Returns:
    ``optax.contrib.muon``'s partitioned transformation.
  """
  beta = _check_unit("muon", "beta", beta)
  ns_steps = _check_int("muon", "ns_steps", ns_steps, low=1)
  wd = _check_nonneg("muon", "weight_decay", weight_decay)
  adam_b1 = _check_unit("muon", "adam_b1", adam_b1)
  adam_b2 = _check_unit("muon", "adam_b2", adam_b2)
  if adam_learning_rate is not None:
    adam_learning_rate = _check_learning_rate("muon", adam_learning_rate)
  return contrib.muon(learning_rate, ns_steps=ns_steps, beta=beta, weight_decay=wd, nesterov=bool(nesterov),
                      adam_b1=adam_b1, adam_b2=adam_b2, adam_learning_rate=adam_learning_rate)


@register("schedule_free_adamw", learning_rate=2.5e-3, search_space={
    "learning_rate": log_uniform(1e-4, 1e-1), "b1": one_minus_log_uniform(0.8, 0.98),
    "b2": one_minus_log_uniform(0.9, 0.9999), "weight_decay": log_uniform(1e-5, 1e-1)})
def schedule_free_adamw(learning_rate: float | optax.Schedule, *, b1: float = 0.9, b2: float = 0.999,
                        eps: float = 1e-8, weight_decay: float = 0.0,
                        weight_lr_power: float = 2.0) -> optax.GradientTransformation:
  """Schedule-free AdamW (``optax.contrib.schedule_free_adamw``): no decay schedule needed.

  ``z ← z - lr·(g/(√v̂ + ε) + λy)`` (momentum-free AdamW step at ``y``),
  ``x ← (1-cₜ)x + cₜz`` with ``cₜ = lrₜ²/Σᵢ lrᵢ²`` (``weight_lr_power`` 2),
  ``y = (1-β₁)z + β₁x``. Training parameters are ``y``; **evaluate at ``x``**:
  ``jdl.optim.eval_params(opt_state, params)``. Use a constant or
  ``warmup_constant`` schedule, not a decaying one.

  Args:
    learning_rate: step size (a float or a warmup schedule).
    b1: interpolation ``β₁`` in ``(0, 1)``.
    b2: ``β₂``.
    eps: ``ε``.
    weight_decay: ``λ``.
    weight_lr_power: exponent of the learning rate in the averaging weights.

  Returns:
    the ``optax.contrib.schedule_free`` transformation.
  """
  b1 = _check_real("schedule_free_adamw", "b1", b1, low=0.0, low_open=True, high=1.0, high_open=True)
  b2 = _check_unit("schedule_free_adamw", "b2", b2)
  eps = _check_nonneg("schedule_free_adamw", "eps", eps)
  wd = _check_nonneg("schedule_free_adamw", "weight_decay", weight_decay)
  power = _check_nonneg("schedule_free_adamw", "weight_lr_power", weight_lr_power)
  return contrib.schedule_free_adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=wd, weight_lr_power=power)


@register("schedule_free_sgd", learning_rate=1.0, search_space={
    "learning_rate": log_uniform(1e-2, 10.0), "b1": one_minus_log_uniform(0.8, 0.98)})
def schedule_free_sgd(learning_rate: float | optax.Schedule, *, b1: float = 0.9, weight_decay: float = 0.0,
                      weight_lr_power: float = 2.0) -> optax.GradientTransformation:
  """Schedule-free SGD: ``z ← z - lr·(g + λy)`` at ``y``; ``x`` and ``y`` as in ``schedule_free_adamw``.

  Evaluate at ``jdl.optim.eval_params(opt_state, params)``.

  Args:
    learning_rate: step size.
    b1: interpolation ``β₁`` in ``(0, 1)``.
    weight_decay: ``λ``.
    weight_lr_power: exponent of the learning rate in the averaging weights.

  Returns:
    the ``optax.contrib.schedule_free`` transformation.
  """
  b1 = _check_real("schedule_free_sgd", "b1", b1, low=0.0, low_open=True, high=1.0, high_open=True)
  wd = _check_nonneg("schedule_free_sgd", "weight_decay", weight_decay)
  power = _check_nonneg("schedule_free_sgd", "weight_lr_power", weight_lr_power)
  return contrib.schedule_free_sgd(learning_rate, b1=b1, weight_decay=wd if _nonzero(wd) else None,
                                   weight_lr_power=power)


EvalParamsFn = Callable[[Any, Any], Any]


_EVAL_PARAMS: dict[type, EvalParamsFn] = {}


def register_eval_params(state_type: type, fn: EvalParamsFn) -> None:
  """Declares that an optimizer whose state contains a ``state_type`` is evaluated at ``fn(state, params)``.

  The hook of averaging optimizers (schedule-free, EMA, Polyak or SWA
  averages): training updates one sequence of parameters and evaluation should
  use another. Every evaluation in jdl (``make_eval_step``, hence ``fit``'s
  evaluations, the best-checkpoint choice, the test metrics and the benchmark
  curves) calls ``eval_params``, which finds a registered state anywhere in
  the optimizer state (under ``chain``, clipping, freezing, ``MultiSteps``)
  and applies its ``fn``.

  Args:
    state_type: the optimizer-state class to look for (e.g. a ``NamedTuple``).
    fn: ``(that state, params) -> params to evaluate``.
  """
  if not isinstance(state_type, type):
    raise TypeError(f"register_eval_params: state_type must be a class, got {state_type!r}")
  if not callable(fn):
    raise TypeError(f"register_eval_params: fn must be callable (state, params) -> params, got {fn!r}")
  _EVAL_PARAMS[state_type] = fn


def _find_eval_state(state: Any) -> tuple[Any, EvalParamsFn] | None:
  for state_type, fn in _EVAL_PARAMS.items():
    if isinstance(state, state_type):
      return state, fn
  children = state.values() if isinstance(state, Mapping) else state if isinstance(state, (tuple, list)) else ()
  for child in children:
    found = _find_eval_state(child)
    if found is not None:
      return found
  return None


def eval_params(opt_state: Any, params: Any) -> Any:
  """Returns the parameters to evaluate (and checkpoint for inference) with.

  For every optimizer without a registered evaluation hook
  (``register_eval_params``) this is ``params`` itself. For schedule-free
  optimizers the trained parameters are ``y = (1-β₁)z + β₁x`` and the
  evaluation parameters are ``x = (y - (1-β₁)z)/β₁``. Frozen parameters are
  returned unchanged.

  Args:
    opt_state: the optimizer state (as returned by ``tx.init``/``tx.update``);
      None gives ``params``.
    params: the current (training) parameters.

  Returns:
    a tree like ``params``.
  """
  found = _find_eval_state(opt_state)
  if found is None:
    return params
  state, fn = found
  return fn(state, params)


def _schedule_free_x(state: contrib.ScheduleFreeState, params: Any) -> Any:
  b1 = state.b1

  def one(y: Any, z: Any) -> Any:
    if isinstance(z, optax.MaskedNode):
      return y
    return ((y - (1.0 - b1) * z) / b1).astype(jnp.asarray(y).dtype)

  return jax.tree.map(one, params, state.z)


register_eval_params(contrib.ScheduleFreeState, _schedule_free_x)
