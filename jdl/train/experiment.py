"""``train_and_evaluate(config, workdir)``: one experiment run, config to summary.

What ``jdl train`` calls. It loads the data, builds the model, loss and
optimizer named by the config, trains with ``fit`` (checkpointing every epoch,
optionally stopping early), evaluates on the test split and writes the workdir:

* ``config.json``: the config as run;
* ``metrics.jsonl``: one line of logs per epoch;
* ``summary.json``: final test metrics, throughput, timings, versions, devices;
* ``curves.png``: loss and accuracy per epoch;
* ``checkpoints/``: Orbax checkpoints (the last N and the best).

``config.strategy`` chooses how the step is compiled and placed
(``jdl.train.parallel``), ``config.precision`` the compute dtype
(``jdl.train.precision``). In a multi-process run (``jdl.train.distributed``)
every process runs this function; all of them train, evaluate and save
checkpoints together (Orbax saves collectively), and only process 0 writes
the logs, the summary and the plot.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import jdl
from jdl import config as config_lib
from jdl.nn import conv as conv_lib
from jdl.data import pipeline
from jdl.train import callbacks as callbacks_lib
from jdl.train import distributed, loop, parallel, preemption, step
from jdl.train import workdir as workdir_lib
from jdl.train import precision as precision_lib
from jdl.train.state import init_variables, state_from_variables


def default_workdir(config: ml_collections.ConfigDict, root: str | os.PathLike[str] = "runs") -> pathlib.Path:
  """``runs/<experiment>/<timestamp>``: a fresh directory for every run."""
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  return pathlib.Path(root) / str(config.get("name", "experiment")) / stamp


def _json_default(value: Any) -> Any:
  if isinstance(value, (np.generic, jax.Array)):
    return np.asarray(value).item()
  if isinstance(value, tuple):
    return list(value)
  raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def git_revision(where: str | os.PathLike[str]) -> str | None:
  try:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5,
                         check=True)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() or None


def environment() -> dict[str, Any]:
  """Versions and devices, for the record."""
  import flax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  devices = jax.devices()
  return {
      "process_count": jax.process_count(),
      "local_device_count": jax.local_device_count(),
      "jdl": jdl.__version__,
      "jax": jax.__version__,
      "flax": flax.__version__,
      "optax": optax.__version__,
      "python": platform.python_version(),
      "platform": platform.platform(),
      "backend": jax.default_backend(),
      "devices": [str(d) for d in devices],
      "device_kind": devices[0].device_kind,
      "device_count": len(devices),
      "cpu_count": os.cpu_count(),
      "git_revision": git_revision(pathlib.Path(jdl.__file__).parent),
  }


def _bool_option(value: Any, name: str) -> bool | None | str:
  """Reads 'auto' / 'true' / 'false' (or a bool) config options."""
  if isinstance(value, bool):
    return value
  text = str(value).lower()
  if text in ("auto", "none"):
    return None
  if text in ("true", "1", "yes"):
    return True
  if text in ("false", "0", "no"):
    return False
  raise ValueError(f"{name}: expected 'auto', true or false, got {value!r}")


def _optimizer_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  cfg = config.optimizer.to_dict()
  # Empty groups and zeros mean "off" in config files, None in from_config.
  cfg["schedule"] = cfg.get("schedule") or None
  cfg["clip_global_norm"] = cfg.get("clip_global_norm") or None
  return cfg


def _learning_rate_fn(config: ml_collections.ConfigDict, train_data: Mapping[str, np.ndarray]) -> Any:
  """``fn(step) -> rate`` of the run's optimizer, logged as ``learning_rate``."""
  from jdl import optim  # pylint: disable=g-import-not-at-top

  steps = pipeline.steps_per_epoch(pipeline.num_examples(train_data), config.data.batch_size)
  return optim.learning_rate_fn(_optimizer_dict(config), total_steps=steps * config.epochs)


def build_optimizer(config: ml_collections.ConfigDict, total_steps: int, steps_per_epoch: int | None = None):
  """The optax chain the config's ``optimizer`` group describes."""
  from jdl import optim  # pylint: disable=g-import-not-at-top

  return optim.from_config(_optimizer_dict(config), total_steps=total_steps, steps_per_epoch=steps_per_epoch)


def load_splits(config: ml_collections.ConfigDict) -> tuple[dict[str, dict[str, np.ndarray]], Any]:
  """Loads the train, eval and test splits (each split once)."""
  from jdl import data  # pylint: disable=g-import-not-at-top

  info = data.info(config.data.name)
  cache: dict[str, dict[str, np.ndarray]] = {}
  out = {}
  # Process 0 prepares the dataset's cache alone; the others then read it.
  for turn in ("primary", "others"):
    if (turn == "primary") == distributed.is_primary():
      for role in ("train", "eval", "test"):
        split = config.data.get(f"{role}_split")
        if not split:
          continue
        if split not in cache:
          cache[split] = data.load(config.data.name, split)
        out[role] = cache[split]
    distributed.barrier(f"jdl_data_{turn}")
  _note_overlaps(config, info)
  from jdl.data import subsets  # pylint: disable=g-import-not-at-top

  classes = subsets.check_classes(tuple(config.data.get("classes", ()) or ()), info)
  per_class = config.data.get("train_per_class", 0) or 0
  if classes:
    out = {role: subsets.select_classes(arrays, classes) for role, arrays in out.items()}
    info = subsets.subset_info(info, classes)
  if per_class:
    out["train"] = subsets.per_class(out["train"], per_class, seed=config.seed)
  return out, info


