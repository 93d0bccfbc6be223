"""Run records: one JSON line per finished run, appended durably, read back tolerantly.

Every run is identified by ``run_id``, a hash of its full configuration (the
workload's spec with its budget, the optimizer, its hyperparameters, the seed
and the protocol version). A suite writes each record with ``append`` (write,
flush, ``fsync``), so a killed process loses at most the runs in flight; on
start it reads the run ids already present and skips them. A last line cut off
by a kill is ignored when reading and removed before the next append.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 3  # 2: the data order and programs of jdl train (one engine); 3: test set at the end only
RESULTS_FILE = "results.jsonl"
ERRORS_FILE = "errors.jsonl"


# Workload facts that do not change what a run trains: a new target (``jdl bench set-targets``) reuses the runs.
NOT_TRAINING = ("target", "toy", "variant_of")


def run_config(workload_spec: Mapping[str, Any], optimizer: str, hparams: Mapping[str, Any],
               seed: int) -> dict[str, Any]:
  """The full configuration of a run, the input of ``run_id``: what it trains (not the workload's target)."""
  workload = {k: v for k, v in workload_spec.items() if k not in NOT_TRAINING}
  return {"protocol": PROTOCOL_VERSION, "workload": workload, "optimizer": optimizer,
          "hparams": {k: hparams[k] for k in sorted(hparams)}, "seed": int(seed)}


def run_id(config: Mapping[str, Any]) -> str:
  """16 hex digits of the SHA-256 of ``config`` as canonical JSON (sorted keys)."""
  text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=repr)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
  """Non-finite floats become None (JSON has no NaN); numpy scalars become Python numbers."""
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if hasattr(value, "item") and not isinstance(value, (str, bytes)):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
  """The records of a JSONL file, in order; ``[]`` when it does not exist.

  A last line that does not parse (cut off by a kill) is skipped with a log
  message. A bad line elsewhere is skipped with a warning.
  """
  path = Path(path)
  if not path.exists():
    return []
  lines = path.read_bytes().split(b"\n")
  out = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except ValueError:
      last = all(not rest.strip() for rest in lines[i + 1:])
      (log.info if last else log.warning)("%s: skipping %s line %d", path, "a truncated last" if last else "bad",
                                          i + 1)
      continue
    if isinstance(record, dict) and "run_id" in record:
      out.append(record)
  return out


def _drop_partial_tail(path: Path) -> None:
  """Cuts a last line that has no newline (a write interrupted by a kill)."""
  if not path.exists() or path.stat().st_size == 0:
    return
  with open(path, "rb+") as f:
    f.seek(-1, os.SEEK_END)
    if f.read(1) == b"\n":
      return
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    log.info("%s: removing a truncated last line (%d bytes)", path, len(data) - keep)
    f.truncate(keep)


class ResultStore:
  """Appends records to ``DIR/results.jsonl`` and knows which run ids are done.

  Holds an exclusive lock on ``DIR/.lock`` while open, so two processes never
  write the same results file (a second one fails with a clear message).
  """

  def __init__(self, directory: str | os.PathLike[str], filename: str = RESULTS_FILE):
    self.directory = Path(directory)
    self.directory.mkdir(parents=True, exist_ok=True)
    self.path = self.directory / filename
    self._lock = _acquire_lock(self.directory / f".{filename}.lock")
    _drop_partial_tail(self.path)
    self.records = read_records(self.path)
    self.done = {r["run_id"] for r in self.records}
    self.appended = 0

  def append(self, record: Mapping[str, Any]) -> None:
    """Writes one record as a line, flushes and fsyncs; no-op for a run id already stored."""
    record = _jsonable(dict(record))
    if record["run_id"] in self.done:
      return
    line = json.dumps(record, sort_keys=False, separators=(",", ":"), allow_nan=False) + "\n"
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(line)
      f.flush()
      os.fsync(f.fileno())
    self.records.append(record)
    self.done.add(record["run_id"])
    self.appended += 1

  def close(self) -> None:
    """Releases the lock."""
    if self._lock is not None:
      self._lock.close()
      self._lock = None

  def __enter__(self) -> ResultStore:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()


def _acquire_lock(path: Path) -> Any:
  try:
    import fcntl  # pylint: disable=g-import-not-at-top
  except ImportError:  # not POSIX: no lock
    return None
  f = open(path, "a")  # pylint: disable=consider-using-with
  try:
    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    f.close()
    raise ValueError(f"out: {path.parent} is in use by another `jdl bench run` (lock {path.name}); "
                     "wait for it or use another --out") from None
  return f


def append_line(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
  """Appends one JSON line durably (for side files such as ``errors.jsonl``)."""
  with open(path, "a", encoding="utf-8") as f:
    f.write(json.dumps(_jsonable(dict(record)), allow_nan=False) + "\n")
    f.flush()
    os.fsync(f.fileno())


@contextlib.contextmanager
def open_store(directory: str | os.PathLike[str], filename: str = RESULTS_FILE) -> Iterator[ResultStore]:
  """``ResultStore`` as a context manager."""
  store = ResultStore(directory, filename)
  try:
    yield store
  finally:
    store.close()
