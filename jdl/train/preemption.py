"""SIGTERM and Ctrl-C: stop at the next chunk boundary with a checkpoint, instead of dying mid-step.

``SignalGuard`` is a context manager installed around a run by ``jdl train``:

* the first SIGTERM (a cluster's preemption or time limit, ``kill``) or SIGINT
  (Ctrl-C) is remembered; ``fit`` polls ``guard.requested()`` at every chunk
  boundary, saves a checkpoint of where the epoch stands and raises
  ``jdl.train.loop.Interrupted``; the command then exits with the signal's
  status (143 or 130) and a line saying how to resume;
* a second Ctrl-C raises ``KeyboardInterrupt`` at once (a second SIGTERM
  exits with status 143 at once): nothing half-written is taken for complete
  afterwards (Orbax renames a checkpoint only once it is whole; ``summary.json``
  and ``config.json`` are replaced atomically; a cut ``metrics.jsonl`` line is
  ignored).

In a multi-process run the processes must stop at the same step, so the guard
asks JAX's coordination service (``multihost_utils.reached_preemption_sync_point``),
which SLURM's and the cluster's preemption notices (SIGTERM) reach, instead of a
local flag; a Ctrl-C there stops that process at once (the others cannot be
told to stop at the same step).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

_SIGNALS = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}
EXIT_STATUS = {"SIGTERM": 128 + signal.SIGTERM, "SIGINT": 128 + signal.SIGINT}


class SignalGuard:
  """Remembers the first SIGTERM/SIGINT while active; see the module docstring.

  Outside the main thread (where Python cannot install handlers) it does
  nothing and ``requested()`` is always None.
  """

  def __init__(self) -> None:
    self.reason: str | None = None
    self._previous: dict[int, Any] = {}
    self._steps = 0
    self._multi = False

  def _handle(self, signum: int, frame: Any) -> None:
    del frame
    name = _SIGNALS.get(signum, str(signum))
    if self._multi:
      # One process's Ctrl-C cannot make the others stop at the same step (they would wait for it in
      # the checkpoint's collectives): stop at once; SIGTERM goes through JAX's preemption service.
      raise KeyboardInterrupt(f"{name} in a multi-process run: stopping at once")
    if self.reason is not None:  # the second one: go now
      if signum == signal.SIGINT:
        raise KeyboardInterrupt(f"second {name}: stopping at once")
      print(f"jdl: second {name}: exiting at once", file=sys.stderr, flush=True)
      os._exit(EXIT_STATUS.get(name, 1))  # pylint: disable=protected-access
    self.reason = name
    print(f"jdl: {name} received: saving a checkpoint at the next chunk boundary and stopping "
          f"(send it again to stop at once)", file=sys.stderr, flush=True)

  def requested(self) -> str | None:
    """The signal's name once one arrived (on every process at the same step), else None."""
    if not self._multi:
      return self.reason
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    self._steps += 1
    if self.reason is None and multihost_utils.reached_preemption_sync_point(self._steps):
      self.reason = "SIGTERM"
    return self.reason

  def __enter__(self) -> SignalGuard:
    import jax  # pylint: disable=g-import-not-at-top

    self._multi = jax.process_count() > 1
    if threading.current_thread() is threading.main_thread():
      # Across processes JAX's preemption service owns SIGTERM (it tells every process).
      for signum in ([signal.SIGINT] if self._multi else list(_SIGNALS)):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc: Any) -> None:
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous.clear()
