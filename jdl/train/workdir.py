"""The run directory: what is in it, whether a command may use it, and its lock.

A workdir holds one run. ``jdl train`` writes ``config.json`` (the config as
run), ``metrics.jsonl`` (one line per epoch), ``checkpoints/``, and at the end
``summary.json``; ``run.lock`` marks it as in use. This module decides, before
any data is loaded or anything compiled, what a command may do with a workdir:

* a missing or empty directory starts a new run (``--resume`` too: there is
  nothing to continue yet, which is what a requeued job finds when it was killed
  before it created the directory);
* a run that never completed an epoch (killed before its first checkpoint, or
  failed before training) is *unstarted*: a plain rerun or ``--resume`` starts it
  again from step 0 with a message;
* ``--resume`` continues the run on disk: its own ``config.json`` is the config,
  and changes are accepted only in fields that do not change what is computed
  (``SAFE_TO_CHANGE``: more epochs, progress, plots, how many checkpoints are
  kept); any other difference is refused, naming the fields;
* a finished run (``summary.json`` written, its epochs done) is complete:
  ``--resume`` says so and writes nothing;
* anything else (another experiment's run, files jdl did not write) is refused
  unless ``--overwrite`` asks to delete it.

Nothing here deletes or writes until ``RunPlan.start``, which creates the
directory, takes the lock (a stale lock of a killed process is taken over with
a message) and, for ``--overwrite``, deletes the old run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import socket
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import ml_collections

CONFIG = "config.json"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
LOCK = "run.lock"
CHECKPOINTS = "checkpoints"
INTERRUPTED = "interrupted"  # the checkpoint of an epoch cut short by SIGTERM / Ctrl-C
EXPERIMENT = "experiment.py"  # a copy of the experiment file the run was started from
DATA = "data.json"  # the fingerprint of the data the run was started on (jdl.data.fingerprint)
# What jdl itself writes into a workdir (anything else makes it someone else's directory).
RUN_FILES = (CONFIG, SUMMARY, METRICS, LOCK, CHECKPOINTS, INTERRUPTED, EXPERIMENT, DATA, "curves.png", "tensorboard",
             # written later into a run by jdl attack, visualize, quantize and export
             "attack.json", "attack.png", "visualize.json", "ideal.png", "saliency.png", "filters.png",
             "confusion.png", "errors.png", "diagnostics.png", "quantized", "quantize.json", "export")


def _is_run_file(name: str) -> bool:
  """Whether jdl wrote ``name`` (its files, their ``.tmp`` copies, a lock being taken)."""
  return name in RUN_FILES or name.removesuffix(".tmp") in RUN_FILES or name.startswith(f".{LOCK}.")

# Config fields a resumed run may change: they decide how long it trains and how
# it is shown and kept, never what a step computes.
SAFE_TO_CHANGE = ("epochs", "progress", "chunks_per_epoch", "plot", "checkpoint.keep", "checkpoint.every_seconds",
                  "compilation_cache", "tensorboard", "diagnostics.enabled", "diagnostics.every",
                  "diagnostics.examples")

NEW, RESUME, COMPLETE = "new", "resume", "complete"


class WorkdirBusy(OSError):
  """Another live process holds the workdir's lock (an ``OSError``, like the other workdir errors)."""


def note(message: str) -> None:
  """A one-line message to the user (stderr)."""
  print(f"jdl: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- #
# Files.
# --------------------------------------------------------------------------- #


def write_json(path: pathlib.Path, payload: Any, default: Any = None) -> None:
  """Writes JSON atomically (a temporary file, flushed to disk, then renamed).

  A kill at any moment leaves either the old file or the new one, never half of one.
  """
  tmp = path.with_name(path.name + ".tmp")
  with open(tmp, "w") as f:
    f.write(json.dumps(payload, indent=2, sort_keys=True, default=default) + "\n")
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_json(path: pathlib.Path, what: str) -> dict[str, Any] | None:
  """The JSON object in ``path``, None if absent; a clear error naming the file if unreadable."""
  if not path.exists():
    return None
  try:
    value = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"workdir: {path} ({what}) is not readable JSON ({e}); the run directory is damaged: "
                     "restore the file or start again with --overwrite") from None
  if not isinstance(value, dict):
    raise ValueError(f"workdir: {path} ({what}) should hold a JSON object, got {type(value).__name__}")
  return value


