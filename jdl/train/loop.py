"""The fit loop: compiled epochs, evaluation, callbacks, throughput.

``fit`` runs a pure ``train_step(state, batch) -> (state, metrics)`` over
epochs. Where the data fits on the device (the default), each epoch is a few
calls of one compiled ``lax.scan`` over steps, split into chunks so the
progress bar can move and so a long epoch (``LONG_EPOCH`` steps or more) has
boundaries where a preemption signal can save a checkpoint and where divergence
is caught early; the host reads chunk ``k-1``'s metrics after dispatching
chunk ``k``, so it never waits on the device mid-epoch. Otherwise batches
stream from the host, one step ahead.

Every function is compiled ahead of time (``jit(...).lower(...).compile()``),
so compile time is measured apart from run time and a shape change cannot
silently recompile. Compiling and placing is the ``strategy``'s job
(``jdl.train.parallel``): the same loop runs on one device, data-parallel over
a mesh, one program per device (``pmap``) or model-parallel, and on several
processes (only process 0 shows progress).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jdl.data import pipeline
from jdl.train import parallel, programs
from jdl.train.callbacks import Callback, Run, has_chunk_hook
from jdl.train.state import TrainState

StepFn = Callable[[TrainState, Mapping[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]
EvalFn = Callable[[TrainState, Mapping[str, jax.Array]], dict[str, jax.Array]]


@dataclasses.dataclass
class FitResult:
  """What ``fit`` returns.

  Attributes:
    state: the final state (the best epoch's, if early stopping restored it).
    history: one dict of logs per epoch run (``epoch``, ``train_*``, ``eval_*``,
      ``epoch_seconds``, ``examples_per_second``).
    compile_seconds: time spent compiling the train and eval programs.
    train_seconds: wall time of the training epochs, evaluation excluded.
    examples_per_second: training examples / ``train_seconds``.
    stopped_early: whether a callback stopped training.
    data_on_device: whether the training data lived on the device (epochs as
      ``lax.scan``) or streamed from the host.
    loop_seconds: wall time of the epochs with everything around them
      (evaluations, callbacks, checkpoints, logging), compilation excluded.
    nonfinite: with ``nonfinite="stop"``, where training stopped: ``step``,
      ``epoch``, ``batch``, ``metric`` and ``value`` of the first non-finite
      loss; ``state`` is then the last finite epoch's.
  """

  state: TrainState
  history: list[dict[str, Any]]
  compile_seconds: float
  train_seconds: float
  examples_per_second: float
  stopped_early: bool
  data_on_device: bool = True
  nonfinite: dict[str, Any] | None = None
  loop_seconds: float = 0.0


# Epochs of at least this many steps run as several chunks even without a progress bar,
# so that an interruption (SIGTERM) is answered within a chunk, not an epoch.
LONG_EPOCH = 200


@dataclasses.dataclass
class PartialEpoch:
  """An epoch cut short by an interruption: where it stood, to resume it exactly.

  Attributes:
    epoch: the epoch (counting from 1).
    steps: its steps done.
    seconds: the training seconds they took.
    metrics: ``{name: [steps]}``, their per-step training metrics.
  """

  epoch: int
  steps: int
  seconds: float
  metrics: dict[str, np.ndarray]

  def to_json(self) -> dict[str, Any]:
    return {"epoch": self.epoch, "steps": self.steps, "seconds": self.seconds,
            "metrics": {k: np.asarray(v).tolist() for k, v in self.metrics.items()}}

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> PartialEpoch:
    return cls(epoch=int(data["epoch"]), steps=int(data["steps"]), seconds=float(data["seconds"]),
               metrics={k: np.asarray(v, np.float32) for k, v in data["metrics"].items()})


class Interrupted(Exception):
  """Training stopped at a chunk boundary because ``fit``'s ``interrupt`` asked (a signal)."""

  def __init__(self, reason: str, epoch: int, steps: int, steps_per_epoch: int):
    self.reason, self.epoch, self.steps, self.steps_per_epoch = reason, epoch, steps, steps_per_epoch
    super().__init__(f"interrupted by {reason} after step {steps} of {steps_per_epoch} of epoch {epoch}")


def choose_chunks(steps: int, target: int) -> int:
  """The largest divisor of ``steps`` not above ``target``: equal chunks, one compile."""
  target = max(1, min(target, steps))
  return max(d for d in range(1, target + 1) if steps % d == 0)


class Evaluator:
  """Evaluates a state on a dataset, compiling once per dataset shape.

  The dataset is padded into fixed-size batches with a mask (no example is
  dropped) and kept on the device(s) between calls. Under a multi-device
  strategy the batch size is rounded up to split evenly over the devices (the
  padding is masked, so the result does not change).

  Args:
    eval_fn: ``(state, batch) -> sums`` (``make_eval_step``), uncompiled.
    batch_size: examples per evaluation batch.
    strategy: a ``jdl.train.parallel.Strategy`` or its name; default ``single``.
  """

  def __init__(self, eval_fn: EvalFn, batch_size: int, strategy: parallel.Strategy | str | None = None):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"eval_batch_size: expected a positive integer, got {batch_size!r}")
    self.strategy = parallel.get(strategy)
    self.eval_fn = self.strategy.bind_eval_step(eval_fn)
    self.batch_size = batch_size
    self._compiled: dict[Any, Any] = {}
    self._placed: dict[int, Any] = {}
    self.compile_seconds = 0.0

  def _blocks(self, arrays: Mapping[str, np.ndarray]):
    key = id(arrays)
    if key not in self._placed:
      n = pipeline.num_examples(arrays)
      batch_size = self.strategy.eval_batch_size(min(self.batch_size, n))
      blocks = self.strategy.place_eval_blocks(pipeline.padded_eval_batches(arrays, batch_size))
      self._placed[key] = (arrays, blocks)  # holding `arrays` keeps its id from being reused
    return self._placed[key][1]

  def prepare(self, state: TrainState, arrays: Mapping[str, np.ndarray]) -> Any:
    """Places ``arrays`` on the device(s) and compiles the evaluation for them; returns the program."""
    blocks = self._blocks(arrays)
    signature = jax.tree.map(lambda a: (a.shape, a.dtype), (state, blocks))
    signature = (jax.tree.structure(state), tuple(jax.tree.leaves(signature)))
    if signature not in self._compiled:
      start = time.perf_counter()
      self._compiled[signature] = self.strategy.compile_eval(self.eval_fn, state, blocks)
      self.compile_seconds += time.perf_counter() - start
    return self._compiled[signature]

  def sums(self, state: TrainState, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Device sums of the loss and metrics, ``count``, and merged metric states; no host sync."""
    return self.prepare(state, arrays)(state, self._blocks(arrays))

  def __call__(self, state: TrainState, arrays: Mapping[str, np.ndarray], prefix: str = "") -> dict[str, float]:
    """Means of the loss and metrics over every example of ``arrays`` (``programs.eval_means``)."""
    return programs.eval_means(jax.device_get(self.sums(state, arrays)), prefix)


class _Progress:
  """Per-epoch progress: a live tqdm bar (``True``), one line per epoch
  (``None`` when stderr is not a terminal), or silence (``False``)."""

  def __init__(self, enabled: bool | None, epochs: int, steps: int):
    self.mode = "off" if enabled is False else ("bar" if enabled or sys.stderr.isatty() else "lines")
    self.epochs, self.steps = epochs, steps
    self.bar = None

  def start(self, epoch: int) -> None:
    if self.mode == "bar":
      from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top

      self.bar = tqdm(total=self.steps, desc=f"epoch {epoch}/{self.epochs}", unit="step",
                      leave=True, dynamic_ncols=True, file=sys.stderr)

  def update(self, steps: int, metrics: Mapping[str, float], examples_per_second: float) -> None:
    if self.bar is not None:
      self.bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items()} | {"ex/s": f"{examples_per_second:,.0f}"},
                           refresh=False)
      self.bar.update(steps)

  def end(self, logs: Mapping[str, Any]) -> None:
    if self.mode == "off":
      return
    shown = {k: v for k, v in logs.items() if k.startswith(("train_", "eval_"))}
    line = " ".join(f"{k}={v:.4f}" for k, v in shown.items())
    line += f" ex/s={logs['examples_per_second']:,.0f}"
    if self.bar is not None:
      self.bar.set_postfix_str(line, refresh=True)
      self.bar.close()
      self.bar = None
    else:
      print(f"epoch {logs['epoch']}/{self.epochs} {line}", file=sys.stderr, flush=True)


NONFINITE_POLICIES = ("raise", "skip", "stop")


def _first_nonfinite(loss_S: np.ndarray, epoch: int, steps: int) -> dict[str, Any] | None:
  """Where the first non-finite training loss of an epoch is (``step`` counts from the run's start)."""
  bad = programs.first_nonfinite(loss_S)
  if bad is None:
    return None
  return {"step": (epoch - 1) * steps + bad + 1, "epoch": epoch, "batch": bad + 1, "metric": "train_loss",
          "value": float(np.ravel(loss_S)[bad])}


def _diverged(where: dict[str, Any], steps: int, policy: str) -> FloatingPointError:
  advice = ("more non-finite updates in a row than nonfinite=skip skips; " if policy == "skip" else "")
  return FloatingPointError(
      f"training diverged: {where['metric']} is {where['value']} at step {where['step']} (epoch {where['epoch']}, "
      f"batch {where['batch']} of {steps}); {advice}lower the learning rate or clip the gradients "
      "(optimizer.clip_global_norm)")


def fit(
    state: TrainState,
    train_step: StepFn,
    train_data: Mapping[str, np.ndarray],
    *,
    batch_size: int,
    epochs: int,
    eval_step: EvalFn | None = None,
    eval_data: Mapping[str, np.ndarray] | None = None,
    eval_batch_size: int = 1000,
    seed: int = 0,
    callbacks: Sequence[Callback] = (),
    data_on_device: bool | str = "auto",
    progress: bool | None = None,
    initial_epoch: int = 0,
    chunks_per_epoch: int = 10,
    history: list[dict[str, Any]] | None = None,
    log_fn: Callable[[dict[str, Any]], None] | None = None,
    strategy: parallel.Strategy | str | None = None,
    nonfinite: str = "raise",
    interrupt: Callable[[], str | None] | None = None,
    resume_within: PartialEpoch | None = None,
    learning_rate: Callable[[int], float] | None = None,
) -> FitResult:
  """Trains ``state`` for ``epochs`` epochs.

  Args:
    state: the initial ``TrainState``. Its buffers are donated: do not use the
      object you passed in afterwards, use ``FitResult.state``.
    train_step: ``(state, batch) -> (state, metrics)``, uncompiled (fit
      compiles it once, with the state donated).
    train_data: a dict of arrays with a common leading axis.
    batch_size: training batch size (the last partial batch is dropped).
    epochs: the epoch to stop after (counting from 1, so ``initial_epoch=2,
      epochs=5`` runs epochs 3, 4 and 5).
    eval_step, eval_data: evaluated after every epoch, logged as ``eval_*``.
    eval_batch_size: evaluation batch size (the last batch is masked).
    seed: the shuffling seed; epoch ``e``'s order depends on ``(seed, e)`` only.
    callbacks: called after every epoch with its logs (early stopping,
      checkpoints).
    data_on_device: ``'auto'`` (on the device when it fits: an epoch is then
      a compiled ``lax.scan``; convolutional models too, since ``jdl.nn.Conv``'s
      gradients keep XLA's fast CPU kernels inside loops), True or False.
    progress: True: a live progress bar; None: a bar when stderr is a
      terminal, else one line per epoch; False: silent.
    initial_epoch: epochs already done (when resuming).
    chunks_per_epoch: how many progress updates an epoch gets.
    history: earlier epochs' logs (when resuming); new epochs are appended.
    log_fn: called with each epoch's logs (e.g. to append to metrics.jsonl).
    strategy: how the step is compiled and the state and data placed: a
      ``jdl.train.parallel.Strategy`` or a name (``'single'``,
      ``'data_parallel'``, ``'pmap'``, ``'model_parallel'``, ``'auto'``);
      default ``'single'``. ``batch_size`` must split evenly over its
      data-parallel devices. ``state`` may be placed already
      (``strategy.place_state``) or not.
    nonfinite: what a non-finite training loss does, checked at the end of
      every chunk (and a non-finite evaluation loss after every epoch):
      ``"raise"`` (``FloatingPointError`` naming the first bad step),
      ``"stop"`` (training ends before that epoch is logged or seen by any
      callback; the run ends with the last finite epoch's state, of which a
      copy is kept each epoch, and the checkpoint callback writes that epoch
      if its schedule had not; ``FitResult.nonfinite`` says where) or
      ``"skip"`` (the optimizer is expected to skip such steps,
      ``jdl.optim.skip_nonfinite``: they are left out of the epoch's means and
      counted as ``train_skipped_steps``; a loss that is still non-finite
      raises).
    interrupt: polled at every chunk boundary (each ``chunks_per_epoch``-th
      of an epoch of ``LONG_EPOCH`` steps or more, else the epoch's end); a
      non-empty string (the reason, e.g. ``"SIGTERM"``) stops training there:
      every callback's ``on_interrupt(run, partial)`` is called (the
      checkpoint callback saves the epoch so far) and ``Interrupted`` is
      raised.
    resume_within: continue an epoch that an interruption cut short: the
      steps it had done, their metrics and seconds (``PartialEpoch``, from
      the checkpoint ``on_interrupt`` saved); the state must be the one saved
      then, and ``initial_epoch`` the epochs completed before it.
    learning_rate: ``fn(step) -> rate`` (``jdl.optim.learning_rate_fn``):
      each epoch's logs then hold ``learning_rate``, the rate at its last step.

  The logs of an epoch, which callbacks receive and ``log_fn`` writes:
  ``epoch``, ``step`` (train steps so far), ``train_<metric>`` (means over the
  epoch), ``eval_<metric>``, ``epoch_seconds``, ``examples_per_second``,
  ``learning_rate`` (when given) and what callbacks' ``epoch_metrics`` add.

  Returns:
    A ``FitResult``.

  Raises:
    Interrupted: ``interrupt`` asked for it (the checkpoint is saved first).
    FloatingPointError: a non-finite training loss under ``nonfinite="raise"``.
  """
  n = pipeline.num_examples(train_data)
  pipeline.check_batch_size(n, batch_size)
  strategy = parallel.get(strategy)
  strategy.check_batch_size(batch_size, "batch_size")
  if not isinstance(epochs, int) or epochs < 0:
    raise ValueError(f"epochs: expected a non-negative integer, got {epochs!r}")
  if nonfinite not in NONFINITE_POLICIES:
    raise ValueError(f"nonfinite: expected one of {', '.join(NONFINITE_POLICIES)}, got {nonfinite!r}")
  if data_on_device not in ("auto", True, False):
    raise ValueError(f"data_on_device: expected 'auto', True or False, got {data_on_device!r}")
  if (eval_step is None) != (eval_data is None):
    raise ValueError("eval_step and eval_data: give both or neither")
  if data_on_device == "auto":
    on_device = pipeline.fits_on_device(train_data)
  else:
    on_device = bool(data_on_device)

  steps = pipeline.steps_per_epoch(n, batch_size)
  examples_per_epoch = steps * batch_size
  evaluator = Evaluator(eval_step, eval_batch_size, strategy) if eval_step is not None else None
  train_step = strategy.bind_train_step(train_step)
  if jax.process_index() != 0:
    progress = False  # one progress display per run, not per process
  run = Run(state=strategy.place_state(state), history=list(history or []), epoch=initial_epoch, epochs=epochs)
  progress_ = _Progress(progress, epochs, steps)

  compile_seconds = 0.0
  t0 = time.perf_counter()
  # Chunks let a progress bar move and bound how long an interruption waits for its
  # checkpoint; a short epoch without a bar is one call.
  chunk_hooks = [cb for cb in callbacks if has_chunk_hook(cb)]
  num_chunks = (choose_chunks(steps, chunks_per_epoch) if progress_.mode == "bar" or steps >= LONG_EPOCH or chunk_hooks
                else 1)
  chunk_len = steps // num_chunks
  if on_device:
    data_dev = strategy.place_data(train_data)
    compiled = strategy.compile_chunk(train_step, run.state, data_dev,
                                      strategy.place_indices(np.zeros((steps, batch_size), np.int32)), chunk_len)
  else:
    compiled = strategy.compile_step(
        train_step, run.state, {k: jax.ShapeDtypeStruct((batch_size,) + np.shape(v)[1:], np.asarray(v).dtype)
                                for k, v in train_data.items()})
  compile_seconds += time.perf_counter() - t0
  if resume_within is not None and not 0 < resume_within.steps < steps:
    raise ValueError(f"resume_within: {resume_within.steps} steps done of epoch {initial_epoch + 1}; expected "
                     f"between 1 and {steps - 1}")

  if evaluator is not None:
    evaluator.prepare(run.state, eval_data)  # compiled now, not inside the first epoch's timing
  for cb in callbacks:
    cb.on_train_begin(run)

  loop_start = time.perf_counter()
  train_seconds = 0.0
  stopped_early = False
  nonfinite_at = None
  for epoch in range(initial_epoch + 1, epochs + 1):
    run.epoch = epoch
    progress_.start(epoch)
    start = time.perf_counter()
    idx_SxB = pipeline.epoch_batches(seed, epoch, n, batch_size)
    pending: list[tuple[int, Any]] = []  # (steps, device metrics) not yet read
    stacked: list[Mapping[str, np.ndarray]] = []
    first_step, earlier_seconds = 0, 0.0
    if resume_within is not None and epoch == initial_epoch + 1:
      # The part of this epoch trained before an interruption: its metrics and time count here.
      first_step, earlier_seconds = resume_within.steps, resume_within.seconds
      stacked.append({k: np.asarray(v) for k, v in resume_within.metrics.items()})
      progress_.update(first_step, {}, 0.0)

    # The last finite state, for nonfinite="stop" (the live state's buffers go to the next chunk).
    last_good = jax.tree.map(jnp.copy, run.state) if nonfinite == "stop" else None
    bad: dict[str, Any] | None = None

    def drain(keep: int) -> None:
      nonlocal bad
      while len(pending) > keep:
        k, dev = pending.pop(0)
        host = jax.device_get(dev)
        stacked.append(host)
        elapsed = time.perf_counter() - start
        done = sum(np.size(next(iter(m.values()))) for m in stacked)
        if bad is None:  # checked chunk by chunk: training stops at the end of the first bad chunk
          bad = _first_nonfinite(programs.kept_losses(stacked), epoch, steps)
        means = {f"train_{m}": float(np.mean(v)) for m, v in host.items()}
        progress_.update(k, means, done * batch_size / max(elapsed + earlier_seconds, 1e-9))
        if chunk_hooks:  # the metrics the host reads anyway: no extra wait on the device
          chunk_logs = {"epoch": epoch, "step": (epoch - 1) * steps + done, **means}
          if learning_rate is not None:
            chunk_logs["learning_rate"] = float(learning_rate(chunk_logs["step"] - 1))
          for cb in chunk_hooks:
            cb.on_chunk_end(run, chunk_logs["step"], chunk_logs)

    def interrupted(done: int) -> None:
      """Raises ``Interrupted`` after saving where the epoch stands, if an interruption was asked for."""
      reason = interrupt() if interrupt is not None else None
      if not reason or done >= steps or bad is not None:
        return
      drain(keep=0)
      partial = PartialEpoch(epoch=epoch, steps=done, seconds=earlier_seconds + time.perf_counter() - start,
                             metrics={k: np.concatenate([np.ravel(m[k]) for m in stacked]) for k in stacked[0]})
      for cb in callbacks:
        cb.on_interrupt(run, partial)
      raise Interrupted(reason, epoch, done, steps)

    if on_device:
      idx_SxB = strategy.place_indices(idx_SxB)
      first_chunk = -(-first_step // chunk_len)
      if first_step % chunk_len:
        # Resumed where another chunking stopped (a progress bar then, none now): the steps up to the
        # next boundary as one program of their own.
        head_len = first_chunk * chunk_len - first_step
        head = strategy.compile_chunk(train_step, run.state, data_dev, idx_SxB, head_len)
        run.state, metrics = head(run.state, data_dev, idx_SxB, strategy.index(first_step))
        pending.append((head_len, metrics))
      for c in range(first_chunk, num_chunks):
        if bad is not None:
          break
        run.state, metrics = compiled(run.state, data_dev, idx_SxB, strategy.index(c * chunk_len))
        pending.append((chunk_len, metrics))
        drain(keep=1)  # read chunk c-1 while chunk c runs
        interrupted((c + 1) * chunk_len)
    else:
      group: list[dict[str, jax.Array]] = []
      for i, batch in enumerate(strategy.batches(train_data, idx_SxB[first_step:]), start=first_step):
        run.state, metrics = compiled(run.state, batch)
        group.append(metrics)
        if len(group) == chunk_len or i == steps - 1:
          pending.append((len(group), jax.tree.map(lambda *xs: jnp.stack(xs), *group)))
          group = []
          drain(keep=1)
          if bad is not None:
            break
          interrupted(i + 1)
    # The evaluation is dispatched behind the epoch's last chunk, before reading its metrics, so
    # the host waits once for both.
    eval_sums = evaluator.sums(run.state, eval_data) if evaluator is not None and bad is None else None
    drain(keep=0)
    epoch_seconds = earlier_seconds + time.perf_counter() - start
    train_seconds += epoch_seconds

    logs: dict[str, Any] = {"epoch": epoch, "step": epoch * steps}
    if bad is None:
      logs.update({f"train_{k}": v for k, v in programs.train_means(stacked).items()})
      if evaluator is not None:
        logs.update(programs.eval_means(jax.device_get(eval_sums), prefix="eval_"))
        if not math.isfinite(logs.get("eval_loss", 0.0)):
          bad = {"step": epoch * steps, "epoch": epoch, "batch": steps, "metric": "eval_loss",
                 "value": logs["eval_loss"]}
    if bad is not None:
      if nonfinite != "stop":
        raise _diverged(bad, steps, nonfinite)
      # The bad epoch is not logged and no callback sees it; the run ends with the last finite
      # state, whose epoch checkpoint is written now if the schedule had not written it.
      nonfinite_at, stopped_early = bad, True
      resumed_part = resume_within is not None and epoch == initial_epoch + 1
      run.state, run.epoch = last_good, epoch - 1
      if not resumed_part:
        for cb in callbacks:
          cb.on_interrupt(run, None)
      if jax.process_index() == 0 and progress is not False:
        print(f"jdl: stopping: {bad['metric']} is {bad['value']} at step {bad['step']} (epoch {epoch}); "
              f"the run ends with the state of epoch {epoch - 1}, the last finite one", file=sys.stderr,
              flush=True)
      break
    logs["epoch_seconds"] = epoch_seconds
    logs["examples_per_second"] = examples_per_epoch / epoch_seconds
    if learning_rate is not None:
      logs["learning_rate"] = float(learning_rate(epoch * steps - 1))  # the rate of the epoch's last step
    for cb in callbacks:
      logs.update(cb.epoch_metrics(run, epoch))
    run.history.append(logs)
    progress_.end(logs)
    if log_fn is not None:
      log_fn(logs)
    for cb in callbacks:
      cb.on_epoch_end(run, epoch, logs)
    if run.stop_training:
      stopped_early = True
      break
    reason = interrupt() if interrupt is not None and epoch < epochs else None
    if reason:
      for cb in callbacks:
        cb.on_interrupt(run, None)  # at an epoch's end: that epoch's checkpoint
      raise Interrupted(reason, epoch + 1, 0, steps)

  for cb in callbacks:
    cb.on_train_end(run)
  loop_seconds = time.perf_counter() - loop_start
  if evaluator is not None:
    compile_seconds += evaluator.compile_seconds
  epochs_run = run.epoch - initial_epoch
  return FitResult(
      state=run.state,
      history=run.history,
      compile_seconds=compile_seconds,
      train_seconds=train_seconds,
      examples_per_second=(epochs_run * examples_per_epoch / train_seconds) if train_seconds else 0.0,
      stopped_early=stopped_early,
      data_on_device=on_device,
      nonfinite=nonfinite_at,
      loop_seconds=loop_seconds,
  )
