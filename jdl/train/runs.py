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
  if not directory.is_dir():
    raise FileNotFoundError(f"run: {directory} is not a directory; pass the --workdir of a `jdl train` run")
  stored = workdir_lib.read_json(directory / workdir_lib.CONFIG, "the run's config")
  if stored is None:
    raise FileNotFoundError(f"run: {directory} holds no {workdir_lib.CONFIG}; it is not the workdir of a "
                            "`jdl train` run")
  try:  # the experiment's own file gives the fields their types and runs its registrations
    template = config_lib.load_experiment(stored.get("name", ""))
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
                    _splits=dict(splits))


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
    attacks._check_eps(e)  # pylint: disable=protected-access
  if step_size:
    attacks._check_eps(step_size, "step_size")  # pylint: disable=protected-access
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
