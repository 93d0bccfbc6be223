"""Orbax checkpoints of a run: every epoch, the last N and the best by a metric.

A thin wrapper over ``orbax.checkpoint.CheckpointManager`` (the ``args`` API).
Each checkpoint is a step directory named by the number of epochs completed and
holds two items: ``state`` (the ``TrainState`` pytree) and ``meta`` (JSON: the
epoch, the callbacks' progress, the epoch logs). Orbax writes each checkpoint
into a temporary directory and renames it when complete, so an interrupted save
is never taken for a checkpoint.

Checkpoints do not depend on the device count: arrays are saved as global
arrays, and ``restore`` lays them out as its ``target`` says, so a run saved on
8 devices restores on 1 and the other way round, under any strategy (place a
state with ``strategy.place_state`` and pass it, or its
``jax.ShapeDtypeStruct`` tree with shardings, as the target). In a
multi-process run every process calls ``save`` and ``restore``; Orbax writes
each array's shards from the processes that hold them and the metadata from
process 0.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm


def _abstract(leaf: Any) -> jax.ShapeDtypeStruct:
  """A restore target leaf: its shape, dtype and sharding (the default device's when it has none).

  Orbax refuses a target without shardings when the checkpoint was saved on
  another topology; a leaf that names none is restored whole onto the
  default device.
  """
  abstract = ocp.utils.to_shape_dtype_struct(leaf)
  if getattr(abstract, "sharding", None) is None:
    abstract = jax.ShapeDtypeStruct(abstract.shape, abstract.dtype,
                                    sharding=jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
  return abstract


class Checkpointer:
  """Saves and restores a run's state.

  Args:
    directory: where step directories go (created if missing).
    keep: how many of the most recent checkpoints to keep.
    monitor: an epoch-log metric; the best checkpoint by it is kept as well.
      None keeps only the most recent ones.
    mode: ``'max'`` or ``'min'`` for ``monitor``.
    async_save: write in a background thread (arrays are copied to host first,
      so the next epoch may reuse the device buffers at once).
  """

  def __init__(self, directory: str | os.PathLike[str], *, keep: int = 3, monitor: str | None = None,
               mode: str = "max", async_save: bool = True):
    if not isinstance(keep, int) or keep < 1:
      raise ValueError(f"keep: expected a positive integer, got {keep!r}")
    if mode not in ("min", "max"):
      raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
    self.directory = os.path.abspath(os.fspath(directory))
    self.monitor = monitor
    policies = [ocm.LatestN(n=keep)]
    best_fn = None
    if monitor is not None:
      best_fn = lambda metrics: float(metrics[monitor])  # noqa: E731
      policies.append(ocm.BestN(get_metric_fn=best_fn, reverse=(mode == "min"), n=1,
                                keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocm.AnyPreservationPolicy(policies),
        best_fn=best_fn,
        best_mode=mode,
        enable_async_checkpointing=async_save,
        create=True,
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

  def save(self, epoch: int, state: Any, meta: dict[str, Any], metrics: dict[str, float] | None = None) -> None:
    """Saves ``state`` and JSON ``meta`` as the checkpoint of ``epoch``."""
    if self.monitor is not None and (metrics is None or self.monitor not in metrics):
      raise KeyError(f"Checkpointer.save: monitored metric {self.monitor!r} missing from metrics "
                     f"{sorted(metrics or {})}")
    self._manager.save(
        epoch,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        metrics=metrics,
        force=True,
    )

  def latest_epoch(self) -> int | None:
    return self._manager.latest_step()

  def best_epoch(self) -> int | None:
    return self._manager.best_step() if self.monitor is not None else None

  def all_epochs(self) -> list[int]:
    return list(self._manager.all_steps())

  def restore(self, target: Any, epoch: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Restores ``(state, meta)`` of ``epoch`` (default: the latest).

    Args:
      target: a state (or its ``jax.ShapeDtypeStruct`` tree) giving the
        structure, dtypes and shardings to restore into; the saving run's
        device count does not matter. Leaves without a sharding are restored
        onto the default device.
      epoch: which checkpoint.
    """
    self.wait()
    if epoch is None:
      epoch = self.latest_epoch()
    if epoch is None:
      raise FileNotFoundError(f"no checkpoint to restore in {self.directory}")
    abstract = jax.tree.map(_abstract, target)
    restored = self._manager.restore(
        epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["meta"])

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
