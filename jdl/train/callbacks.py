"""Callbacks: small objects the fit loop calls at the edges of training and of each epoch.

A callback reads ``run`` (the loop's live context: ``run.state``,
``run.history``) and may set ``run.stop_training`` or replace ``run.state``.
The loop stays the only owner of the state; callbacks never mutate arrays.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jdl.registry import Registry


@dataclasses.dataclass
class Run:
  """What callbacks see of a running ``fit``."""

  state: Any
  history: list[dict[str, Any]]
  epoch: int = 0
  stop_training: bool = False
  epochs: int | None = None  # the epoch training ends after (None: not known)


class Callback:
  """Base class: override any of the hooks. ``state_dict`` and ``load_state_dict``
  let a checkpoint carry the callback's own progress (for ``--resume``).

  ``on_epoch_end`` receives the epoch's logs after they are written; to add
  figures of your own to them (to metrics.jsonl, TensorBoard, and so that early
  stopping or checkpoints can monitor them) return them from ``epoch_metrics``.
  Register a callback class with :func:`register` to name it in a config
  (``config.callbacks = ("my_callback:every=2",)``).
  """

  name: str = "callback"

  def on_train_begin(self, run: Run) -> None:
    pass

  def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, Any]) -> None:
    pass

  def on_chunk_end(self, run: Run, step: int, logs: dict[str, Any]) -> None:
    """Called at every chunk boundary, ``chunks_per_epoch`` times an epoch (the loop then splits every epoch
    into that many compiled calls), with ``logs``: ``epoch``, ``step`` (steps done so far, in all epochs),
    ``train_<metric>`` (the chunk's means) and ``learning_rate`` (of the chunk's last step). These are the
    metrics the loop reads at the boundary anyway: the hook adds no wait on the device. ``run.state`` is
    already further on (the next chunk runs while this one is read); reading its arrays waits for it."""
    del run, step, logs

  def epoch_metrics(self, run: Run, epoch: int) -> dict[str, float]:
    """Extra figures of ``epoch`` (e.g. a robust accuracy), merged into its logs before they are written."""
    del run, epoch
    return {}

  def on_train_end(self, run: Run) -> None:
    pass

  def on_interrupt(self, run: Run, partial: Any) -> None:
    """Training is being interrupted (a signal): ``partial`` is the ``PartialEpoch`` so far, or None
    at the end of an epoch (``run.epoch``)."""
    del run, partial

  def state_dict(self) -> dict[str, Any]:
    return {}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    del state


def has_chunk_hook(callback: Callback) -> bool:
  """Whether ``callback`` overrides ``on_chunk_end`` (the loop then cuts every epoch into chunks)."""
  return getattr(type(callback), "on_chunk_end", Callback.on_chunk_end) is not Callback.on_chunk_end


def _check_callback(name: str, factory: Any, meta: Any) -> None:
  del meta
  if not callable(factory):
    raise TypeError(f"register({name!r}): expected a Callback class or a function returning one, got {factory!r}")


CALLBACKS: Registry[Callable[..., Callback]] = Registry("callback", check=_check_callback)


def register(name: str, factory: Callable[..., Callback] | None = None, *, overwrite: bool = False) -> Any:
  """Registers a callback factory (a ``Callback`` subclass, or a function returning one) under ``name``.

  ``config.callbacks`` then names it, with keyword options:
  ``("print_lr", "snapshot:every=2,path='snaps'")``. Omitted, ``factory``
  makes ``register`` a decorator.
  """
  return CALLBACKS.register(name, overwrite=overwrite) if factory is None else CALLBACKS.register(
      name, factory, overwrite=overwrite)


def parse_spec(text: str) -> tuple[Callable[..., Callback], dict[str, Any]]:
  """``"name[:key=value,...]"`` → (the registered factory, its options), checked against its signature.

  Raises:
    ValueError: a malformed spec, an unknown name (the message lists the known ones), options the
      callback does not take.
  """
  import ast  # pylint: disable=g-import-not-at-top
  import inspect  # pylint: disable=g-import-not-at-top

  if not isinstance(text, str) or not text.strip():
    raise ValueError(f"callbacks: each entry must be a non-empty string such as 'my_callback:every=2', got {text!r}")
  name, _, option_text = text.strip().partition(":")
  factory = CALLBACKS.entry(name, "callbacks")
  options: dict[str, Any] = {}
  for item in filter(None, (part.strip() for part in option_text.split(","))):
    key, eq, value = item.partition("=")
    if not eq:
      raise ValueError(f"callbacks: {text!r}: option {item!r} is not key=value")
    try:
      options[key.strip()] = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
      options[key.strip()] = value.strip()
  try:
    inspect.signature(factory.obj).bind(**options)
  except TypeError as e:
    raise ValueError(f"callbacks: {text!r}: bad options for callback {name!r} ({e})") from None
  except ValueError:
    pass  # no signature to check
  return factory.obj, options


def from_config(specs: Any) -> list[Callback]:
  """The callbacks ``config.callbacks`` names, built (see :func:`parse_spec`)."""
  if isinstance(specs, str):
    specs = (specs,)
  built = []
  for text in specs:
    factory, options = parse_spec(text)
    callback = factory(**options)
    if not isinstance(callback, Callback):
      raise TypeError(f"callbacks: {text!r} made a {type(callback).__name__}, not a jdl Callback")
    built.append(callback)
  return built


def resolve_mode(monitor: str, mode: str) -> str:
  """``'auto'`` means max for accuracy-like metrics and min otherwise."""
  if mode not in ("auto", "min", "max"):
    raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
  if mode != "auto":
    return mode
  maximised = ("acc", "auc", "precision", "recall", "f1", "r2", "map")
  return "max" if any(word in monitor for word in maximised) else "min"


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
  if best is None:
    return not math.isnan(value)
  if mode == "max":
    return value > best + min_delta
  return value < best - min_delta


def monitored(logs: dict[str, Any], monitor: str, who: str) -> float:
  if monitor not in logs:
    raise KeyError(f"{who}: monitored metric {monitor!r} is not among the epoch's logs "
                   f"{sorted(logs)}; set monitor to one of them")
  return float(logs[monitor])


class EarlyStopping(Callback):
  """Stops training when ``monitor`` has not improved for ``patience`` epochs.

  With ``restore_best`` the run ends with the state of the best epoch (kept in
  device memory as a copy, since the live state's buffers are donated to the
  next epoch), like Keras' ``restore_best_weights``.

  Args:
    monitor: a key of the epoch logs, e.g. ``'eval_loss'`` or ``'eval_accuracy'``.
    patience: epochs without improvement before stopping.
    mode: ``'min'``, ``'max'`` or ``'auto'`` (from the metric's name).
    min_delta: the smallest change that counts as an improvement.
    restore_best: end with the best epoch's state.
  """

  name = "early_stopping"

  def __init__(self, monitor: str = "eval_loss", patience: int = 3, mode: str = "auto",
               min_delta: float = 0.0, restore_best: bool = True):
    if not isinstance(patience, int) or patience < 0:
      raise ValueError(f"patience: expected a non-negative integer, got {patience!r}")
    if min_delta < 0:
      raise ValueError(f"min_delta: expected a non-negative number, got {min_delta!r}")
    self.monitor = monitor
    self.patience = patience
    self.mode = resolve_mode(monitor, mode)
    self.min_delta = min_delta
    self.restore_best = restore_best
    self.best: float | None = None
    self.best_epoch: int | None = None
    self.wait = 0
    self.stopped_epoch: int | None = None
    self._best_state = None
    # Set by the runner when a resumed run's best epoch is only on disk:
    # restore_fn(epoch) -> state.
    self.restore_fn: Callable[[int], Any] | None = None

  def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, Any]) -> None:
    value = monitored(logs, self.monitor, "EarlyStopping")
    if improved(value, self.best, self.mode, self.min_delta):
      self.best, self.best_epoch, self.wait = value, epoch, 0
      if self.restore_best:
        self._best_state = jax.tree.map(jnp.copy, run.state)
    else:
      self.wait += 1
      if self.wait >= self.patience:
        self.stopped_epoch = epoch
        run.stop_training = True

  def on_train_end(self, run: Run) -> None:
    if self.restore_best and self.best_epoch is not None and self.best_epoch != run.epoch:
      if self._best_state is not None:
        run.state = self._best_state
      elif self.restore_fn is not None:
        run.state = self.restore_fn(self.best_epoch)
    self._best_state = None

  def state_dict(self) -> dict[str, Any]:
    return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

  def load_state_dict(self, state: dict[str, Any]) -> None:
    self.best = state.get("best")
    self.best_epoch = state.get("best_epoch")
    self.wait = int(state.get("wait", 0))


class ModelCheckpoint(Callback):
  """Saves the state at the end of epochs through a ``jdl.checkpoint.Checkpointer``.

  The checkpoint's JSON part carries the epoch, the run's history and the other
  callbacks' progress (``state_dict``), so a resumed run continues exactly
  where the saved one stood.

  Saving is on a schedule: an epoch is saved when ``every_seconds`` have
  passed since the last save began (0: every epoch), and always at the last
  epoch and when training stops early. Epochs of a few milliseconds (small
  runs) are then not each written to disk; a long epoch is saved every time.
  A run killed between saves resumes from its latest checkpoint and repeats
  the epochs after it, with the same result (the data order and the dropout
  keys depend on the seed and the step only). The best checkpoint by the
  monitored metric is the best among the saved epochs.

  Args:
    checkpointer: where and how many to keep (the last N and the best).
    others: the callbacks whose progress is saved alongside.
    every_seconds: the least time between two saves (0: every epoch).
    must_save: ``(run, epoch) -> bool``, epochs saved whatever the schedule
      (``jdl train`` passes early stopping's new best epochs, which a resumed
      run may need to restore).
    interrupted_dir: where an interruption in the middle of an epoch saves
      the state and the epoch so far (``on_interrupt``); it is removed once a
      later epoch's checkpoint is on disk. None: an interruption mid-epoch
      saves nothing.
  """

  name = "checkpoint"
  clock = staticmethod(time.monotonic)  # seconds; replaceable (tests drive the schedule with their own)

  def __init__(self, checkpointer, others: list[Callback] | tuple[Callback, ...] = (), every_seconds: float = 0.0,
               must_save: Callable[[Run, int], bool] | None = None, interrupted_dir: Any = None):
    if isinstance(every_seconds, bool) or not isinstance(every_seconds, (int, float)) or not (
        math.isfinite(every_seconds) and every_seconds >= 0):
      raise ValueError(f"checkpoint.every_seconds: expected a number of seconds >= 0, got {every_seconds!r}")
    self.checkpointer = checkpointer
    self.others = list(others)
    self.every_seconds = float(every_seconds)
    self.must_save = must_save
    self.interrupted_dir = interrupted_dir
    self._last_save: float | None = None
    self.saved_epochs: list[int] = []

  def on_train_begin(self, run: Run) -> None:
    self._last_save = self.clock()  # the run's start counts as a save: nothing is lost before it

  def due(self, run: Run, epoch: int) -> bool:
    """Whether ``epoch``'s checkpoint is written."""
    if self.every_seconds <= 0 or run.stop_training or (run.epochs is not None and epoch >= run.epochs):
      return True
    if self.must_save is not None and self.must_save(run, epoch):
      return True
    return self._last_save is None or self.clock() - self._last_save >= self.every_seconds

  def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, Any]) -> None:
    if not self.due(run, epoch):
      return
    self.save(run, epoch, logs)

  def save(self, run: Run, epoch: int, logs: dict[str, Any]) -> None:
    """Writes ``epoch``'s checkpoint now (asynchronously)."""
    meta = {
        "epoch": epoch,
        "history": run.history,
        "callbacks": {cb.name: cb.state_dict() for cb in self.others},
    }
    metrics = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}
    self._last_save = self.clock()
    self.checkpointer.save(epoch, run.state, meta, metrics)
    if self.saved_epochs and self.interrupted_dir is not None and os.path.isdir(self.interrupted_dir):
      # Orbax finished the previous save before starting this one: a whole epoch checkpoint past the
      # interruption is on disk, so the interrupted one is stale.
      shutil.rmtree(self.interrupted_dir)
    self.saved_epochs.append(epoch)

  def on_interrupt(self, run: Run, partial: Any) -> None:
    if partial is None:  # at the end of run.epoch
      if run.epoch and (not self.saved_epochs or self.saved_epochs[-1] != run.epoch) and run.history:
        self.save(run, run.epoch, run.history[-1])
      self.checkpointer.wait()
      return
    if self.interrupted_dir is None:
      return
    from jdl.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top

    meta = {"epoch": partial.epoch - 1, "partial": partial.to_json(), "history": run.history,
            "callbacks": {cb.name: cb.state_dict() for cb in self.others}}
    interrupted = Checkpointer(self.interrupted_dir, keep=1, async_save=False)
    try:
      interrupted.save(int(jax.device_get(run.state.step)), run.state, meta)
    finally:
      interrupted.close()
    self.checkpointer.wait()

  def on_train_end(self, run: Run) -> None:
    self.checkpointer.wait()


