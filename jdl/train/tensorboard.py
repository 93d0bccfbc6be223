"""TensorBoard event files for every run, written without TensorFlow (tensorboardX).

``jdl train`` writes ``RUN_DIR/tensorboard/events.out.tfevents.*`` unless
``config.tensorboard`` is false:

- every epoch, each number of the epoch's logs (what ``metrics.jsonl``
  holds) as a scalar at step = the epoch: ``train_loss`` as ``loss/train``,
  ``eval_accuracy`` as ``accuracy/eval``, ``diag_grad_norm/Dense_0`` as
  ``diagnostics/grad_norm/Dense_0``, the rest (``epoch_seconds``, …) under
  ``time/``;
- at the end, the test metrics (``accuracy/test``, …), the run's
  hyperparameters with its final metrics for the HParams plugin, and the
  curves figure (``curves.png``) as an image.

A resumed run discards the events of the epochs it redoes (``purge_step``),
so the curves never show an epoch twice. Look at them with
``tensorboard --logdir runs`` (``pip install tensorboard``, or ``make tensorboard``).
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

DIRECTORY = "tensorboard"
_PREFIXES = (("train_", "train"), ("eval_", "eval"), ("test_", "test"))


def tag(key: str) -> str | None:
  """The TensorBoard tag of a log key (None for keys that are not metrics: ``epoch``, ``step``)."""
  if key in ("epoch", "step"):
    return None
  if key.startswith("diag_"):
    return "diagnostics/" + key[len("diag_"):]
  for prefix, split in _PREFIXES:
    if key.startswith(prefix):
      return f"{key[len(prefix):]}/{split}"
  return f"time/{key}" if "seconds" in key or "per_second" in key else f"other/{key}"


def _number(value: Any) -> float | None:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
    return None
  value = float(value)
  return value if np.isfinite(value) else None


def _hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """The config flattened to ``a.b.c`` keys with the scalar values the HParams plugin takes."""
  out: dict[str, Any] = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(_hparams(value, name + "."))
    elif isinstance(value, (bool, int, float, str)) and not isinstance(value, np.generic):
      out[name] = value
    elif isinstance(value, (list, tuple)) and len(value) <= 16:
      out[name] = str(list(value))
  return out


class Writer:
  """The run's event file: ``epoch(logs)`` every epoch, ``finish(summary, config)`` at the end."""

  def __init__(self, workdir: str | pathlib.Path, *, initial_epoch: int = 0):
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

    self.directory = pathlib.Path(workdir) / DIRECTORY
    # purge_step: events at or after the first epoch this invocation runs are dropped (a resumed run redoes them).
    # The file name tensorboardX gives is only as fine as the second: two invocations within one second would write
    # the same file, the second erasing the first. The nanosecond suffix keeps each invocation's file, in order.
    self._writer = SummaryWriter(str(self.directory), purge_step=initial_epoch + 1 if initial_epoch else None,
                                 flush_secs=30, filename_suffix=f".{time.time_ns()}")

  def epoch(self, logs: Mapping[str, Any]) -> None:
    step = int(logs.get("epoch", 0))
    for key, value in logs.items():
      name, number = tag(key), _number(value)
      if name is not None and number is not None:
        self._writer.add_scalar(name, number, step)
    self._writer.flush()

  def finish(self, summary: Mapping[str, Any], config: Mapping[str, Any], curves: pathlib.Path | None = None) -> None:
    from tensorboardX.summary import hparams  # pylint: disable=g-import-not-at-top

    step = int(summary.get("epochs_completed", 0))
    finals = {}
    for key, value in summary.items():
      number = _number(value)
      if key.startswith("test_") and not key.endswith("seconds") and number is not None:
        self._writer.add_scalar(tag(key), number, step)
        finals[f"hparam/{key}"] = number
    history = summary.get("history") or []
    for key, value in (history[-1] if history else {}).items():
      number = _number(value)
      if key.startswith(("train_", "eval_")) and number is not None:
        finals[f"hparam/final_{key}"] = number
    if finals:
      writer = self._writer._get_file_writer()  # pylint: disable=protected-access
      for event in hparams(_hparams(config), finals):
        writer.add_summary(event)
      for key, number in finals.items():
        self._writer.add_scalar(key, number, step)
    if curves is not None and curves.is_file():
      from PIL import Image  # pylint: disable=g-import-not-at-top

      with Image.open(curves) as image:
        self._writer.add_image("curves", np.asarray(image.convert("RGB")), step, dataformats="HWC")
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


def read_scalars(directory: str | pathlib.Path) -> dict[str, list[tuple[int, float]]]:
  """``{tag: [(step, value), ...]}`` of the event files in ``directory`` (a run's ``tensorboard/``), read with
  TensorBoard's own event reader (``pip install tensorboard``)."""
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # pylint: disable=g-import-not-at-top

  accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
  accumulator.Reload()
  return {name: [(e.step, e.value) for e in accumulator.Scalars(name)] for name in accumulator.Tags()["scalars"]}
