"""The config-level builder: ``from_config``, parameter groups, the logged learning rate."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jdl.optim._checks import _check_int, _check_nonneg, _check_real
from jdl.optim.paths import _check_patterns, freeze, path_mask
from jdl.optim.registry import OPTIMIZERS, OptimizerSpec, create, get_spec, list_optimizers
from jdl.optim.schedules import SCHEDULES, list_schedules, schedule


CONFIG_KEYS = ("name", "learning_rate", "hparams", "schedule", "clip_global_norm", "accumulate_steps", "freeze",
               "groups")


GROUP_KEYS = ("params", "learning_rate_scale", "start_epoch")


def param_groups(inner: optax.GradientTransformation, groups: Mapping[str, Any], *, updates_per_epoch: int | None = None,
                 where: str = "groups") -> optax.GradientTransformation:
  """``inner`` with its learning rate scaled per parameter group, and groups that start late.

  Fine-tuning's classic recipe: the new head at the full rate, the pretrained
  layers at a tenth of it, the lowest ones not at all, or only from a later
  epoch on (gradual unfreezing). Each group runs its own copy of ``inner``
  (its own moments) whose updates are multiplied by ``learning_rate_scale``
  (for optax's optimizers, exactly a learning rate that many times smaller:
  the rate is their last factor), and by 0 before ``start_epoch``. Parameters
  in no group use ``inner`` as it is.

  Args:
    inner: the optimizer.
    groups: ``{name: {"params": globs, "learning_rate_scale": float (1.0),
      "start_epoch": int (0)}}``; a parameter belongs to the first group whose
      globs match its ``'/'``-joined path.
    updates_per_epoch: optimizer updates per epoch (needed for ``start_epoch``).
    where: the name used in error messages.

  Returns:
    the partitioned transformation.
  """
  checked: dict[str, tuple[tuple[str, ...], float, int]] = {}
  for name, group in groups.items():
    group = _as_dict(where, f"groups.{name}", group)
    unknown = sorted(set(group) - set(GROUP_KEYS))
    if unknown:
      raise ValueError(f"{where}: group {name!r} has unknown keys {unknown}; known keys: {', '.join(GROUP_KEYS)}")
    if name in ("default", "frozen", "trainable"):
      raise ValueError(f"{where}: {name!r} is reserved; name the group otherwise")
    patterns = _check_patterns(where, f"groups.{name}.params", group.get("params", ()))
    if not patterns:
      raise ValueError(f"{where}: group {name!r} needs params (path globs)")
    scale = _check_real(where, f"groups.{name}.learning_rate_scale", group.get("learning_rate_scale", 1.0), low=0.0)
    start = _check_int(where, f"groups.{name}.start_epoch", group.get("start_epoch", 0), low=0)
    if start and updates_per_epoch is None:
      raise ValueError(f"{where}: group {name!r} starts at epoch {start}; pass updates_per_epoch")
    checked[name] = (patterns, scale, start)
  if not checked:
    return inner
  masks = {name: path_mask(patterns, where=f"{where} group {name!r}") for name, (patterns, _, _) in checked.items()}

  def labels(params: Any) -> Any:
    marks = {name: jax.tree.leaves(mask(params)) for name, mask in masks.items()}
    flat, treedef = jax.tree.flatten(params)
    return jax.tree.unflatten(treedef, [next((n for n in checked if marks[n][i]), "default") for i in range(len(flat))])

  transforms: dict[str, optax.GradientTransformation] = {"default": inner}
  for name, (_, scale, start) in checked.items():
    if start:
      first = start * updates_per_epoch
      factor = optax.scale_by_schedule(lambda count, s=scale, f=first: jnp.where(count < f, 0.0, s))
    else:
      factor = optax.scale(scale)
    transforms[name] = optax.chain(inner, factor)
  return optax.partition(transforms, labels)


def _as_dict(where: str, arg: str, value: Any) -> dict[str, Any]:
  if hasattr(value, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict
    value = value.to_dict()
  if not isinstance(value, Mapping):
    raise TypeError(f"{where}: {arg} must be a dict or ConfigDict, got {value!r} ({type(value).__name__})")
  return dict(value)


def _learning_rate(where: str, cfg: Mapping[str, Any], spec: OptimizerSpec, total_steps: int | None
                   ) -> tuple[float | optax.Schedule, int]:
  """The config's learning rate (a float, or its schedule of updates) and its accumulate_steps."""
  lr = cfg.get("learning_rate")
  lr = spec.learning_rate if lr is None else _check_nonneg(where, "learning_rate", lr)
  accumulate = cfg.get("accumulate_steps")
  accumulate = 1 if accumulate is None else _check_int(where, "accumulate_steps", accumulate, low=1)
  if total_steps is not None:
    total_steps = _check_int(where, "total_steps", total_steps, low=1)
    updates = total_steps // accumulate
    if updates < 1:
      raise ValueError(f"{where}: total_steps={total_steps} is fewer than accumulate_steps={accumulate}")
  else:
    updates = None

  sched_cfg = cfg.get("schedule") or None  # an empty group means a constant rate
  if sched_cfg is None:
    learning_rate: float | optax.Schedule = lr
  else:
    sched_cfg = {"name": sched_cfg} if isinstance(sched_cfg, str) else _as_dict(where, "schedule", sched_cfg)
    if "name" not in sched_cfg:
      raise ValueError(f"{where}: schedule needs a 'name'; known schedules: {', '.join(list_schedules())}")
    sched_kwargs = {k: v for k, v in sched_cfg.items() if k != "name"}
    for reserved in ("learning_rate", "total_steps"):
      if reserved in sched_kwargs:
        raise ValueError(f"{where}: schedule.{reserved} is set by from_config (the config's learning_rate and "
                         f"total_steps), got schedule.{reserved}={sched_kwargs[reserved]!r}")
    learning_rate = schedule(sched_cfg["name"], learning_rate=lr, total_steps=updates, **sched_kwargs)
  return learning_rate, accumulate