def _note_overlaps(config: ml_collections.ConfigDict, info: Any) -> None:
  """A note when the eval or test split shares examples with the train split (its figures then flatter)."""
  from jdl.data import splits as splits_lib  # pylint: disable=g-import-not-at-top

  train = config.data.get("train_split")
  for role in ("eval", "test"):
    other = config.data.get(f"{role}_split")
    if not (train and other and distributed.is_primary()):
      continue
    try:
      shared = splits_lib.overlap(train, other, dict(info.splits))
    except ValueError:
      continue  # out of the canonical sizes (a smaller local copy): the loaders have said what they found
    if shared:
      workdir_lib.note(f"data.{role}_split={other!r} shares {shared} examples with data.train_split={train!r}: "
                       f"its {role}_* figures include examples the network trains on (the default validates on "
                       "train[90%:] and trains on train[:90%])")


def build_loss(config: ml_collections.ConfigDict) -> jdl.losses.LossFn:
  """The loss the config names: ``loss`` (with ``loss_options``), or for a model with
  several outputs ``losses`` ``{output: name}`` weighted by ``loss_weights``
  (``jdl.losses.weighted``; ``loss_options.<output>`` holds each output's options)."""
  options = config.loss_options.to_dict() if config.loss_options else {}
  heads = config.get("losses")
  if not heads:
    return jdl.losses.get(config.loss, **options)
  heads = heads.to_dict()
  extra = sorted(set(options) - set(heads))
  if extra:
    raise ValueError(f"loss_options: with losses per output {sorted(heads)}, loss_options holds one group of "
                     f"options per output; got the key(s) {', '.join(extra)}")
  weights = config.get("loss_weights")
  weights = weights.to_dict() if weights else {}
  return jdl.losses.weighted({head: jdl.losses.get(name, **dict(options.get(head) or {}))
                              for head, name in heads.items()}, weights)


def check_data(config: ml_collections.ConfigDict, splits: Mapping[str, Mapping[str, np.ndarray]], input_key: str,
               task: str, num_outputs: int) -> None:
  """Checks the loaded splits against the run before anything is compiled.

  Every split has examples; the inputs are finite (a NaN would only show as a
  diverged loss after an epoch); integer labels of a classification run lie in
  ``[0, num_outputs)`` (0/1 for one logit), multi-hot labels have one column per
  output.

  Raises:
    ValueError: naming the split, what was expected and what was found.
  """
  name = config.data.name
  for role, arrays in splits.items():
    where = f"data.{role}_split={config.data.get(f'{role}_split')!r} of {name}"
    sizes = {k: len(v) for k, v in arrays.items()}
    if not sizes or min(sizes.values()) == 0:
      raise ValueError(f"{where}: selects no example; expected a non-empty split")
    x = np.asarray(arrays.get(input_key))
    if x.dtype.kind == "f":
      bad = ~np.isfinite(x)
      if bad.any():
        first = int(np.argmax(bad.reshape(len(x), -1).any(axis=1)))
        raise ValueError(f"{where}: {int(bad.sum())} input values are not finite (NaN or inf), the first in "
                         f"example {first}; expected finite inputs (clean the data, or fix the data.transform)")
    labels = arrays.get("label")
    if labels is None or isinstance(labels, Mapping):
      continue
    labels = np.asarray(labels)
    if task in ("classification", "binary"):
      if labels.dtype.kind not in "iub" and not (labels.dtype.kind == "f" and np.all(labels == np.round(labels))):
        raise ValueError(f"{where}: a classification run needs integer labels, got {labels.dtype} labels")
      high = 2 if task == "binary" else num_outputs
      low_, high_ = int(labels.min()), int(labels.max())
      if low_ < 0 or high_ >= high:
        what = "0 or 1 (one logit: binary)" if task == "binary" else f"in [0, {num_outputs}) (the model's outputs)"
        raise ValueError(f"{where}: labels range over [{low_}, {high_}], expected {what}; set "
                         "model.options.num_classes to the number of classes, or fix the data.transform")
    elif task == "multilabel" and (labels.ndim != 2 or labels.shape[1] != num_outputs):
      raise ValueError(f"{where}: multi-label targets have shape {labels.shape}, expected (N, {num_outputs}) "
                       "(one column per output)")


def compilation_cache_dir() -> pathlib.Path:
  """Where ``jdl train`` keeps compiled programs: ``$JDL_CACHE_DIR``, else ``~/.cache/jdl/xla``."""
  return pathlib.Path(os.environ.get("JDL_CACHE_DIR") or "~/.cache/jdl/xla").expanduser()


