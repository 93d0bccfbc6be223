"""Search spaces shipped with jdl: ``jdl tune EXPERIMENT --space NAME``.

A search space is a function ``space(trial, config) -> config``: it asks the
Optuna ``trial`` for values (``trial.suggest_float``, ``suggest_int``,
``suggest_categorical``) and writes them into the experiment's ``config``
(KerasTuner's model-building function, in jdl's form: the config builds the
model). Name each parameter after the config field it sets, so tables, plots
and the best-config file read as configs. A space may carry a grid for
``--sampler grid``: ``space.grid = {name: [values]}``, or a function of the
config returning one.

Write your own in a file and give its path: ``--space my_space.py`` (the
function ``space``) or ``--space my_space.py:wide`` (another name)::

    def space(trial, config):
      config.optimizer.learning_rate = trial.suggest_float("optimizer.learning_rate", 1e-4, 1e-1, log=True)
      config.model.options.hidden = (trial.suggest_categorical("model.options.hidden", [128, 256, 512]),)
      return config
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ml_collections
import numpy as np

SpaceFn = Callable[[Any, ml_collections.ConfigDict], ml_collections.ConfigDict]


def learning_rate(trial: Any, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The learning rate, log-uniform over a factor of 10 each side of the experiment's own."""
  lr = float(config.optimizer.learning_rate)
  config.optimizer.learning_rate = trial.suggest_float("optimizer.learning_rate", lr / 10, lr * 10, log=True)
  return config


learning_rate.grid = lambda config: {  # five points, a factor √10 apart
    "optimizer.learning_rate": [float(v) for v in float(config.optimizer.learning_rate) * np.logspace(-1, 1, 5)]}


_OPTIMIZER_HPARAMS = {"sgd": {}, "momentum": {"momentum": 0.9}, "rmsprop": {}, "adam": {}, "adamw": {}}


def optimizer(trial: Any, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The optimizer (SGD, momentum 0.9, RMSProp, Adam, AdamW) and its learning rate, log-uniform over [1e-4, 1]
  for SGD and momentum and [1e-5, 1e-1] for the adaptive ones; AdamW's weight decay log-uniform over [1e-5, 1e-2].
  The experiment's own hyperparameters of its optimizer are dropped (they belong to another optimizer)."""
  name = trial.suggest_categorical("optimizer.name", list(_OPTIMIZER_HPARAMS))
  low, high = (1e-4, 1.0) if name in ("sgd", "momentum") else (1e-5, 1e-1)
  config.optimizer.name = name
  # One parameter per optimizer: TPE models each optimizer's learning rate on its own scale.
  config.optimizer.learning_rate = trial.suggest_float(f"optimizer.learning_rate[{name}]", low, high, log=True)
  hparams = dict(_OPTIMIZER_HPARAMS[name])
  if name == "adamw":
    hparams["weight_decay"] = trial.suggest_float("optimizer.hparams.weight_decay", 1e-5, 1e-2, log=True)
  config.optimizer.hparams = ml_collections.ConfigDict(hparams)
  return config


def regularization(trial: Any, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """An L2 penalty (off, or log-uniform over [1e-6, 1e-2]) and the model's dropout rate in [0, 0.6] where its
  model has one (``mlp``, ``cnn_small``, …: a ``dropout`` option)."""
  if trial.suggest_categorical("regularizer.l2", [False, True]):
    config.regularizer = f"l2:{trial.suggest_float('regularizer.l2_strength', 1e-6, 1e-2, log=True):.3g}"
  else:
    config.regularizer = ""
  from jdl import models  # pylint: disable=g-import-not-at-top

  if "dropout" in models.model_options(config.model.name):
    config.model.options.dropout = trial.suggest_float("model.options.dropout", 0.0, 0.6)
  return config


def augmentation(trial: Any, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Image augmentation (``config.augment``): none, shifts, shifts and flips, or shifts and cutout."""
  config.augment = trial.suggest_categorical("augment", ["", "crop:2", "crop:2,flip", "crop:2,cutout:8"])
  return config


augmentation.grid = {"augment": ["", "crop:2", "crop:2,flip", "crop:2,cutout:8"]}


def mlp(trial: Any, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """An ``mlp``'s shape: 1-3 hidden layers of 64-1024 units (powers of two), dropout in [0, 0.5], and the
  learning rate as in ``learning_rate``."""
  if config.model.name != "mlp":
    raise ValueError(f"space 'mlp': expected an experiment whose model.name is 'mlp', got {config.model.name!r}")
  depth = trial.suggest_int("model.options.depth", 1, 3)
  width = trial.suggest_int("model.options.width", 64, 1024, log=True)
  width = 1 << round(np.log2(width))
  config.model.options.hidden = tuple([width] * depth)
  config.model.options.dropout = trial.suggest_float("model.options.dropout", 0.0, 0.5)
  return learning_rate(trial, config)


SPACES: dict[str, SpaceFn] = {
    "learning_rate": learning_rate,
    "optimizer": optimizer,
    "regularization": regularization,
    "augmentation": augmentation,
    "mlp": mlp,
}