def read_metrics(path: pathlib.Path, up_to_epoch: int | None = None) -> list[dict[str, Any]]:
  """The epoch lines of ``metrics.jsonl``, at most one per epoch, up to ``up_to_epoch``.

  A line cut short by a kill, and lines of epochs a resumed run repeats, are dropped.
  """
  if not path.exists():
    return []
  by_epoch: dict[int, dict[str, Any]] = {}
  for line in path.read_text().splitlines():
    try:
      logs = json.loads(line)
    except json.JSONDecodeError:
      continue  # the last line of a killed run
    if isinstance(logs, dict) and isinstance(logs.get("epoch"), int):
      if up_to_epoch is None or logs["epoch"] <= up_to_epoch:
        by_epoch[logs["epoch"]] = logs
  return [by_epoch[e] for e in sorted(by_epoch)]


def rewrite_metrics(path: pathlib.Path, up_to_epoch: int) -> None:
  """Keeps the lines of epochs ``<= up_to_epoch`` (one each), atomically."""
  if not path.exists():
    return
  kept = read_metrics(path, up_to_epoch)
  tmp = path.with_name(path.name + ".tmp")
  with open(tmp, "w") as f:
    f.write("".join(json.dumps(logs) + "\n" for logs in kept))
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def checkpoint_epochs(path: pathlib.Path, what: str = CHECKPOINTS) -> list[int]:
  """Epochs (steps, for ``INTERRUPTED``) with a finished checkpoint directory.

  Orbax renames a checkpoint's directory to its number only once it is complete.
  """
  directory = pathlib.Path(path) / what
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


# --------------------------------------------------------------------------- #
# Configs.
# --------------------------------------------------------------------------- #


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  """``{"a.b": value}`` of a nested dict; tuples as lists, so a config compares equal to its JSON."""
  if isinstance(tree, (Mapping, ml_collections.ConfigDict)):
    out: dict[str, Any] = {}
    for key in tree.keys():
      value = tree[key]
      name = f"{prefix}{key}"
      if isinstance(value, (Mapping, ml_collections.ConfigDict)) and len(value):
        out.update(_flat(value, name + "."))
      else:
        out[name] = _flat(value) if isinstance(value, (Mapping, ml_collections.ConfigDict)) else _plain(value)
    return out
  return {}


def _plain(value: Any) -> Any:
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


def differences(stored: Mapping[str, Any], config: Mapping[str, Any] | ml_collections.ConfigDict) -> list[str]:
  """The flattened keys whose values differ between two configs (either side may lack a key)."""
  a, b = _flat(stored), _flat(config)
  return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def _tuples(value: Any) -> Any:
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return value