def enable_compilation_cache(enabled: bool = True) -> pathlib.Path | None:
  """Turns on JAX's persistent compilation cache for every program, however quick to compile.

  A small run compiles in about a second, much of its wall time: with the
  cache a second run of the same experiment (or a resumed one) loads its
  programs instead. Entries are keyed by the program, the JAX version and the
  device, so a stale one is never used. Returns the directory, or None when off
  (or when JAX's cache was already pointed elsewhere by the user).
  """
  if not enabled:
    return None
  if jax.config.jax_compilation_cache_dir:  # the user's own choice wins
    return pathlib.Path(jax.config.jax_compilation_cache_dir)
  directory = compilation_cache_dir()
  try:
    directory.mkdir(parents=True, exist_ok=True)
  except OSError:
    return None  # a read-only home: compile every time
  jax.config.update("jax_compilation_cache_dir", str(directory))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory


def adversarial_transforms(config: ml_collections.ConfigDict, model: Any, input_key: str, task: str,
                           images: bool) -> tuple:
  """``config.adversarial`` as the train step's batch transforms (none when its method is '').

  ``images``: the inputs are uint8 images, which the step scales to [0, 1], the
  range adversarial examples are kept in (other inputs have none).
  """
  adv = config.get("adversarial")
  if not adv or not adv.get("method"):
    return ()
  if task not in ("classification", "binary"):
    raise ValueError(f"adversarial.method: adversarial training attacks a classifier's labels; this run's task is "
                     f"{task!r}")
  from jdl import attacks  # pylint: disable=g-import-not-at-top

  return (attacks.adversarial_transform(model.apply, input_key, method=adv.method, eps=adv.eps, steps=adv.steps,
                                        step_size=adv.step_size or None, norm=adv.norm, fraction=adv.fraction,
                                        clip=(0.0, 1.0) if images else None),)


def robust_accuracy_callbacks(config: ml_collections.ConfigDict, model: Any, input_key: str,
                              splits: Mapping[str, Mapping[str, np.ndarray]], task: str) -> list:
  """Adversarial training's per-epoch robust accuracy (``config.adversarial.eval_examples`` of the eval split)."""
  adv = config.get("adversarial")
  if not adv or not adv.get("method") or not adv.get("eval_examples", 0) or "eval" not in splits:
    return []
  if task not in ("classification", "binary"):
    return []  # adversarial_transforms names the problem
  arrays = splits["eval"]
  n = min(int(adv.eval_examples), len(arrays["label"]))
  x = step.scale_images({input_key: jnp.asarray(arrays[input_key][:n])}, input_key)[input_key]
  images = np.asarray(arrays[input_key]).dtype == np.uint8
  return [callbacks_lib.RobustAccuracy(model.apply, x, np.asarray(arrays["label"][:n]), eps=adv.eps,
                                       steps=adv.get("eval_steps", 10), norm=adv.norm,
                                       clip=(0.0, 1.0) if images else None, seed=config.seed)]


def ensemble_callbacks(config: ml_collections.ConfigDict, model: Any, input_key: str,
                       splits: Mapping[str, Mapping[str, np.ndarray]]) -> list[Any]:
  """An ensemble's per-member figures: every epoch on the eval split, and on the test split at the end."""
  from jdl import ensemble as ensemble_lib  # pylint: disable=g-import-not-at-top

  def scaled(arrays):
    return np.asarray(step.scale_images({input_key: jnp.asarray(arrays[input_key])}, input_key)[input_key])

  arrays = splits.get("eval")
  x, labels = (scaled(arrays), np.asarray(arrays["label"])) if arrays is not None else (None, None)
  return [ensemble_lib.EnsembleFigures(model.apply, x, labels, int(config.data.eval_batch_size), scale=scaled)]


def training_apply(config: ml_collections.ConfigDict, model: Any) -> Any:
  """The ``apply`` the steps call: ``model.apply``, fake-quantized under quantization-aware training, with
  frozen BatchNorm layers in inference mode."""
  from jdl.train import transfer  # pylint: disable=g-import-not-at-top

  apply_fn = model.apply
  if config.get("quantization") and config.quantization.get("enabled"):
    from jdl import quantize  # pylint: disable=g-import-not-at-top

    apply_fn = quantize.fake_quant_apply(apply_fn)
  freeze = config.optimizer.get("freeze", ()) or ()
  return transfer.frozen_batch_norm(apply_fn, (freeze,) if isinstance(freeze, str) else tuple(freeze))


def build_eval_step(config: ml_collections.ConfigDict, info: Any, model: Any, metric_specs: Any = None, *,
                    axis_name: str | None = None) -> Any:
  """The evaluation step ``jdl train`` evaluates with (its loss, task metric, ``metrics`` specs and precision);
  what ``TrainedRun.evaluate`` reuses, so an old run's test figures come out the same."""
  policy = precision_lib.get_policy(config.get("precision", "float32"))
  if metric_specs is None:
    metric_specs = jdl.metrics.parse_specs(tuple(config.get("metrics", ()) or ()))
  return step.make_eval_step(apply_fn=training_apply(config, model), loss_fn=build_loss(config),
                             input_key=info.input_key,
                             example_metrics=step.example_metrics_for(resolve_task(config, info)),
                             metrics=metric_specs, axis_name=axis_name,
                             precision=None if policy.compute_dtype == jnp.float32 else policy)


