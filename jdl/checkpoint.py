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

import logging
import os
import sys
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm


class _FailedReadNoise(logging.Filter):
  """Drops asyncio's "Task exception was never retrieved" reports of an Orbax read that jdl already handled.

  A checkpoint that cannot be read fails inside TensorStore's concurrent reads; Orbax raises the first
  error and leaves the others to asyncio, which prints each with its traceback when it is collected. The
  restore has reported the checkpoint and why (and fallen back), so those dozens of lines say nothing more.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    unretrieved = message.startswith(("Task exception was never retrieved", "Future exception was never retrieved"))
    return not (unretrieved and ("async_deserialize" in message or "tensorstore_spec" in message))


_NOISE_FILTER = _FailedReadNoise()


class CheckpointError(ValueError):
  """A checkpoint cannot be read (damaged files, or a state that no longer fits)."""


def _first_line(error: BaseException) -> str:
  """An exception's type and the first line of its message, at most 300 characters."""
  text = str(error).strip().splitlines()[0] if str(error).strip() else ""
  return f"{type(error).__name__}: {text[:300]}"


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
    try:
      self._manager.save(
          epoch,
          args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
          metrics=metrics,
          force=True,
      )
    except OSError as e:  # a full disk, a read-only mount (here or, asynchronously, from the previous save)
      raise OSError(e.errno, f"checkpoint: saving epoch {epoch} in {self.directory} failed: {e.strerror or e}; "
                             "the checkpoints already on disk are complete and a --resume continues from the "
                             "latest of them") from None

  def latest_epoch(self) -> int | None:
    return self._manager.latest_step()

  def best_epoch(self) -> int | None:
    return self._manager.best_step() if self.monitor is not None else None

  def all_epochs(self) -> list[int]:
    return list(self._manager.all_steps())

  def restore(self, target: Any, epoch: int | None = None, *,
              set_aside_unreadable: bool = False) -> tuple[Any, dict[str, Any]]:
    """Restores ``(state, meta)`` of ``epoch`` (default: the latest readable one).

    Without ``epoch``, a checkpoint that cannot be read (a truncated or
    corrupt file, left by a disk error or a copy cut short) is skipped with a
    message naming it and why, and the one before it is restored; an error
    lists every checkpoint tried when none can be read. With
    ``set_aside_unreadable`` (a resumed run, which will save those epochs
    again) the skipped directories are renamed ``<epoch>.unreadable`` rather
    than left in the way; nothing is deleted.

    Args:
      target: a state (or its ``jax.ShapeDtypeStruct`` tree) giving the
        structure, dtypes and shardings to restore into; the saving run's
        device count does not matter. Leaves without a sharding are restored
        onto the default device.
      epoch: which checkpoint.

    Raises:
      FileNotFoundError: there is no checkpoint.
      CheckpointError: the checkpoint (every checkpoint, without ``epoch``)
        cannot be read; the message names each one's directory and the cause.
    """
    self.wait()
    candidates = [epoch] if epoch is not None else sorted(self.all_epochs(), reverse=True)
    if not candidates or candidates == [None]:
      raise FileNotFoundError(f"no checkpoint to restore in {self.directory}")
    abstract = jax.tree.map(_abstract, target)
    failures = []
    for i, candidate in enumerate(candidates):
      try:
        restored = self._manager.restore(
            candidate, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                               meta=ocp.args.JsonRestore()))
      except Exception as e:  # pylint: disable=broad-except  # Orbax and TensorStore raise many kinds
        logging.getLogger("asyncio").addFilter(_NOISE_FILTER)
        failures.append(f"{os.path.join(self.directory, str(candidate))}: {_first_line(e)}")
        if i + 1 < len(candidates):
          print(f"jdl: checkpoint {candidate} in {self.directory} cannot be read ({_first_line(e)}); "
                f"falling back to checkpoint {candidates[i + 1]}", file=sys.stderr, flush=True)
        continue
      meta = restored["meta"]
      if not isinstance(meta, dict) or "epoch" not in meta:
        failures.append(f"{os.path.join(self.directory, str(candidate))}: its meta item holds no epoch ({meta!r:.80})")
        continue
      if set_aside_unreadable and i:
        for bad in candidates[:i]:
          self._set_aside(bad)
      return restored["state"], dict(meta)
    raise CheckpointError("no readable checkpoint to restore: " + "; ".join(failures)
                          + ". If the run's code or config changed, the saved state no longer fits it; otherwise "
                          "the files are damaged: start again with --overwrite")

  def _set_aside(self, epoch: int) -> None:
    """Renames an unreadable checkpoint out of the manager's way (kept for inspection)."""
    path = os.path.join(self.directory, str(epoch))
    target, k = f"{path}.unreadable", 1
    while os.path.exists(target):
      target, k = f"{path}.unreadable.{k}", k + 1
    os.rename(path, target)
    print(f"jdl: moved the unreadable checkpoint {path} to {target}", file=sys.stderr, flush=True)
    self._manager.reload()

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    try:
      self._manager.wait_until_finished()
    except OSError as e:
      raise OSError(e.errno, f"checkpoint: writing a checkpoint in {self.directory} failed: {e.strerror or e}; "
                             "the checkpoints already on disk are complete") from None

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
