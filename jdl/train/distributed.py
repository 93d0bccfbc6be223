"""Multi-process runs on JAX's own runtime (``jax.distributed``).

Every process runs the same ``jdl train`` command. ``initialize`` connects them
before anything touches a device; afterwards ``jax.devices()`` lists every
process's devices, the strategies' meshes span them all, and collectives in
the compiled programs cross processes (NCCL on GPUs, gloo over TCP on CPUs).

Where the coordinates come from, first found wins:

1. the run config: ``config.distributed.coordinator`` (``host:port`` of
   process 0), ``num_processes``, ``process_id``;
2. the environment: ``JDL_COORDINATOR``, ``JDL_NUM_PROCESSES``,
   ``JDL_PROCESS_ID`` (and optionally ``JDL_LOCAL_DEVICE_IDS``, e.g. ``0,1``);
3. SLURM: a job step launched with ``srun`` and more than one task
   (``SLURM_NTASKS > 1``): JAX reads the coordinator (the step's first node,
   a port derived from the job id), the process count and the process id
   from SLURM's variables itself, and on GPUs gives each process one device.

Nothing set: a single-process run, nothing is initialised.

A coordinator on a loopback address (``127.0.0.1``, ``localhost``) also binds
to it, so a local multi-process run listens on no outside interface (JAX's
default binds every interface).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import jax

ENV_COORDINATOR = "JDL_COORDINATOR"
ENV_NUM_PROCESSES = "JDL_NUM_PROCESSES"
ENV_PROCESS_ID = "JDL_PROCESS_ID"
ENV_LOCAL_DEVICE_IDS = "JDL_LOCAL_DEVICE_IDS"
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclasses.dataclass(frozen=True)
class Coordinates:
  """How this process joins a run.

  Attributes:
    source: ``'config'``, ``'env'`` or ``'slurm'``.
    coordinator: ``host:port`` of process 0's coordinator service (None: JAX
      detects it, as under SLURM).
    num_processes: processes in the run (None: detected).
    process_id: this process's index, ``0 … num_processes-1`` (None: detected).
    local_device_ids: the local devices this process uses (None: all).
  """

  source: str
  coordinator: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  local_device_ids: tuple[int, ...] | None = None


def _int(value: Any, name: str, low: int) -> int:
  try:
    number = int(str(value).strip())
  except ValueError:
    raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}") from None
  if number < low:
    raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
  return number


def _explicit(source: str, coordinator: str, num_processes: Any, process_id: Any, local_ids: Any,
              names: tuple[str, str, str, str]) -> Coordinates:
  if ":" not in coordinator or not coordinator.rsplit(":", 1)[1].isdigit():
    raise ValueError(f"{names[0]}: expected host:port of process 0's coordinator, got {coordinator!r}")
  if num_processes in (None, "", 0, "0") or process_id in (None, "", -1, "-1"):
    raise ValueError(f"{names[1]} and {names[2]}: both are needed with {names[0]}={coordinator!r}; "
                     f"got {names[1]}={num_processes!r}, {names[2]}={process_id!r}")
  num = _int(num_processes, names[1], 1)
  pid = _int(process_id, names[2], 0)
  if pid >= num:
    raise ValueError(f"{names[2]}: expected 0 … {num - 1} (the run has {num} processes), got {pid}")
  ids = None
  if local_ids not in (None, "", ()):
    parts = local_ids.split(",") if isinstance(local_ids, str) else list(local_ids)
    ids = tuple(_int(p, names[3], 0) for p in parts)
  return Coordinates(source, coordinator, num, pid, ids)


def coordinates(config: Any = None, environ: Mapping[str, str] | None = None) -> Coordinates | None:
  """Where this process's run coordinates come from, or None for a single-process run."""
  environ = os.environ if environ is None else environ
  group = config.get("distributed") if config is not None and hasattr(config, "get") else None
  if group and group.get("coordinator"):
    return _explicit("config", str(group.get("coordinator")), group.get("num_processes"), group.get("process_id"),
                     group.get("local_device_ids"),
                     ("distributed.coordinator", "distributed.num_processes", "distributed.process_id",
                      "distributed.local_device_ids"))
  if environ.get(ENV_COORDINATOR):
    return _explicit("env", environ[ENV_COORDINATOR], environ.get(ENV_NUM_PROCESSES), environ.get(ENV_PROCESS_ID),
                     environ.get(ENV_LOCAL_DEVICE_IDS),
                     (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID, ENV_LOCAL_DEVICE_IDS))
  # JAX's own SLURM detection needs these (SLURM_STEP_* exist only inside an srun job step).
  slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
  if all(environ.get(name) not in (None, "") for name in slurm) and \
      _int(environ["SLURM_NTASKS"], "SLURM_NTASKS", 1) > 1:
    return Coordinates("slurm")
  return None


def initialize(config: Any = None, *, timeout_seconds: int | None = None) -> Coordinates | None:
  """Joins the multi-process run this process belongs to, if any.

  Call before anything touches a device (``jdl train`` does so first thing).
  Idempotent: a second call, or a call after ``jax.distributed.initialize``,
  changes nothing.

  Args:
    config: a run config with a ``distributed`` group (optional).
    timeout_seconds: how long to wait for the other processes (default:
      ``config.distributed.initialization_timeout``, else 300).

  Returns:
    The coordinates used, or None for a single-process run.
  """
  coords = coordinates(config)
  if coords is None:
    return None
  if jax.distributed.is_initialized():
    return coords
  if timeout_seconds is None:
    group = config.get("distributed") if config is not None and hasattr(config, "get") else None
    timeout_seconds = int(group.get("initialization_timeout", 300)) if group else 300
  kwargs: dict[str, Any] = {"initialization_timeout": timeout_seconds}
  if coords.source != "slurm":
    kwargs.update(coordinator_address=coords.coordinator, num_processes=coords.num_processes,
                  process_id=coords.process_id, local_device_ids=coords.local_device_ids)
    host = coords.coordinator.rsplit(":", 1)[0]
    if host in _LOOPBACK_HOSTS:
      kwargs["coordinator_bind_address"] = coords.coordinator
  try:
    jax.distributed.initialize(**kwargs)
  except RuntimeError as e:
    if "before any JAX" in str(e) or "already initialized" in str(e).lower():
      raise RuntimeError(f"distributed: {coords.source} asks for a multi-process run, but this process already "
                         "used a JAX device; initialise first (jdl train does), e.g. call "
                         "jdl.train.distributed.initialize() before any jax computation") from e
    raise
  return coords


def is_primary() -> bool:
  """Whether this is process 0, the one that writes logs, summaries and plots."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier ``name`` (no-op for one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices(name)