def diagnostics_callbacks(config: ml_collections.ConfigDict, apply_fn: Any, loss_fn: Any, tx: Any, input_key: str,
                          splits: Mapping[str, Mapping[str, np.ndarray]]) -> list:
  """``config.diagnostics``: a ``Diagnostics`` callback on the first ``examples`` training examples, measuring
  the model as the train step runs it (``apply_fn``: fake-quantized under quantization-aware training)."""
  diag = config.get("diagnostics")
  if not diag or not diag.get("enabled"):
    return []
  from jdl.train import diagnostics  # pylint: disable=g-import-not-at-top

  arrays = splits["train"]
  n = min(int(diag.examples), len(arrays[input_key]))
  batch = step.scale_images({k: jnp.asarray(np.asarray(v)[:n]) for k, v in arrays.items()}, input_key)
  return [diagnostics.Diagnostics(apply_fn, loss_fn, tx, batch, input_key=input_key, every=int(diag.every),
                                  seed=config.seed)]


def resolve_task(config: ml_collections.ConfigDict, info: Any) -> str:
  """What the run predicts: ``classification``, ``binary``, ``multilabel``, ``regression`` or ``multi_output``.

  Read from the dataset (``DatasetInfo.task``), a ``data.transform`` that
  declares its own task, a dict of losses (several outputs) and the configured
  output width (one logit on a classification set is binary); never guessed
  from traced shapes. It chooses the metric logged every step and which
  metrics a checkpoint monitor can name.
  """
  if config.get("losses"):
    return "multi_output"
  transform = config.data.get("transform", "")
  task = None
  if transform:
    from jdl.data import transforms  # pylint: disable=g-import-not-at-top

    task = transforms.task(transform)
  task = task or info.task
  if task == "classification" and model_outputs(config, info) == 1:
    return "binary"
  return task


def model_outputs(config: ml_collections.ConfigDict, info: Any) -> int:
  """The model's output width: ``model.options.num_classes``, else the dataset's classes (1 for regression).

  One logit is binary cross-entropy's output for a two-class set.
  """
  return config.model.options.get("num_classes", info.num_classes or 1)


def logged_keys(config: ml_collections.ConfigDict, task: str, metric_specs: Any = None) -> set[str]:
  """The per-epoch keys a run of ``config`` logs that a monitor may name: ``train_*`` and, with an eval
  split, ``eval_*`` (loss, the task's accuracy, each head's loss, ``config.metrics``, robust accuracy)."""
  if metric_specs is None:
    metric_specs = jdl.metrics.parse_specs(tuple(config.get("metrics", ()) or ()))
  names = ["loss", *(["accuracy"] if step.example_metrics_for(task) is not step.no_metrics else [])]
  names += [f"loss/{head}" for head in (config.get("losses") or {})]  # a dict of losses logs each head's
  logged = {f"train_{k}" for k in names}
  if config.data.get("eval_split"):
    logged |= {f"eval_{k}" for k in names} | {f"eval_{spec.key}" for spec in metric_specs}
    adv = config.get("adversarial")
    if adv and adv.get("method") and adv.get("eval_examples", 0):
      logged.add("eval_robust_accuracy")  # a checkpoint may keep the most robust epoch
  return logged


def resolve_monitor(config_group: ml_collections.ConfigDict, logged: set[str], who: str) -> tuple[str | None, str]:
  """The metric a checkpoint (or early stopping) monitors, and its mode, decided together.

  The configured ``monitor`` is kept when the run logs it. The default,
  ``eval_accuracy``, becomes ``eval_loss`` for a run without an accuracy
  (regression, multi-label); its mode then follows the metric jdl chose
  (``min`` for a loss) and an explicit ``mode`` that contradicts it is an
  error. A monitor the run does not log is an error listing those it does.
  """
  monitor = config_group.monitor or None
  mode = config_group.mode
  if monitor is None:
    return None, "max"
  # Streamed metrics with several values are logged as <key>_<class or field> (jdl.metrics.compute_all).
  if monitor not in logged and not any(monitor.startswith(f"{name}_") for name in logged if name.startswith("eval_")
                                       and name not in ("eval_loss", "eval_accuracy")):
    if monitor != "eval_accuracy":
      raise ValueError(f"{who}.monitor: the run does not log {monitor!r}; it logs {', '.join(sorted(logged))}")
    if "eval_loss" not in logged:  # no evaluation split: keep the latest checkpoints only
      return None, "max"
    chosen = "eval_loss"
    if mode not in ("auto", "min"):
      raise ValueError(f"{who}.mode: {mode!r} contradicts the monitor jdl chose: this run logs no accuracy, so "
                       f"{who} monitors {chosen!r} (minimised); set {who}.mode='auto' or 'min', or name another "
                       f"monitor among {', '.join(sorted(logged))}")
    monitor = chosen
  return monitor, callbacks_lib.resolve_mode(monitor, mode)


