"""Learning-rate schedules by name; all count optimizer updates (t = 0, 1, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdl.optim._checks import ScheduleFactory, _bind, _check_int, _check_nonneg, _check_real, _is_real
from jdl.registry import Registry


SCHEDULES: Registry[ScheduleFactory] = Registry("schedule", where="register_schedule")


def register_schedule(name: str, factory: ScheduleFactory | None = None, *, overwrite: bool = False) -> Any:
  """Registers a schedule factory ``factory(learning_rate, total_steps, **kwargs) -> optax.Schedule``.

  Args:
    name: the name configs use (``cfg.schedule.name``).
    factory: the factory; omitted, ``register_schedule`` returns a decorator.
    overwrite: allow replacing an existing registration (a built-in one too).

  Returns:
    ``factory`` (or a decorator that registers and returns it unchanged).
  """
  return SCHEDULES.register(name, overwrite=overwrite) if factory is None else SCHEDULES.register(
      name, factory, overwrite=overwrite)


def list_schedules() -> list[str]:
  """Returns the registered schedule names, sorted."""
  return SCHEDULES.names()


def schedule(name: str, *, learning_rate: float, total_steps: int | None = None, **kwargs: Any) -> optax.Schedule:
  """Builds the learning-rate schedule ``name``.

  Args:
    name: a registered schedule (``list_schedules()``).
    learning_rate: the base (peak) learning rate, ``>= 0``.
    total_steps: the number of optimizer updates of the run; the default for
      the schedule's ``decay_steps`` (schedules that decay need one of the two).
    **kwargs: the schedule's own arguments (see its docstring).

  Returns:
    ``fn(count) -> learning rate``.
  """
  where = f"schedule {name!r}"
  learning_rate = _check_nonneg(where, "learning_rate", learning_rate)
  if total_steps is not None:
    total_steps = _check_int(where, "total_steps", total_steps, low=1)
  factory = SCHEDULES.entry(name, "schedule").obj
  _bind(where, factory, {"learning_rate": learning_rate, "total_steps": total_steps, **kwargs})
  return factory(learning_rate=learning_rate, total_steps=total_steps, **kwargs)


def _decay_steps(where: str, decay_steps: int | None, total_steps: int | None) -> int:
  if decay_steps is None:
    if total_steps is None:
      raise ValueError(f"{where}: decay_steps is required when total_steps is unknown "
                       f"(got decay_steps=None, total_steps=None)")
    return total_steps
  return _check_int(where, "decay_steps", decay_steps, low=1)


@register_schedule("constant")
def _constant(learning_rate: float, total_steps: int | None) -> optax.Schedule:
  """``lr(t) = lr``."""
  del total_steps
  return optax.constant_schedule(learning_rate)


@register_schedule("step_decay")
def _step_decay(learning_rate: float, total_steps: int | None, *, boundaries: Sequence[int] | None = None,
                step_size: int | None = None, decay_rate: float | Sequence[float] = 0.1) -> optax.Schedule:
  """Staircase: ``lr(t) = lr·Π_{bᵢ <= t} rᵢ``.

  Give either ``boundaries`` (steps where the rate is multiplied by
  ``decay_rate``, or by ``decay_rate[i]`` at ``boundaries[i]``), or
  ``step_size`` (``lr(t) = lr·r^⌊t/step_size⌋``).
  """
  del total_steps
  where = "schedule 'step_decay'"
  if (boundaries is None) == (step_size is None):
    raise ValueError(f"{where}: give exactly one of boundaries and step_size, got boundaries={boundaries!r}, "
                     f"step_size={step_size!r}")
  if step_size is not None:
    step_size = _check_int(where, "step_size", step_size, low=1)
    rate = _check_nonneg(where, "decay_rate", decay_rate)
    return lambda count: learning_rate * jnp.power(rate, jnp.floor_divide(count, step_size).astype(jnp.float32))
  if isinstance(boundaries, (str, bytes)) or not isinstance(boundaries, Sequence) or not boundaries:
    raise TypeError(f"{where}: boundaries must be a non-empty list of steps, got {boundaries!r}")
  bounds = [_check_int(where, "boundaries", b, low=1) for b in boundaries]
  if any(b >= c for b, c in zip(bounds, bounds[1:])):
    raise ValueError(f"{where}: boundaries must be strictly increasing, got {boundaries!r}")
  if _is_real(decay_rate):
    rates = [decay_rate] * len(bounds)
  elif isinstance(decay_rate, Sequence) and len(decay_rate) == len(bounds):
    rates = list(decay_rate)
  else:
    raise ValueError(f"{where}: decay_rate must be a number or a list of len(boundaries)={len(bounds)} numbers, "
                     f"got {decay_rate!r}")
  rates = [_check_nonneg(where, "decay_rate", r) for r in rates]
  values = np.asarray(learning_rate * np.cumprod([1.0, *rates]), np.float32)
  bounds_arr = np.asarray(bounds, np.int32)
  return lambda count: jnp.asarray(values)[jnp.searchsorted(bounds_arr, count, side="right")]


@register_schedule("exponential")
def _exponential(learning_rate: float, total_steps: int | None, *, decay_rate: float = 0.1,
                 decay_steps: int | None = None, staircase: bool = False,
                 end_value: float | None = None) -> optax.Schedule:
  """``lr(t) = lr·decay_rate^(t/decay_steps)`` (``⌊t/decay_steps⌋`` with ``staircase``), floored at ``end_value``.

  ``decay_steps`` defaults to ``total_steps``: the rate reaches
  ``lr·decay_rate`` at the end of the run.
  """
  where = "schedule 'exponential'"
  steps = _decay_steps(where, decay_steps, total_steps)
  rate = _check_real(where, "decay_rate", decay_rate, low=0.0, low_open=True)
  if end_value is not None:
    end_value = _check_nonneg(where, "end_value", end_value)
  return optax.exponential_decay(learning_rate, transition_steps=steps, decay_rate=rate, staircase=bool(staircase),
                                 end_value=end_value)


@register_schedule("cosine")
def _cosine(learning_rate: float, total_steps: int | None, *, decay_steps: int | None = None,
            end_value: float = 0.0) -> optax.Schedule:
  """Cosine annealing: ``lr(t) = e + (lr - e)·½(1 + cos(π·min(t, T)/T))``.

  ``T = decay_steps`` (default ``total_steps``), ``e = end_value``.
  """
  where = "schedule 'cosine'"
  steps = _decay_steps(where, decay_steps, total_steps)
  end = _check_nonneg(where, "end_value", end_value)
  alpha = end / learning_rate if learning_rate else 0.0
  return optax.cosine_decay_schedule(learning_rate, decay_steps=steps, alpha=alpha)


@register_schedule("warmup_cosine")
def _warmup_cosine(learning_rate: float, total_steps: int | None, *, warmup_steps: int,
                   decay_steps: int | None = None, init_value: float = 0.0,
                   end_value: float = 0.0) -> optax.Schedule:
  """Linear warmup ``init_value → lr`` over ``warmup_steps``, then cosine ``lr → end_value``.

  ``decay_steps`` is the whole length, warmup included (default ``total_steps``):
  the cosine runs for ``decay_steps - warmup_steps`` updates.
  """
  where = "schedule 'warmup_cosine'"
  warmup = _check_int(where, "warmup_steps", warmup_steps, low=0)
  steps = _decay_steps(where, decay_steps, total_steps)
  if steps <= warmup:
    raise ValueError(f"{where}: decay_steps (warmup included) must be > warmup_steps={warmup}, got {steps}")
  return optax.warmup_cosine_decay_schedule(
      init_value=_check_nonneg(where, "init_value", init_value), peak_value=learning_rate, warmup_steps=warmup,
      decay_steps=steps, end_value=_check_nonneg(where, "end_value", end_value))


@register_schedule("warmup_constant")
def _warmup_constant(learning_rate: float, total_steps: int | None, *, warmup_steps: int,
                     init_value: float = 0.0) -> optax.Schedule:
  """Linear warmup ``init_value → lr`` over ``warmup_steps``, then constant (for schedule-free)."""
  del total_steps
  where = "schedule 'warmup_constant'"
  return optax.warmup_constant_schedule(init_value=_check_nonneg(where, "init_value", init_value),
                                        peak_value=learning_rate,
                                        warmup_steps=_check_int(where, "warmup_steps", warmup_steps, low=0))


@register_schedule("sgdr")
def _sgdr(learning_rate: float, total_steps: int | None, *, cycle_steps: int, cycle_mult: float = 1.0,
          decay_factor: float = 1.0, end_value: float = 0.0) -> optax.Schedule:
  """Cosine annealing with warm restarts (SGDR).

  Cycle ``i`` starts at ``sᵢ`` and lasts ``Tᵢ = ⌊cycle_steps·cycle_multⁱ⌋``;
  inside it ``lr(t) = e + (lr·decay_factorⁱ - e)·½(1 + cos(π(t - sᵢ)/Tᵢ))``.
  """
  where = "schedule 'sgdr'"
  t0 = _check_int(where, "cycle_steps", cycle_steps, low=1)
  mult = _check_real(where, "cycle_mult", cycle_mult, low=1.0)
  gamma = _check_nonneg(where, "decay_factor", decay_factor)
  end = _check_nonneg(where, "end_value", end_value)
  # Cycle starts up to the end of the run (or int32's range); the last cycle is held at its end value.
  limit = total_steps if total_steps is not None else int(np.iinfo(np.int32).max)
  starts, lengths = [0], [t0]
  while mult > 1.0 and starts[-1] + lengths[-1] < limit:
    if len(starts) >= 100_000:
      raise ValueError(f"{where}: cycle_mult={cycle_mult!r} makes over 100000 cycles; raise it or give total_steps")
    starts.append(starts[-1] + lengths[-1])
    lengths.append(max(1, int(t0 * mult ** (len(starts) - 1))))
  starts_arr, lengths_arr = np.asarray(starts, np.int32), np.asarray(lengths, np.float32)

  def fn(count: Any) -> jax.Array:
    count = jnp.asarray(count)
    if mult == 1.0:
      cycle = count // t0
      t_cur, period = count - cycle * t0, float(t0)
    else:
      cycle = jnp.searchsorted(starts_arr, count, side="right") - 1
      t_cur, period = count - jnp.asarray(starts_arr)[cycle], jnp.asarray(lengths_arr)[cycle]
    peak = learning_rate * jnp.power(gamma, cycle.astype(jnp.float32))
    frac = jnp.minimum(t_cur.astype(jnp.float32) / period, 1.0)
    return end + (peak - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))

  return fn


@register_schedule("one_cycle")
def _one_cycle(learning_rate: float, total_steps: int | None, *, decay_steps: int | None = None,
               pct_start: float = 0.3, div_factor: float = 25.0, final_div_factor: float = 1e4) -> optax.Schedule:
  """One-cycle (cosine): ``lr/div_factor → lr`` at ``⌊pct_start·T⌋``, then down to the end.

  The end value, at ``T``, is ``lr/(div_factor·final_div_factor)``. Both phases are cosine interpolations; ``T = decay_steps`` (default ``total_steps``).
  """
  where = "schedule 'one_cycle'"
  steps = _decay_steps(where, decay_steps, total_steps)
  pct = _check_real(where, "pct_start", pct_start, low=0.0, low_open=True, high=1.0, high_open=True)
  if not 0 < int(pct * steps) < steps:
    raise ValueError(f"{where}: pct_start·decay_steps must fall strictly inside (0, {steps}), got "
                     f"pct_start={pct_start!r}")
  return optax.cosine_onecycle_schedule(
      steps, learning_rate, pct_start=pct, div_factor=_check_real(where, "div_factor", div_factor, low=1.0),
      final_div_factor=_check_real(where, "final_div_factor", final_div_factor, low=1.0))


@register_schedule("linear")
def _linear(learning_rate: float, total_steps: int | None, *, decay_steps: int | None = None,
            end_value: float = 0.0) -> optax.Schedule:
  """Linear decay: ``lr(t) = lr + (end_value - lr)·min(t, T)/T``, ``T = decay_steps`` (default ``total_steps``)."""
  where = "schedule 'linear'"
  steps = _decay_steps(where, decay_steps, total_steps)
  return optax.linear_schedule(learning_rate, _check_nonneg(where, "end_value", end_value), steps)