class RobustAccuracy(Callback):
  """Accuracy under a PGD attack on a fixed probe set, logged every epoch (adversarial training's figure).

  ``eval_robust_accuracy`` and ``eval_robust_eps`` join each epoch's logs
  (``metrics.jsonl``, the history, the curves). The accuracy is measured on the
  given examples, against the epoch's evaluation parameters
  (``jdl.optim.eval_params``), in evaluation mode. The attack is one program,
  compiled at the first epoch. Its random start is drawn from ``(seed, epoch)``,
  so a resumed run logs the same figures.

  Args:
    apply_fn: the model's ``apply``.
    x, y: the probe's inputs (as the network takes them) and labels.
    eps, steps, step_size, norm, clip: the attack (``jdl.attacks.pgd``'s; the
      step size defaults to ``2.5 · eps / steps``).
    seed: for the random starts.
  """

  name = "robust_accuracy"

  def __init__(self, apply_fn: Any, x: Any, y: Any, *, eps: float, steps: int = 10, step_size: float | None = None,
               norm: str = "linf", clip: tuple[float, float] | None = (0.0, 1.0), seed: int = 0):
    from jdl import attacks  # pylint: disable=g-import-not-at-top

    attacks.check_eps(eps)
    if norm not in attacks.NORMS:
      raise ValueError(f"norm: expected one of {', '.join(attacks.NORMS)}, got {norm!r}")
    self.x, self.y = jnp.asarray(x), jnp.asarray(y)
    self.eps, self.seed = float(eps), int(seed)
    size = step_size or 2.5 * eps / steps

    def correct(variables, x, y, key):
      def logits_fn(v):
        return apply_fn(variables, v, train=False)

      x_adv = attacks.pgd(logits_fn, x, y, eps=eps, step_size=size, steps=steps, norm=norm, key=key, clip=clip)
      return jnp.sum(attacks.predictions(logits_fn(x_adv)) == y)

    self._correct = jax.jit(correct)

  def on_chunk_end(self, run: Run, step: int, logs: dict[str, Any]) -> None:
    """Called at every chunk boundary, ``chunks_per_epoch`` times an epoch (the loop then splits every epoch
    into that many compiled calls), with ``logs``: ``epoch``, ``step`` (steps done so far, in all epochs),
    ``train_<metric>`` (the chunk's means) and ``learning_rate`` (of the chunk's last step). These are the
    metrics the loop reads at the boundary anyway: the hook adds no wait on the device. ``run.state`` is
    already further on (the next chunk runs while this one is read); reading its arrays waits for it."""
    del run, step, logs

  def epoch_metrics(self, run: Run, epoch: int) -> dict[str, float]:
    import jdl.optim  # pylint: disable=g-import-not-at-top

    state = run.state
    variables = {"params": jdl.optim.eval_params(state.opt_state, state.params), **(state.model_state or {})}
    hits = int(self._correct(variables, self.x, self.y, jax.random.fold_in(jax.random.key(self.seed), epoch)))
    return {"eval_robust_accuracy": hits / len(self.y), "eval_robust_eps": self.eps}


CALLBACKS.register("early_stopping", EarlyStopping)
CALLBACKS.seal()