def build_model_and_state(config: ml_collections.ConfigDict, info: Any,
                          train_data: Mapping[str, np.ndarray]) -> tuple[Any, Any, Any]:
  """``(model, tx, state)``: the run's model, its optimizer and its initial ``TrainState``, as ``config`` says.

  What ``jdl train`` builds before its first step, and what ``load_run``
  restores a checkpoint into (the optimizer state's structure included: the
  schedule, ``nonfinite="skip"``'s wrapper, the loss scale of float16).
  """
  from jdl.data import pipeline  # pylint: disable=g-import-not-at-top

  model_options = config.model.options.to_dict()
  model_options.pop("num_classes", None)
  try:
    model = jdl.models.create(config.model.name, num_classes=model_outputs(config, info), **model_options)
  except (TypeError, ValueError) as e:
    raise type(e)(f"model.options: {e}") from None
  from jdl import ensemble as ensemble_lib  # pylint: disable=g-import-not-at-top

  members = ensemble_lib.check(config, resolve_task(config, info))
  if members > 1:
    model = ensemble_lib.Ensemble(member=model, members=members)
  batch_size = config.data.batch_size
  pipeline.check_batch_size(pipeline.num_examples(train_data), batch_size, "data.batch_size")
  steps_per_epoch = pipeline.steps_per_epoch(pipeline.num_examples(train_data), batch_size)
  tx = build_optimizer(config, total_steps=steps_per_epoch * config.epochs, steps_per_epoch=steps_per_epoch)
  if members > 1:
    tx = ensemble_lib.ensemble_optimizer(tx, members, config.optimizer.learning_rate,
                                         tuple(config.ensemble.get("learning_rates", ()) or ()))
  if config.get("nonfinite", "raise") == "skip":
    tx = jdl.optim.skip_nonfinite(tx, config.get("nonfinite_max_skips", 10))
  input_key = info.input_key
  sample = step.scale_images({input_key: jnp.asarray(train_data[input_key][:1])}, input_key)[input_key]
  try:
    variables = init_variables(model, sample, seed=config.seed)
  except Exception as e:  # pylint: disable=broad-except  # any failure to build the model from its options
    options = ", ".join(f"{k}={v!r}" for k, v in config.model.options.to_dict().items()) or "none"
    raise ValueError(f"model.options: model {config.model.name!r} cannot be built on inputs of shape "
                     f"{tuple(sample.shape[1:])} with the options {options} ({type(e).__name__}: "
                     f"{str(e).splitlines()[0][:300] if str(e) else ''})") from None
  state = state_from_variables(tx, *variables, seed=config.seed)  # the optimizer's own errors name its fields
  if precision_lib.get_policy(config.get("precision", "float32")).needs_loss_scaling:
    state = step.with_loss_scale(state, precision_lib.DynamicLossScale.create(
        config.loss_scale.initial, growth_interval=config.loss_scale.growth_interval))
  return model, tx, state


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[callbacks_lib.Callback] = (),
) -> dict[str, Any]:
  """Runs the experiment ``config`` in ``workdir``; returns the summary.

  Args:
    config: a config from ``jdl.config.base_config()`` or an experiment file.
    workdir: the run directory (created; one holding a run needs ``resume`` or
      ``overwrite``; see ``jdl.train.workdir``).
    resume: continue the run in ``workdir`` from its latest checkpoint. The
      config must be the run's own (``workdir.config_from_disk``) except in
      ``workdir.SAFE_TO_CHANGE`` (more epochs, progress, plots); a workdir with
      no checkpoint yet starts from step 0, and a finished run is left as it
      is (its summary is returned, nothing is written).
    overwrite: delete the run in ``workdir`` first.
    callbacks: more ``jdl.train.callbacks.Callback`` objects, called after jdl's own
      per-epoch figures (robust accuracy, diagnostics) are in the logs and before early
      stopping and checkpointing (so a callback that sets ``run.stop_training`` ends the
      run with the epoch saved).

  Returns:
    The contents of ``summary.json``.
  """
  wall_start = time.perf_counter()
  # Everything the config names is checked before the workdir is touched, the data
  # loaded or anything compiled: a misspelt metric or option fails in milliseconds.
  config_lib.check(config)
  metric_specs = jdl.metrics.parse_specs(tuple(config.get("metrics", ()) or ()))
  transform = config.data.get("transform", "")
  if transform:
    from jdl.data import transforms  # pylint: disable=g-import-not-at-top

    transforms.get(transform)
  progress = _bool_option(config.progress, "progress")
  on_device = _bool_option(config.data.on_device, "data.on_device")
  micro_batches = config.get("micro_batches", 1)
  policy = precision_lib.get_policy(config.get("precision", "float32"))
  run_plan = workdir_lib.plan(workdir, config, resume=resume, overwrite=overwrite)
  distributed.initialize(config)  # before anything touches a device
  cache_dir = enable_compilation_cache(bool(config.get("compilation_cache", True)))
  primary = distributed.is_primary()
  if run_plan.reason and primary:
    workdir_lib.note(run_plan.reason)
  if run_plan.mode == workdir_lib.COMPLETE:
    return run_plan.summary
  strategy = parallel.from_config(config)
  strategy.check_batch_size(config.data.batch_size, "data.batch_size")

  t = time.perf_counter()
  splits, info = load_splits(config)
  if transform:
    splits = {role: transforms.apply(transform, arrays) for role, arrays in splits.items()}
  data_seconds = time.perf_counter() - t
  train_data = splits["train"]
  input_key = info.input_key

  task = resolve_task(config, info)
  from jdl import ensemble as ensemble_lib  # pylint: disable=g-import-not-at-top

  members = ensemble_lib.check(config, task)
  check_data(config, splits, input_key, task, model_outputs(config, info))
  model, tx, state = build_model_and_state(config, info, train_data)
  from jdl.train import transfer  # pylint: disable=g-import-not-at-top

  head_name = transfer.check_cache_features(config, state.params)
  # Also on --resume: the checkpoint then replaces the parameters, but cached features come from these.
  state, init_report = transfer.apply_init_from(config, state, tx)
  if init_report is not None and primary:
    workdir_lib.note(init_report.message())
  loss_fn = build_loss(config)
  # Placed before any restore: the checkpoint is read straight into this strategy's shardings.
  state = strategy.place_state(state)
  example_metrics = step.example_metrics_for(task)
  train_example_metrics = example_metrics if members == 1 else ensemble_lib.member_metrics(example_metrics)
  logged = logged_keys(config, task, metric_specs)
  checkpoint_monitor = resolve_monitor(config.checkpoint, logged, "checkpoint") if config.checkpoint.enabled else None
  early_monitor = (resolve_monitor(config.early_stopping, logged, "early_stopping")
                   if config.early_stopping.enabled else None)
  precision = None if policy.compute_dtype == jnp.float32 else policy
  apply_fn = training_apply(config, model)  # fake-quantized under quantization-aware training
  from jdl import regularizers  # pylint: disable=g-import-not-at-top

  regularizer = regularizers.from_spec(config.get("regularizer", "") or "",
                                       exclude=tuple(config.get("regularizer_exclude", regularizers.DEFAULT_EXCLUDE)))
  from jdl.data import augment  # pylint: disable=g-import-not-at-top

  spec = config.get("augment", "") or ""
  augmentations = augment.transforms(spec, input_key)  # before the attack: adversarial examples of augmented images
  train_loss_fn = loss_fn
  if any(name in ("mixup", "cutmix") for name, _ in augment.parse(spec)):
    train_loss_fn = augment.mixed_loss(loss_fn)
  if members > 1:
    # Each member's own loss; the mean's gradient is scaled back by K in the optimizer, and so is the penalty.
    train_loss_fn = ensemble_lib.member_loss(train_loss_fn)
    regularizer = ensemble_lib.member_penalty(regularizer, members)
  train_step = step.make_train_step(apply_fn=apply_fn, loss_fn=train_loss_fn, tx=tx, input_key=input_key,
                                    regularizer=regularizer,
                                    example_metrics=train_example_metrics, axis_name=strategy.axis_name,
                                    precision=precision, micro_batches=micro_batches,
                                    batch_transforms=(*augmentations, *adversarial_transforms(
                                        config, model, input_key, task, train_data[input_key].dtype == np.uint8)))
  eval_step = build_eval_step(config, info, model, metric_specs, axis_name=strategy.axis_name)
  run_splits, features = splits, None
  if head_name is not None:  # the frozen backbone once per split; the steps then run the head on its features
    features = transfer.cache_features(model, {"params": state.params, **(state.model_state or {})}, head_name,
                                       splits, input_key, int(config.data.eval_batch_size),
                                       lambda x: step.scale_images({input_key: x}, input_key)[input_key])
    run_splits = features.splits
    train_step = train_step.replace(apply_fn=features.apply_fn)
    eval_step = eval_step.replace(apply_fn=features.apply_fn)

  extra_callbacks = robust_accuracy_callbacks(config, model, input_key, splits, task)
  extra_callbacks += diagnostics_callbacks(config, apply_fn, loss_fn, tx, input_key, splits)
  figures = ensemble_callbacks(config, model, input_key, splits) if members > 1 else []
  extra_callbacks += figures + list(callbacks)
  fingerprints = {role: pipeline.fingerprint(arrays) for role, arrays in splits.items()}
  with run_plan.start(primary) as workdir, preemption.SignalGuard() as guard:
    distributed.barrier("jdl_workdir_ready")
    _check_data_fingerprint(workdir, fingerprints, config, resume=run_plan.mode == workdir_lib.RESUME,
                            primary=primary)
    result, early, board = _train(config, workdir, resume=run_plan.mode == workdir_lib.RESUME, primary=primary,
                           state=state, train_step=train_step, eval_step=eval_step, splits=run_splits,
                           strategy=strategy, checkpoint_monitor=checkpoint_monitor, early_monitor=early_monitor,
                           progress=progress,
                           on_device=on_device, interrupt=guard.requested, extra_callbacks=extra_callbacks)
    engine = {"data_on_device": result.data_on_device,
              "conv": "jdl_cpu" if conv_lib.use_canonical_path() else "lax",
              "compilation_cache": str(cache_dir) if cache_dir else None}
    if features is not None:
      engine["cached_features"] = features.to_json()
    summary = _finish(config, workdir, result, early, board=board, splits=run_splits, eval_step=eval_step,
                      strategy=strategy, primary=primary, data_seconds=data_seconds, wall_start=wall_start,
                      test_figures=figures, engine=engine,
                      extra={"init_from": init_report.to_json()} if init_report is not None else {})
    return summary