def learning_rate_fn(cfg: Mapping[str, Any] | Any, *, total_steps: int | None = None) -> Callable[[int], float]:
  """``fn(step) -> learning rate`` of the optimizer ``from_config(cfg, total_steps=...)`` builds.

  ``step`` counts train-step calls (as ``logs["step"]``); with
  ``accumulate_steps=k`` the rate is the schedule's at update ``step // k``.
  ``jdl train`` logs it every epoch as ``learning_rate``.
  """
  cfg = _as_dict("learning_rate_fn", "cfg", cfg)
  learning_rate, accumulate = _learning_rate("learning_rate_fn", cfg, get_spec(cfg["name"]), total_steps)
  if not callable(learning_rate):
    return lambda step: float(learning_rate)
  return lambda step: float(learning_rate(int(step) // accumulate))


def from_config(cfg: Mapping[str, Any] | Any, *, total_steps: int | None = None,
                steps_per_epoch: int | None = None) -> optax.GradientTransformation:
  """Builds the training optimizer from a config.

  ``cfg`` (a dict or ``ml_collections.ConfigDict``)::

    {"name": "rmsprop",                 # list_optimizers()
     "learning_rate": 1e-3,             # default: the optimizer's registered one
     "hparams": {"centered": True},     # the optimizer's hyperparameters
     "schedule": {"name": "warmup_cosine", "warmup_steps": 100},   # or "cosine", or None
     "clip_global_norm": 1.0,           # or None
     "accumulate_steps": 4,             # MultiSteps over 4 micro-batches; 1 = off
     "freeze": ["encoder", "*/bias"],   # path globs; frozen params never change
     "groups": {"backbone": {"params": ["layer*"], "learning_rate_scale": 0.1, "start_epoch": 2}}}

  The chain, innermost first: base optimizer (its learning rate is the
  schedule, whose peak is ``learning_rate``), per group (``param_groups``) →
  global-norm clip → freezing partition (frozen parameters get zero updates
  and no state) → ``optax.MultiSteps``.

  Steps: schedules count optimizer *updates*. ``total_steps`` is the number of
  train-step calls (``epochs × steps_per_epoch``); with ``accumulate_steps=k``
  the schedule's default length is ``total_steps // k`` updates. Explicit
  schedule step arguments (``warmup_steps``, ``decay_steps`` ...) are updates.

  Args:
    cfg: the optimizer config; unknown keys are an error.
    total_steps: train-step calls of the run, or None when unknown (then
      decaying schedules need an explicit ``decay_steps``).
    steps_per_epoch: train-step calls per epoch (for the groups' ``start_epoch``).

  Returns:
    the ``optax.GradientTransformation`` (a ``MultiSteps`` transformation when
    ``accumulate_steps > 1``: its ``update`` returns zeros until the k-th call).
  """
  where = "from_config"
  cfg = _as_dict(where, "cfg", cfg)
  unknown = sorted(set(cfg) - set(CONFIG_KEYS))
  if unknown:
    raise ValueError(f"{where}: unknown config keys {unknown}; known keys: {', '.join(CONFIG_KEYS)}")
  if "name" not in cfg:
    raise ValueError(f"{where}: cfg needs a 'name'; known optimizers: {', '.join(list_optimizers())}")
  spec = get_spec(cfg["name"])
  hparams = _as_dict(where, "hparams", cfg.get("hparams") or {})
  if "learning_rate" in hparams:
    raise ValueError(f"{where}: give learning_rate at the top level of the config, not in hparams "
                     f"(got hparams.learning_rate={hparams['learning_rate']!r})")
  learning_rate, accumulate = _learning_rate(where, cfg, spec, total_steps)

  tx = create(spec.name, learning_rate=learning_rate, **hparams)
  groups = cfg.get("groups") or {}
  if groups:
    groups = _as_dict(where, "groups", groups)
    frozen = _check_patterns(where, "freeze", cfg.get("freeze") or ())
    tx = param_groups(tx, groups, where="optimizer.groups" + (
        f" (among the parameters optimizer.freeze={frozen!r} leaves trainable)" if frozen else ""),
                      updates_per_epoch=None if steps_per_epoch is None else max(1, steps_per_epoch // accumulate))
  clip = cfg.get("clip_global_norm")
  if clip is not None:
    clip = _check_real(where, "clip_global_norm", clip, low=0.0, low_open=True)
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  patterns = _check_patterns(where, "freeze", cfg.get("freeze") or ())
  if patterns:
    tx = freeze(tx, patterns, where="optimizer.freeze")
  if accumulate > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=accumulate).gradient_transformation()
  return tx


OPTIMIZERS.seal()  # the optimizers and schedules above are built in; later ones are the user's


SCHEDULES.seal()
