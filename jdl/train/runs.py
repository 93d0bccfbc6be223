"""A finished run (or one stopped after a checkpoint), loaded back from its directory: its config, data, model and weights.

``load_run(RUN_DIR)`` is what every command that works on a trained network
starts from (``jdl attack``, and the analyses built on it)::

    run = jdl.train.load_run("runs/cnn_fashion_mnist")
    test = run.split("test")                     # the arrays as stored (uint8 images)
    x = run.inputs(test)                         # what the network takes (images scaled to [0, 1])
    logits = run.logits(x[:100])                 # evaluation mode: no dropout, BatchNorm's running averages

The run's own ``config.json`` rebuilds the model and the optimizer exactly as
``jdl train`` built them (``experiment.build_model_and_state``), the checkpoint
is restored into that structure, and the weights are the optimizer's
evaluation parameters (``jdl.optim.eval_params``: the averaged iterate of a
schedule-free optimizer), the ones ``jdl train``'s evaluations used.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np


@dataclasses.dataclass
class TrainedRun:
  """A run loaded by ``load_run``.

  Attributes:
    directory: the run directory.
    config: its config (``config.json``).
    info: the dataset's ``DatasetInfo`` (class names, input key, task).
    model: the Flax module.
    variables: ``{"params": ..., **model_state}`` at the evaluation parameters.
    epoch: the checkpoint's epoch.
    task: ``"classification"``, ``"binary"``, ``"regression"``, ...
  """

  directory: pathlib.Path
  config: ml_collections.ConfigDict
  info: Any
  model: Any
  variables: dict[str, Any]
  epoch: int
  task: str
  _splits: dict[str, dict[str, np.ndarray]] = dataclasses.field(repr=False, default_factory=dict)
  state: Any = dataclasses.field(repr=False, default=None)  # the restored TrainState (evaluate reads it)
  _cache: dict[Any, Any] = dataclasses.field(repr=False, default_factory=dict)  # compiled programs, predictions

  @property
  def input_key(self) -> str:
    return self.info.input_key

  @property
  def class_names(self) -> tuple[str, ...] | None:
    return getattr(self.info, "class_names", None) or None

  def split(self, role: str = "test") -> dict[str, np.ndarray]:
    """The run's ``"train"``, ``"eval"`` or ``"test"`` split, as ``jdl train`` loaded it."""
    if role not in self._splits:
      known = ", ".join(sorted(self._splits)) or "none"
      raise ValueError(f"split: expected one of the run's splits ({known}), got {role!r}")
    return self._splits[role]

  def inputs(self, arrays: Mapping[str, np.ndarray]) -> jax.Array:
    """The network's input for ``arrays`` (a split or a batch): uint8 images scaled to [0, 1] as in training."""
    from jdl.train import step  # pylint: disable=g-import-not-at-top

    key = self.input_key
    return step.scale_images({key: jnp.asarray(arrays[key])}, key)[key]

  def logits(self, x: jax.Array) -> jax.Array:
    """The network's outputs for inputs ``x`` (from ``inputs``), in evaluation mode."""
    return self.model.apply(self.variables, x, train=False)

  def predict(self, x: Any, batch_size: int = 256) -> dict[str, Any]:
    """The network's predictions for inputs as the dataset stores them (uint8 images, features), in batches.

    One compiled program for all calls (the last batch is padded to ``batch_size``). Returns
    ``{"outputs": [N, K]}`` and, for a classifier, ``"probabilities"`` ``[N, C]``, ``"labels"`` ``[N]``
    and ``"classes"`` (their names, where the dataset has them).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    x = np.asarray(x)
    stored = self.split("train")[self.input_key]
    if x.shape[1:] != stored.shape[1:]:
      raise ValueError(f"x: expected inputs of shape (N, {', '.join(map(str, stored.shape[1:]))}) as the dataset "
                       f"stores them, got {x.shape}")
    if "apply" not in self._cache:
      self._cache["apply"] = jax.jit(lambda variables, v: self.model.apply(variables, v, train=False))
    outputs = []
    for start in range(0, len(x), batch_size):
      part = x[start:start + batch_size]
      padded = np.concatenate([part, np.zeros((batch_size - len(part), *part.shape[1:]), part.dtype)])
      outputs.append(np.asarray(self._cache["apply"](self.variables, self.inputs({self.input_key: padded})))[
          :len(part)])
    out = np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)
    result: dict[str, Any] = {"outputs": out}
    if self.task in ("classification", "binary") and len(out):
      probs = (np.concatenate([1 - _sigmoid(out), _sigmoid(out)], axis=-1) if out.shape[-1] == 1
               else np.asarray(jax.nn.softmax(out, axis=-1)))
      labels = np.argmax(probs, axis=-1)
      result.update(probabilities=probs, labels=labels,
                    classes=[self.class_names[i] if self.class_names else str(i) for i in labels])
    return result

  def evaluate(self, split: str = "test", metrics: Any = None, batch_size: int | None = None) -> dict[str, Any]:
    """``split``'s loss, the task's metric and ``metrics`` (``jdl.metrics`` specs; default the run's own
    ``config.metrics``), computed by the evaluation ``jdl train`` ran: an old run's ``summary.json`` test
    figures come out the same. Keys are ``<split>_loss``, ``<split>_accuracy``, ``<split>_<spec>``."""
    import jdl.metrics  # pylint: disable=g-import-not-at-top
    from jdl.train import experiment, loop, parallel  # pylint: disable=g-import-not-at-top

    arrays = self.split(split)
    specs = None if metrics is None else jdl.metrics.parse_specs(tuple(metrics))
    # The run's own strategy: the same batches over the same devices, summed in the same order.
    strategy = parallel.from_config(self.config)
    eval_step = experiment.build_eval_step(self.config, self.info, self.model, specs, axis_name=strategy.axis_name)
    evaluator = loop.Evaluator(eval_step, batch_size or int(self.config.data.eval_batch_size), strategy)
    return evaluator(strategy.place_state(self.state), arrays, prefix=f"{split}_")

  def logits_fn(self):
    """``x -> logits``, the function ``jdl.attacks`` and ``jax.grad`` take (pure; the weights are closed over)."""
    variables, model = self.variables, self.model
    return lambda x: model.apply(variables, x, train=False)


def load_run(directory: str | pathlib.Path, epoch: int | str | None = None) -> TrainedRun:
  """Loads the run in ``directory`` at checkpoint ``epoch``.

  ``epoch``: a checkpointed epoch; ``"best"``: the epoch with the best
  ``checkpoint.monitor`` in ``metrics.jsonl``; None (the default): the state
  ``jdl train`` tested, that is early stopping's best epoch when it restored it
  (``summary.json``'s ``best_epoch``), else the latest checkpoint. The network
  runs in float32 (a run trained in mixed precision evaluated in its compute
  dtype: its figures may differ in the last digits).

  Raises:
    FileNotFoundError: ``directory`` holds no run (no ``config.json``) or no checkpoint.
    ValueError: ``epoch`` is not one of the run's checkpoints.
  """
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top
  from jdl.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  from jdl.train import experiment  # pylint: disable=g-import-not-at-top
  from jdl.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  import jdl.optim  # pylint: disable=g-import-not-at-top

  directory = pathlib.Path(directory)
  stored = _stored_config(directory)
  # The experiment's own file gives the fields their types and runs its registrations (a user's own model or
  # dataset): the copy jdl train kept in the run first, so the run loads wherever the original went.
  copy = directory / workdir_lib.EXPERIMENT
  config_lib.import_all(tuple(stored.get("imports", ()) or ()))  # the user's files the run was trained with
  try:
    template = config_lib.load_experiment(str(copy) if copy.is_file() else stored.get("name", ""))
  except (FileNotFoundError, ValueError, KeyError):
    template = config_lib.base_config()
  with template.unlocked():
    template.name = stored.get("name", template.get("name"))
  config = workdir_lib.config_from_disk(directory, template)
  checkpoints = directory / workdir_lib.CHECKPOINTS
  epochs = workdir_lib.checkpoint_epochs(directory)
  if not epochs:
    raise FileNotFoundError(f"run: {directory} has no checkpoint in {checkpoints} (a run saves one at its last "
                            "epoch at least; was checkpoint.enabled false, or did it stop before its first?)")
  if epoch not in (None, "best") and (isinstance(epoch, bool) or not isinstance(epoch, int) or epoch not in epochs):
    raise ValueError(f"epoch: expected one of the run's checkpoints {epochs} or 'best', got {epoch!r}")
  splits, info = experiment.load_splits(config)
  transform = config.data.get("transform", "")
  if transform:
    from jdl.data import transforms  # pylint: disable=g-import-not-at-top

    splits = {role: transforms.apply(transform, arrays) for role, arrays in splits.items()}
  model, _, state = experiment.build_model_and_state(config, info, splits["train"])
  if epoch is None and config.early_stopping.enabled and config.early_stopping.get("restore_best", True):
    summary = workdir_lib.read_json(directory / "summary.json", "the run's summary") or {}
    if summary.get("best_epoch") in epochs:
      epoch = int(summary["best_epoch"])  # the state the run ended with and tested
  if epoch == "best":
    epoch = _best_epoch(directory, config, epochs)
  elif epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int) or epoch not in epochs):
    raise ValueError(f"epoch: expected one of the run's checkpoints {epochs} or 'best', got {epoch!r}")
  checkpointer = Checkpointer(checkpoints, keep=config.checkpoint.keep, async_save=False)
  try:
    state, meta = checkpointer.restore(state, epoch)
  finally:
    checkpointer.close()
  params = jdl.optim.eval_params(state.opt_state, state.params)
  variables = {"params": params, **(state.model_state or {})}
  return TrainedRun(directory=directory, config=config, info=info, model=model, variables=variables,
                    epoch=int(meta.get("epoch", epoch or epochs[-1])), task=experiment.resolve_task(config, info),
                    _splits=dict(splits), state=state)


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 1.0 / (1.0 + np.exp(-x))


def _stored_config(directory: pathlib.Path) -> dict[str, Any]:
  """The run's ``config.json`` as a dict; raises ``FileNotFoundError`` naming what is missing."""
  from jdl.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  if not directory.is_dir():
    raise FileNotFoundError(f"run: {directory} is not a directory; pass the --workdir of a `jdl train` run")
  stored = workdir_lib.read_json(directory / workdir_lib.CONFIG, "the run's config")
  if stored is None:
    raise FileNotFoundError(f"run: {directory} holds no {workdir_lib.CONFIG}; it is not the workdir of a "
                            "`jdl train` run")
  return stored


def _best_epoch(directory: pathlib.Path, config: ml_collections.ConfigDict, epochs: list[int]) -> int:
  """The checkpoint whose epoch has the best monitored metric in ``metrics.jsonl`` (the checkpoint's monitor)."""
  import json  # pylint: disable=g-import-not-at-top

  from jdl.train import experiment  # pylint: disable=g-import-not-at-top

  path = directory / "metrics.jsonl"
  lines = []
  if path.exists():
    for text in path.read_text().splitlines():
      try:
        lines.append(json.loads(text))
      except json.JSONDecodeError:
        continue  # a line a kill cut short
  logged = set().union(*(line.keys() for line in lines)) if lines else set()
  monitor, mode = experiment.resolve_monitor(config.checkpoint, logged, "checkpoint")
  scored = {int(line["epoch"]): line[monitor] for line in lines
            if monitor in line and int(line.get("epoch", -1)) in epochs}
  if not scored:
    raise ValueError(f"epoch: 'best' needs the monitored {monitor!r} of a checkpointed epoch in {path}, "
                     f"and there is none; pass an epoch of {epochs}")
  pick = max if mode == "max" else min
  return pick(sorted(scored), key=scored.get)  # ties: the earliest epoch


ATTACK_FILE = "attack.json"
ATTACK_FIGURE = "attack.png"


def attack_run(directory: str | pathlib.Path, eps: Any, *, method: str = "pgd", steps: int = 10,
               step_size: float | None = None, norm: str = "linf", split: str = "test", limit: int | None = None,
               batch_size: int = 500, epoch: int | str | None = None, seed: int = 0) -> dict[str, Any]:
  """Robust accuracy of a trained run over ``eps``; writes ``attack.json`` and ``attack.png`` into the run.

  Everything is checked before the run is loaded or anything compiled. The
  valid range of uint8 images is [0, 1] (jdl scales them so); other inputs are
  attacked without a range.

  Returns:
    what ``attack.json`` holds: the run, the split, the checkpoint's epoch and
    ``jdl.attacks.robust_accuracy``'s figures.
  """
  from jdl import attacks  # pylint: disable=g-import-not-at-top
  from jdl.train import plots  # pylint: disable=g-import-not-at-top
  from jdl.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  attacks.check_method(method)
  if norm not in attacks.NORMS:
    raise ValueError(f"norm: expected one of {', '.join(attacks.NORMS)}, got {norm!r}")
  eps = [float(e) for e in (eps if isinstance(eps, (list, tuple)) else [eps])]
  if not eps:
    raise ValueError("eps: expected at least one value, got none")
  for e in eps:
    attacks.check_eps(e)
  if step_size:
    attacks.check_eps(step_size, "step_size")
  for name, value, low in (("limit", limit, 1), ("steps", steps, 1), ("batch_size", batch_size, 1)):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
      raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
  if split not in ("train", "eval", "test"):
    raise ValueError(f"split: expected train, eval or test, got {split!r}")
  run = load_run(directory, epoch)
  if run.task not in ("classification", "binary"):
    raise ValueError(f"run: attacks measure classification accuracy; {directory} is a {run.task} run")
  arrays = run.split(split)
  x, y = run.inputs(arrays), np.asarray(arrays["label"])
  if limit is not None:
    x, y = x[:limit], y[:limit]
  images = np.asarray(arrays[run.input_key]).dtype == np.uint8  # scaled to [0, 1] by run.inputs
  result = attacks.robust_accuracy(run.logits_fn(), x, y, eps=eps, method=method, steps=steps,
                                   step_size=step_size, norm=norm, clip=(0.0, 1.0) if images else None,
                                   batch_size=batch_size, seed=seed)
  first = result.pop("first")
  payload = {"run": str(run.directory), "experiment": run.config.get("name"), "epoch": run.epoch, "split": split,
             "clip": [0.0, 1.0] if images else None, **result}
  workdir_lib.write_json(run.directory / ATTACK_FILE, payload)
  if first:
    plots.plot_adversarial(first["x"], first["x_adv"], first["y"], first["clean_pred"], first["adv_pred"],
                           run.directory / ATTACK_FIGURE, class_names=run.class_names,
                           title=f"{method} {norm} eps={eps[-1]:g}: clean (top) and adversarial (bottom)")
  return payload


VISUALS = ("ideal", "saliency", "filters", "confusion", "errors", "diagnostics")
VISUALIZE_FILE = "visualize.json"


def _class_index(name: Any, class_names: tuple[str, ...] | None, classes: int, directory: Any) -> int:
  """``--class``: a class name of the run's dataset (any case) or its index."""
  text = str(name).strip()
  if class_names:
    lowered = [c.lower() for c in class_names]
    if text.lower() in lowered:
      return lowered.index(text.lower())
  if text.isdigit() and int(text) < classes:
    return int(text)
  known = ", ".join(class_names) if class_names else f"0 … {classes - 1}"
  raise ValueError(f"class: expected a class of the run's dataset ({known}), got {name!r} (run {directory})")


def import_run_code(directory: str | pathlib.Path) -> dict[str, Any]:
  """Imports the user's files the run in ``directory`` was trained with (its models, data, metrics); returns its
  stored config."""
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top

  stored = _stored_config(pathlib.Path(directory))
  config_lib.import_all(tuple(stored.get("imports", ()) or ()))
  return stored


def _stored_dataset(directory: pathlib.Path) -> Any:
  """The dataset ``DatasetInfo`` of the run in ``directory`` (its classes, if it kept some), without loading data."""
  from jdl import data  # pylint: disable=g-import-not-at-top
  from jdl.data import subsets  # pylint: disable=g-import-not-at-top

  stored = import_run_code(directory).get("data", {})
  info = data.info(stored.get("name", ""))
  return subsets.subset_info(info, subsets.check_classes(tuple(stored.get("classes", ()) or ()), info))


def visualize_run(directories: Any, what: Any, *, class_name: Any = None, count: int = 8, steps: int = 512,
                  tv: float = 1.0, learning_rate: float = 0.01, jitter: int = 2, split: str = "test",
                  epoch: int | str | None = None, seed: int = 0) -> dict[str, Any]:
  """Draws figures of trained runs into their directories; returns what ``visualize.json`` records.

  ``what``: one or several of ``VISUALS``:

  - ``ideal``: activation maximisation of every class's log-probability (or
    of ``class_name``'s alone) from noise, without and with the total-variation
    weight ``tv`` (``ideal.png``; the probabilities reached in ``visualize.json``);
  - ``saliency``: the first ``count`` examples of ``split`` with their vanilla
    gradient, SmoothGrad and integrated-gradients maps for the predicted class
    (or ``class_name``) (``saliency.png``);
  - ``filters``: the first convolution's kernels (``filters.png``);
  - ``confusion``: the confusion matrix on ``split`` (``confusion.png``);
  - ``errors``: the ``count`` most confidently misclassified examples of ``split`` (``errors.png``);
  - ``diagnostics``: the training diagnostics in ``metrics.jsonl``
    (``config.diagnostics``), of one run or of several side by side
    (``diagnostics.png`` in the first).

  Every argument, the class name included, is checked before a run is
  loaded or anything compiled; only ``diagnostics`` takes several runs.
  ``visualize.json`` keeps the figures' numbers across calls; the returned
  dict has this call's (and ``"written"``: the PNGs' paths).
  """
  from jdl.train import diagnostics as diagnostics_lib  # pylint: disable=g-import-not-at-top

  directories = [pathlib.Path(d) for d in (directories if isinstance(directories, (list, tuple)) else [directories])]
  what = [w.strip() for w in (what.split(",") if isinstance(what, str) else what) if w.strip()]
  if "all" in what:
    what = [w for w in VISUALS if w != "diagnostics"] + [w for w in what if w == "diagnostics"]
  unknown = [w for w in what if w not in VISUALS]
  if not what or unknown:
    raise ValueError(f"what: expected one or more of {', '.join(VISUALS)} (or all), got {unknown or what!r}")
  if not directories:
    raise ValueError("run_dir: expected at least one run directory, got none")
  if len(directories) > 1 and what != ["diagnostics"]:
    raise ValueError(f"run_dir: only --what diagnostics compares several runs; got {len(directories)} runs for "
                     f"{', '.join(what)}")
  for name, value in (("count", count), ("steps", steps)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
  if isinstance(jitter, bool) or not isinstance(jitter, int) or jitter < 0:
    raise ValueError(f"jitter: expected an int >= 0, got {jitter!r}")
  for name, value, low in (("tv", tv, "0"), ("learning_rate", learning_rate, "0 (and > 0)")):
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0
        or (name == "learning_rate" and value == 0)):
      raise ValueError(f"{name}: expected a number >= {low}, got {value!r}")
  if split not in ("train", "eval", "test"):
    raise ValueError(f"split: expected train, eval or test, got {split!r}")
  logged = {}
  if "diagnostics" in what:
    logged = {_label(d): diagnostics_lib.read_diagnostics(d) for d in directories}  # raises when a run logged none
  target = None
  if class_name is not None:
    info = _stored_dataset(directories[0])
    target = _class_index(class_name, getattr(info, "class_names", None), int(info.num_classes or 1),
                          directories[0])
  elif any(w != "diagnostics" for w in what):
    _stored_dataset(directories[0])
  from jdl.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  record = workdir_lib.read_json(directories[0] / VISUALIZE_FILE, "the run's figures record") or {}
  written = []
  if "diagnostics" in what:
    path = directories[0] / "diagnostics.png"
    diagnostics_lib.plot_runs(logged, path)
    written.append(path)
  rest = [w for w in what if w != "diagnostics"]
  if rest:
    run = load_run(directories[0], epoch)
    for w in rest:
      path = run.directory / f"{w}.png"
      record[w] = _VISUAL_FNS[w](run, path, target=target, count=count, steps=steps, tv=float(tv),
                                 learning_rate=float(learning_rate), jitter=jitter, split=split, seed=seed)
      record[w]["epoch"] = run.epoch
      written.append(path)
      workdir_lib.write_json(run.directory / VISUALIZE_FILE, record)  # after each figure: what is drawn is recorded
  return {"written": [str(p) for p in written], **{w: record[w] for w in rest}}


def _label(directory: pathlib.Path) -> str:
  from jdl.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  stored = workdir_lib.read_json(directory / workdir_lib.CONFIG, "the run's config") or {}
  return stored.get("label") or directory.name


def _class_label(run: TrainedRun, c: int) -> str:
  return run.class_names[c] if run.class_names and c < len(run.class_names) else str(c)


def _split_probabilities(run: TrainedRun, split: str) -> np.ndarray:
  """``run.predict``'s probabilities for a whole split, computed once per run (confusion and errors share them)."""
  key = ("probabilities", split)
  if key not in run._cache:  # pylint: disable=protected-access
    run._cache[key] = run.predict(run.split(split)[run.input_key], batch_size=1000)["probabilities"]  # pylint: disable=protected-access
  return run._cache[key]  # pylint: disable=protected-access


def _images(run: TrainedRun) -> bool:
  return np.asarray(run.split("train")[run.input_key][:1]).dtype == np.uint8


def _ideal(run: TrainedRun, path, *, target, steps, tv, learning_rate, jitter, seed, **_):
  from jdl import visualize  # pylint: disable=g-import-not-at-top
  from jdl.train import plots  # pylint: disable=g-import-not-at-top

  if run.task not in ("classification", "binary"):
    raise ValueError(f"run: ideal inputs maximise a class's score; {run.directory} is a {run.task} run")
  shape = tuple(run.inputs({run.input_key: run.split("train")[run.input_key][:1]}).shape[1:])
  classes = [target] if target is not None else list(range(int(run.info.num_classes or 2)))
  weights = [0.0] * len(classes) + [tv] * len(classes)
  images = _images(run)
  out = visualize.ideal_inputs(run.logits_fn(), classes * 2, shape, steps=steps, learning_rate=learning_rate,
                               tv=weights if len(shape) == 3 else 0.0, jitter=jitter if len(shape) == 3 else 0,
                               clip=(0.0, 1.0) if images else None, seed=seed)
  n = len(classes)
  rows = [("no TV", out["x"][:n]), (f"TV {tv:g}", out["x"][n:])] if len(shape) == 3 and tv else [
      ("ideal", out["x"][:n])]
  titles = [f"{_class_label(run, c)}\n{p:.3f} / {q:.3f}" for c, p, q in
            zip(classes, out["probability"][:n], out["probability"][n:])]
  plots.plot_image_rows(rows, titles, path, title=f"inputs maximising each class's log-probability ({steps} Adam "
                                                  "steps from noise); its probability without / with TV")
  record = {"classes": [_class_label(run, c) for c in classes], "steps": steps, "tv": tv,
            "probability": [float(p) for p in out["probability"][:n]],
            "probability_tv": [float(p) for p in out["probability"][n:]]}
  if len(shape) == 3:  # how much the term smooths: the images' mean total variation without and with it
    variation = np.asarray(visualize.total_variation(jnp.asarray(out["x"])))
    record["total_variation"] = [float(variation[:n].mean()), float(variation[n:].mean())]
  return record


def _saliency(run: TrainedRun, path, *, target, count, split, seed, **_):
  from jdl import visualize  # pylint: disable=g-import-not-at-top
  from jdl.train import plots  # pylint: disable=g-import-not-at-top

  if run.task not in ("classification", "binary"):
    raise ValueError(f"run: saliency maps explain a class's score; {run.directory} is a {run.task} run")
  arrays = run.split(split)
  x = run.inputs({run.input_key: arrays[run.input_key][:count]})
  logits_fn = run.logits_fn()
  probs = run.predict(arrays[run.input_key][:count])["probabilities"]
  chosen = np.argmax(probs, axis=-1) if target is None else np.full(len(x), target)
  maps = {
      "gradient": visualize.saliency(logits_fn, x, chosen),
      "SmoothGrad": visualize.smoothgrad(logits_fn, x, chosen, key=jax.random.key(seed)),
      "integrated gradients": visualize.integrated_gradients(logits_fn, x, chosen),
  }
  rows = [("input", np.asarray(x))] + [(name, visualize.saliency_map(g)) for name, g in maps.items()]
  titles = [f"{_class_label(run, int(c))} ({probs[i, int(c)]:.2f})" for i, c in enumerate(chosen)]
  if x.ndim == 4:
    plots.plot_image_rows(rows, titles, path, title=f"saliency of the {'predicted' if target is None else 'chosen'} "
                                                    f"class's logit, {split} split")
  else:
    plots.plot_image_rows(rows, titles, path, title="saliency (1-d inputs: attributions drawn as curves)")
  return {"split": split, "examples": len(x), "classes": [_class_label(run, int(c)) for c in chosen]}


def _filters(run: TrainedRun, path, **_):
  from jdl import visualize  # pylint: disable=g-import-not-at-top
  from jdl.train import plots  # pylint: disable=g-import-not-at-top

  kernel = visualize.first_layer_filters(run.variables)
  plots.plot_filters(kernel, path, title=f"first convolution: {kernel.shape[-1]} filters of "
                                         f"{kernel.shape[0]}x{kernel.shape[1]}x{kernel.shape[2]}")
  return {"shape": list(kernel.shape)}


def _confusion(run: TrainedRun, path, *, split, **_):
  from jdl import metrics  # pylint: disable=g-import-not-at-top
  from jdl.train import plots  # pylint: disable=g-import-not-at-top

  if run.task not in ("classification", "binary"):
    raise ValueError(f"run: a confusion matrix needs classes; {run.directory} is a {run.task} run")
  arrays = run.split(split)
  probs = _split_probabilities(run, split)
  labels = np.asarray(arrays["label"])
  matrix = metrics.confusion_matrix(labels, np.argmax(probs, axis=-1), num_classes=probs.shape[-1])
  accuracy = float(np.trace(matrix) / max(matrix.sum(), 1))
  plots.plot_confusion(matrix, path, class_names=run.class_names,
                       title=f"{run.config.get('name')}, {split} split: accuracy {accuracy:.4f}")
  return {"split": split, "accuracy": accuracy, "matrix": matrix.tolist()}


def _errors(run: TrainedRun, path, *, count, split, **_):
  from jdl.train import plots  # pylint: disable=g-import-not-at-top

  if run.task not in ("classification", "binary"):
    raise ValueError(f"run: misclassified examples need classes; {run.directory} is a {run.task} run")
  arrays = run.split(split)
  probs = _split_probabilities(run, split)
  labels, predicted = np.asarray(arrays["label"]), np.argmax(probs, axis=-1)
  confidence = probs[np.arange(len(probs)), predicted]
  wrong = np.flatnonzero(predicted != labels)
  worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]
  images = np.asarray(run.inputs({run.input_key: arrays[run.input_key][worst]}))
  plots.plot_errors(images, labels[worst], predicted[worst], confidence[worst], path, class_names=run.class_names,
                    title=f"the {len(worst)} most confidently misclassified of {len(wrong)} errors, {split} split")
  return {"split": split, "errors": int(len(wrong)), "indices": [int(i) for i in worst],
          "confidence": [float(confidence[i]) for i in worst]}


_VISUAL_FNS = {"ideal": _ideal, "saliency": _saliency, "filters": _filters, "confusion": _confusion,
               "errors": _errors}