_ROLES = ("train", "eval", "test")


def _check_data_fingerprint(workdir: pathlib.Path, fingerprints: Mapping[str, Any], config: ml_collections.ConfigDict,
                            *, resume: bool, primary: bool) -> None:
  """Writes ``data.json`` (the fingerprint of each split) for a new run; a resumed run must find the same data."""
  path = workdir / workdir_lib.DATA
  record = {"dataset": config.data.name, **{f"{role}_split": config.data.get(f"{role}_split") for role in fingerprints},
            "splits": dict(fingerprints)}
  stored = workdir_lib.read_json(path, "the fingerprint of the run's data") if resume else None
  if stored is not None:
    changed = [f"{role} ({config.data.get(f'{role}_split')!r}: {old.get('examples')} examples, sha256 "
               f"{str(old.get('sha256'))[:12]}… then, {fingerprints[role]['examples']} examples, sha256 "
               f"{fingerprints[role]['sha256'][:12]}… now)"
               for role, old in sorted(stored.get("splits", {}).items(), key=lambda kv: _ROLES.index(kv[0]))
               if role in fingerprints and old != fingerprints[role]]
    if changed:
      raise ValueError(f"--resume: the data of the run in {workdir} has changed since it started: "
                       + "; ".join(changed) + ". Resume with the data it started on (JDL_DATA_DIR, the dataset's "
                       "files), or start a new run")
    return
  if primary:
    workdir_lib.write_json(path, record)