def config_from_disk(path: str | os.PathLike[str], template: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config of the run in ``path``: its ``config.json`` read into a copy of ``template``.

  ``template`` (the experiment's own config) gives the fields their types; the
  values are the run's. Raises if there is no ``config.json`` or it belongs to
  another experiment.
  """
  path = pathlib.Path(path)
  stored = read_json(path / CONFIG, "the run's config")
  if stored is None:
    raise FileNotFoundError(f"workdir: {path} holds no {CONFIG}; there is no run to resume there")
  _check_same_experiment(path, stored, template)
  from jdl.config import OPEN_KEYS  # pylint: disable=g-import-not-at-top

  config = ml_collections.ConfigDict(template.to_dict())
  stored = _tuples(stored)
  for key in OPEN_KEYS:  # the run's own options, not the template's merged with them
    group, _, leaf = key.rpartition(".")
    source = stored.get(group, {}) if group else stored
    target = config.get(group) if group else config
    if isinstance(source, Mapping) and isinstance(source.get(leaf), Mapping) and target is not None and leaf in target:
      with target.unlocked():
        target[leaf] = ml_collections.ConfigDict(dict(source[leaf]))
  try:
    config.update(stored)
  except (TypeError, ValueError) as e:
    raise ValueError(f"workdir: {path / CONFIG} does not fit the experiment's config ({e})") from None
  return config


def _check_same_experiment(path: pathlib.Path, stored: Mapping[str, Any],
                           config: Mapping[str, Any] | ml_collections.ConfigDict) -> None:
  ours, theirs = config.get("name", None), stored.get("name")
  if theirs and ours and theirs != ours:
    raise ValueError(f"workdir: {path} holds a run of the experiment {theirs!r}, not {ours!r}; "
                     f"resume it with `jdl train {theirs} --workdir {path} --resume`, or choose another workdir")


# --------------------------------------------------------------------------- #
# Deciding what to do.
# --------------------------------------------------------------------------- #


@dataclasses.dataclass
class RunPlan:
  """What a command will do with a workdir, decided before anything is written.

  Attributes:
    path: the workdir.
    mode: ``"new"`` (train from step 0), ``"resume"`` (continue from the
      latest checkpoint) or ``"complete"`` (the run is finished; nothing to do).
    remove: delete the workdir's contents first (``--overwrite``).
    summary: the finished run's summary (``complete`` only).
    reason: why, in words (printed for anything but a plain new run).
  """

  path: pathlib.Path
  mode: str
  remove: bool = False
  summary: dict[str, Any] | None = None
  reason: str = ""

  @contextlib.contextmanager
  def start(self, primary: bool = True) -> Iterator[pathlib.Path]:
    """Creates the workdir (deleting the old run first for ``--overwrite``) and holds its lock."""
    if not primary:
      yield self.path
      return
    with RunLock(self.path):
      if self.remove:
        for child in self.path.iterdir():
          if child.name != LOCK:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
      if self.mode == NEW and not self.remove:
        # An unstarted run's leftovers: a new run starts from nothing.
        for name in (METRICS, SUMMARY, CONFIG):
          (self.path / name).unlink(missing_ok=True)
        for name in (CHECKPOINTS, INTERRUPTED):
          if (self.path / name).is_dir():
            shutil.rmtree(self.path / name)
      yield self.path


def plan(workdir: str | os.PathLike[str], config: ml_collections.ConfigDict, *, resume: bool,
         overwrite: bool) -> RunPlan:
  """Decides what ``jdl train`` does with ``workdir`` (reads only; see the module docstring).

  Raises:
    ValueError: resume and overwrite together; a resumed config that differs
      from the run's in fields that change the result (named); another
      experiment's run; fewer epochs than the run has done.
    FileExistsError: the workdir holds a run (or other files) and neither
      ``resume`` nor ``overwrite`` was given.
    NotADirectoryError: the workdir is a file.
  """
  if resume and overwrite:
    raise ValueError("resume and overwrite: choose one; resume continues the run in workdir, "
                     "overwrite deletes it")
  path = pathlib.Path(workdir)
  if path.exists() and not path.is_dir():
    raise NotADirectoryError(f"workdir: {path} exists and is not a directory")
  contents = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
  if overwrite:
    return RunPlan(path, NEW, remove=bool(contents), reason=f"deleting the run in {path} (--overwrite)")
  if not contents or contents == [LOCK]:
    reason = f"{path} holds no run yet; starting a new run" if resume else ""
    return RunPlan(path, NEW, reason=reason)
  foreign = [name for name in contents if not _is_run_file(name)]
  if foreign:
    raise FileExistsError(f"workdir: {path} already holds files jdl did not write ({', '.join(foreign)}); "
                          "choose another workdir, or pass --overwrite to delete them")
  stored = read_json(path / CONFIG, "the run's config")
  if stored is None:
    if checkpoint_epochs(path) or SUMMARY in contents:
      raise ValueError(f"workdir: {path} holds a run without its {CONFIG}; the run directory is damaged: "
                       "restore the file or start again with --overwrite")
    return RunPlan(path, NEW, reason=f"{path} holds no run yet; starting a new run" if resume else "")
  _check_same_experiment(path, stored, config)
  epochs_done = checkpoint_epochs(path)
  interrupted = bool(checkpoint_epochs(path, INTERRUPTED))
  summary = read_json(path / SUMMARY, "the run's summary")
  started = bool(epochs_done) or interrupted or summary is not None or bool(read_metrics(path / METRICS))
  if not started:
    return RunPlan(path, NEW, reason=f"{path} holds a run that never finished an epoch; starting it again "
                                     "from step 0")
  if not resume:
    raise FileExistsError(f"workdir: {path} already holds a run; pass --resume to continue it "
                          "or --overwrite to delete it and start again")
  changed = differences(stored, config)
  # A field the run's config.json predates (a newer jdl) counts as unchanged at its default.
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top

  on_disk, defaults, now = _flat(stored), _flat(config_lib.base_config()), _flat(config)
  unsafe = [k for k in changed if k not in SAFE_TO_CHANGE
            and not (k not in on_disk and k in defaults and now.get(k) == defaults[k])]
  if unsafe:
    shown = ", ".join(f"{k} ({_flat(stored).get(k, '<absent>')!r} on disk, {_flat(config).get(k, '<absent>')!r} "
                      "now)" for k in unsafe[:8])
    raise ValueError(f"resume: the config differs from the run in {path} in field(s) that change what it "
                     f"computes: {shown}; resume with the run's own config (only "
                     f"{', '.join(SAFE_TO_CHANGE)} may change) or start a new run in another workdir")
  done = max([0, *epochs_done, int(summary.get("epochs_completed", 0)) if summary else 0])
  if int(config.epochs) < done:
    raise ValueError(f"epochs: the run in {path} has trained {done} epochs; epochs={config.epochs} would end "
                     f"before that; pass --config.epochs={done} or more")
  if summary is not None and (summary.get("stopped_early") or int(config.epochs) <= done):
    how = "stopped early" if summary.get("stopped_early") else "all its epochs done"
    return RunPlan(path, COMPLETE, summary=summary,
                   reason=f"the run in {path} is complete ({done} epochs, {how}); nothing to do. "
                          f"To train longer: --resume --config.epochs=N with N > {done}")
  if interrupted:
    return RunPlan(path, RESUME, reason=f"resuming the run in {path} from its interrupted epoch")
  if not epochs_done:
    if summary is not None:
      raise ValueError(f"resume: the run in {path} finished without keeping checkpoints "
                       "(checkpoint.enabled=False), so it cannot be continued; start a new run in another "
                       "workdir, or pass --overwrite to replace it")
    return RunPlan(path, NEW, reason=f"{path} holds no checkpoint yet; starting the run again from step 0")
  return RunPlan(path, RESUME, reason=f"resuming the run in {path} from epoch {epochs_done[-1]}")


# --------------------------------------------------------------------------- #
# The lock.
# --------------------------------------------------------------------------- #


def _where_writable(path: pathlib.Path) -> str:
  """Names the nearest existing directory above ``path`` and whether this process may write in it."""
  parent = pathlib.Path(os.path.abspath(path))
  while not parent.exists() and parent != parent.parent:
    parent = parent.parent
  if parent.is_dir() and not os.access(parent, os.W_OK):
    return f" ({parent} is not writable by this user)"
  return f" ({parent} does not accept new directories; choose a workdir on a writable disk)"


class RunLock:
  """One writer per workdir: an exclusive ``flock`` on ``run.lock``, which holds the owner's host and pid.

  The operating system releases the lock when its process ends, however it
  ends, so a lock left by a killed process is simply taken (with a message
  naming it) and two processes can never both hold it. A lock recorded by
  another host (a workdir on a shared disk whose locks may not reach this
  host) is refused unless its process could be checked.
  """

  def __init__(self, workdir: str | os.PathLike[str]):
    self.workdir = pathlib.Path(workdir)
    self.path = self.workdir / LOCK
    self._fd: int | None = None

  def acquire(self) -> None:
    import fcntl  # pylint: disable=g-import-not-at-top  # POSIX

    try:
      self.workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      raise OSError(f"workdir: cannot create {self.workdir}: {e.strerror or e}{_where_writable(self.workdir)}") from None
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    if self._fd is not None:
      raise WorkdirBusy(f"workdir: {self.workdir} is already in use by this process")
    while True:
      try:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      except OSError as e:
        raise OSError(f"workdir: cannot write in {self.workdir}: {e.strerror or e}{_where_writable(self.workdir)}"
                      ) from None
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError:
        owner = self._owner(fd)
        os.close(fd)
        who = f"pid {owner.get('pid')} on {owner.get('host')}" if owner else "another process"
        raise WorkdirBusy(f"workdir: {self.workdir} is in use by another jdl process ({who}); wait for it to "
                          "finish or stop it, or choose another workdir") from None
      try:
        same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
      except FileNotFoundError:
        same = False
      if not same:  # released and removed by its owner between our open and our lock: try again
        os.close(fd)
        continue
      break
    previous = self._owner(fd)
    if previous and previous != me:
      if previous.get("host") != me["host"]:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        raise WorkdirBusy(f"workdir: {self.workdir} was locked by pid {previous.get('pid')} on "
                          f"{previous.get('host')}, which this host cannot check; if that run is over, remove "
                          f"{self.path}")
      note(f"taking over the lock of {self.workdir}, left by a process that no longer runs "
           f"(pid {previous.get('pid')})")
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    os.fsync(fd)
    self._fd = fd

  @staticmethod
  def _owner(fd: int) -> dict[str, Any] | None:
    try:
      owner = json.loads(os.pread(fd, 4096, 0) or b"null")
      return owner if isinstance(owner, dict) else None
    except (OSError, ValueError):
      return None  # empty or cut short: no owner to name

  def release(self) -> None:
    if self._fd is not None:
      # Removed while still held: a process waiting on this file sees it gone and opens a new one.
      self.path.unlink(missing_ok=True)
      os.close(self._fd)  # releases the flock
      self._fd = None

  def __enter__(self) -> RunLock:
    self.acquire()
    return self

  def __exit__(self, *exc: Any) -> None:
    self.release()