def _restore(checkpointer, state, workdir, primary):
  """The state to resume from: the latest epoch checkpoint, or a newer interrupted epoch's.

  Returns ``(state, meta, resume_within)``; ``resume_within`` is the
  ``PartialEpoch`` of an epoch a signal cut short, or None. An interrupted
  checkpoint older than the latest epoch checkpoint is stale and removed.
  """
  from jdl.checkpoint import CheckpointError, Checkpointer  # pylint: disable=g-import-not-at-top

  interrupted_dir = workdir / workdir_lib.INTERRUPTED
  latest = checkpointer.latest_epoch()
  if workdir_lib.checkpoint_epochs(workdir, workdir_lib.INTERRUPTED):
    interrupted = Checkpointer(interrupted_dir, keep=1, async_save=False)
    try:
      partial_state, meta = interrupted.restore(state)
    except (CheckpointError, KeyError, ValueError) as e:  # damaged (a kill while it was written or removed)
      workdir_lib.note(f"the interrupted epoch's checkpoint in {interrupted_dir} cannot be read ({e}); "
                       "resuming from the latest epoch checkpoint instead")
      meta = None
    finally:
      interrupted.close()
    if meta is not None and (latest is None or int(meta["epoch"]) >= latest):
      return partial_state, meta, loop.PartialEpoch.from_json(meta["partial"])
    if primary:
      shutil.rmtree(interrupted_dir)
    if latest is None:  # nothing else to resume from: the run starts again (as the plan would have)
      return state, {"epoch": 0, "history": [], "callbacks": {}}, None
  state, meta = checkpointer.restore(state, set_aside_unreadable=primary)
  return state, meta, None


def _train(config, workdir, *, resume, primary, state, train_step, eval_step, splits, strategy, checkpoint_monitor,
           early_monitor, progress, on_device, interrupt=None, extra_callbacks=()):
  """Sets up the callbacks and checkpoints, restores a resumed run, writes config.json and trains."""
  callbacks: list[callbacks_lib.Callback] = list(extra_callbacks)  # first: their figures can be monitored
  callbacks += callbacks_lib.from_config(config.get("callbacks", ()) or ())  # the config's own, by name
  early = None
  if config.early_stopping.enabled:
    es = config.early_stopping
    monitor, mode = early_monitor
    early = callbacks_lib.EarlyStopping(monitor=monitor, patience=es.patience, mode=mode,
                                        min_delta=es.min_delta, restore_best=es.restore_best)
    callbacks.append(early)
  checkpointer = None
  if config.checkpoint.enabled:
    from jdl.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top

    monitor, mode = checkpoint_monitor
    checkpointer = Checkpointer(workdir / workdir_lib.CHECKPOINTS, keep=config.checkpoint.keep, monitor=monitor,
                                mode=mode)
    # Early stopping's best epoch is kept on disk: a resumed run restores it from there.
    must_save = (lambda run, epoch: early.best_epoch == epoch) if early is not None and early.restore_best else None
    callbacks.append(callbacks_lib.ModelCheckpoint(checkpointer, others=[cb for cb in callbacks],
                                                   every_seconds=config.checkpoint.get("every_seconds", 0.0),
                                                   must_save=must_save,
                                                   interrupted_dir=workdir / workdir_lib.INTERRUPTED))

  initial_epoch, history, resume_within = 0, [], None
  metrics_path = workdir / workdir_lib.METRICS
  if resume:
    state, meta, resume_within = _restore(checkpointer, state, workdir, primary)
    initial_epoch, history = int(meta["epoch"]), list(meta["history"])
    for cb in callbacks:
      cb.load_state_dict(meta.get("callbacks", {}).get(cb.name, {}))
    # Lines logged after the restored checkpoint belong to the lost part of the run.
    if primary:
      workdir_lib.rewrite_metrics(metrics_path, initial_epoch)
  if early is not None and checkpointer is not None:
    early.restore_fn = lambda epoch: checkpointer.restore(state_template, epoch)[0]
  state_template = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)
  if primary:
    workdir_lib.write_json(workdir / workdir_lib.CONFIG, config_lib.to_dict(config), default=_json_default)
    source = config_lib.experiment_source(config.get("name", ""))
    if source is not None and not resume:  # the run is self-describing: its own models and data load without the file
      from jdl.data._atomic import atomic_file  # pylint: disable=g-import-not-at-top

      with atomic_file(workdir / workdir_lib.EXPERIMENT) as f:
        f.write(pathlib.Path(source).read_bytes())

  metrics_file = metrics_path.open("a") if primary else None
  board = None
  if primary and config.get("tensorboard", True):
    from jdl.train import tensorboard  # pylint: disable=g-import-not-at-top

    board = tensorboard.Writer(workdir, initial_epoch=initial_epoch)

  def log_fn(logs: Mapping[str, Any]) -> None:
    if metrics_file is not None:
      metrics_file.write(json.dumps(dict(logs), default=_json_default) + "\n")
      metrics_file.flush()
    if board is not None:
      board.epoch(logs)

  try:
    result = loop.fit(
        state, train_step, splits["train"],
        batch_size=config.data.batch_size, epochs=config.epochs,
        eval_step=eval_step if "eval" in splits else None,
        eval_data=splits.get("eval"),
        eval_batch_size=config.data.eval_batch_size,
        seed=config.seed, callbacks=callbacks,
        data_on_device="auto" if on_device is None else on_device,
        progress=progress,
        initial_epoch=initial_epoch, chunks_per_epoch=config.chunks_per_epoch,
        history=history, log_fn=log_fn, strategy=strategy, nonfinite=config.get("nonfinite", "raise"),
        interrupt=interrupt, resume_within=resume_within,
        learning_rate=_learning_rate_fn(config, splits["train"]),
    )

  except BaseException:
    if board is not None:
      board.close()
    raise
  finally:
    if metrics_file is not None:
      metrics_file.close()
    if checkpointer is not None:
      checkpointer.close()
  return result, early, board


def _finish(config, workdir, result, early, *, board=None, splits, eval_step, strategy, primary, data_seconds, wall_start,
            engine, test_figures=(), extra=None):
  """Evaluates on the test split and writes summary.json and the curves."""
  # Throughput and training time of the whole run, every resumed part included.
  history = result.history
  train_seconds = float(sum(h.get("epoch_seconds", 0.0) for h in history))
  examples = sum(h.get("examples_per_second", 0.0) * h.get("epoch_seconds", 0.0) for h in history)
  summary: dict[str, Any] = {
      "experiment": config.get("name", None),
      "workdir": str(workdir.resolve()),
      "epochs_completed": history[-1]["epoch"] if history else 0,
      "stopped_early": result.stopped_early,
      "examples_per_second": examples / train_seconds if train_seconds else 0.0,
      "train_seconds": train_seconds,
      "compile_seconds": result.compile_seconds,
      "loop_seconds": result.loop_seconds,  # this invocation's epochs with their evaluations and checkpoints
      "data_seconds": data_seconds,
      "strategy": strategy.describe(),
      "precision": str(config.get("precision", "float32")),
      # Which paths ran: the epoch as a device-resident scan (or streamed batches), the
      # convolution implementation (jdl.nn.conv), the compilation cache.
      "engine": engine,
      **(extra or {}),
  }
  if result.nonfinite is not None:
    summary["nonfinite"] = result.nonfinite
  if history and "train_skipped_steps" in history[-1]:
    summary["skipped_steps"] = int(sum(h.get("train_skipped_steps", 0) for h in history))
  if early is not None:
    summary["best_epoch"] = early.best_epoch
    summary[f"best_{early.monitor}"] = early.best
  if "test" in splits:
    t = time.perf_counter()
    evaluator = loop.Evaluator(eval_step, config.data.eval_batch_size, strategy)
    summary.update(evaluator(result.state, splits["test"], prefix="test_"))
    for figures in test_figures:  # an ensemble's members, vote and disagreement on the test split
      summary.update(figures.test(result.state, splits["test"]))
    summary["test_seconds"] = time.perf_counter() - t
  summary["wall_seconds"] = time.perf_counter() - wall_start
  summary["config"] = config_lib.to_dict(config)
  summary["environment"] = environment()
  summary["history"] = result.history
  if primary:
    workdir_lib.write_json(workdir / workdir_lib.SUMMARY, summary, default=_json_default)
  if primary and config.plot and result.history:
    from jdl.train import plots  # pylint: disable=g-import-not-at-top

    plots.plot_history(result.history, workdir / "curves.png", title=str(config.get("name", "")))
  if board is not None:
    try:
      board.finish(summary, config_lib.to_dict(config), workdir / "curves.png")
    finally:
      board.close()
  return summary
