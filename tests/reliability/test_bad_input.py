"""Malformed input, systematically: every case gets a clear error before compiling, and leaves nothing
that a later command takes for a complete run (docs/errors.md lists what a user sees and what to do)."""

import dataclasses
import errno
import gzip
import json
import os
import shutil
from collections.abc import Callable

import jax
import numpy as np
import pytest

from jdl import cli
from jdl import config as config_lib
from jdl.data import transforms
from jdl.train import workdir as workdir_lib

SMALL = ["--config.model.options.hidden=(8,)", "--config.data.batch_size=64", "--config.data.eval_batch_size=100",
         "--config.progress=false", "--config.plot=false", "--config.epochs=1", "--config.checkpoint.every_seconds=0"]


@transforms.register("label_twelve_for_tests")
def _label_twelve(arrays):
  return {**arrays, "label": np.where(np.arange(len(arrays["label"])) == 3, 12, arrays["label"])}


@transforms.register("nan_input_for_tests")
def _nan_input(arrays):
  inputs = np.array(arrays["inputs"], copy=True)
  inputs[5, 2] = np.nan
  return {**arrays, "inputs": inputs}


@transforms.register("inf_input_for_tests")
def _inf_input(arrays):
  inputs = np.array(arrays["inputs"], copy=True)
  inputs[7, 0] = -np.inf
  return {**arrays, "inputs": inputs}


@dataclasses.dataclass
class Case:
  id: str
  argv: list[str]  # after `jdl train`
  fragments: list[str]  # all must appear in the one error line
  setup: Callable[..., None] | None = None  # (tmp_path, monkeypatch) -> None, before the command
  before_compile: bool = True  # the error comes before anything is compiled
  code: int = 2
  orbax_async: bool = False  # Orbax's asyncio callbacks may outlive its event loop (see _ORBAX_ASYNC)


def _exp(name="mlp_fashion_mnist"):
  return [name, *SMALL]


# The digits, as a 10-class classification (digits_attributes's data without its multi-label transform).
DIGITS = ("digits_attributes", "--config.data.transform=", "--config.model.options.num_classes=10",
          "--config.loss=sparse_categorical_crossentropy", "--config.metrics=()", "--config.checkpoint.monitor=")


def _tabular(name, *extra):
  return [name, "--config.progress=false", "--config.plot=false", "--config.epochs=1", *extra]


def _write(tmp_path, name, text):
  (tmp_path / name).write_text(text)


def _idx_copy(tmp_path, monkeypatch, corrupt):
  """A copy of the tiny IDX files with one of them damaged, and a fresh prepared-data directory."""
  raw = tmp_path / "raw"
  shutil.copytree(os.environ["JDL_DATA_DIR"], raw)
  corrupt(raw / "train-labels-idx1-ubyte.gz")
  monkeypatch.setenv("JDL_DATA_DIR", str(raw))
  monkeypatch.setenv("JDL_TFDS_DIR", str(tmp_path / "tfds"))


def _truncate(path):
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])


def _garbage(path):
  path.write_bytes(b"\x1f\x8b" + os.urandom(200))


def _bad_magic(path):
  data = bytearray(gzip.decompress(path.read_bytes()))
  data[0:4] = b"\x00\x00\x08\x09"  # 9 dimensions
  path.write_bytes(gzip.compress(bytes(data)))


def _run_dir(tmp_path, *extra):
  """A finished one-epoch run in tmp_path/run."""
  assert cli.main(["train", *_exp(), "--workdir", str(tmp_path / "run"), *extra]) == 0


def _corrupt_latest_checkpoint(tmp_path, what):
  ckpt = tmp_path / "run" / "checkpoints"
  latest = max(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())
  for f in (ckpt / str(latest)).glob(what):
    _truncate(f)
  (tmp_path / "run" / "summary.json").unlink()  # a run killed after its last checkpoint


def _full_disk(tmp_path, monkeypatch):
  import orbax.checkpoint as ocp

  real = ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step == 2:
      raise OSError(errno.ENOSPC, "No space left on device")
    return real(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", save)


CASES = [
    # --- the experiment and its file -------------------------------------------------------------------
    Case("unknown experiment", ["no_such_experiment"], ["unknown experiment 'no_such_experiment'",
                                                        "known experiments: breast_cancer_bce"]),
    Case("missing config file", ["{tmp}/absent.py"], ["experiment: no config file at", "absent.py"]),
    Case("empty config file", ["{tmp}/empty.py"], ["empty.py defines no get_config() function"],
         setup=lambda t, m: _write(t, "empty.py", "")),
    Case("file without get_config", ["{tmp}/noconf.py"], ["noconf.py defines no get_config() function",
                                                          "jdl.config.base_config()"],
         setup=lambda t, m: _write(t, "noconf.py", "CONFIG = 3\n")),
    Case("syntax error in the file", ["{tmp}/broken.py"], ["broken.py is not valid Python", "(line 2)"],
         setup=lambda t, m: _write(t, "broken.py", "def get_config():\n  return (\n")),
    Case("misspelt field in the experiment file", ["{tmp}/typo.py"],
         ["config: no field 'optimizer.learnig_rate' (did you mean 'learning_rate'?) (set in the experiment file)"],
         setup=lambda t, m: _write(t, "typo.py", "from jdl.config import base_config\n\ndef get_config():\n"
                                   "  c = base_config()\n  c.optimizer.learnig_rate = 0.1\n  return c\n")),
    Case("get_config returns a dict", ["{tmp}/dict.py"], ["must return an ml_collections.ConfigDict, got dict"],
         setup=lambda t, m: _write(t, "dict.py", "def get_config():\n  return {'epochs': 1}\n")),
    # --- config keys, types and values -------------------------------------------------------------------
    Case("misspelt nested key", [*_exp(), "--config.optimizer.learnig_rate=1"],
         ["no field 'optimizer.learnig_rate' (did you mean 'learning_rate'?)"]),
    Case("misspelt top-level key", [*_exp(), "--config.epoch=3"], ["no field 'epoch' (did you mean 'epochs'?)"]),
    Case("unknown group", [*_exp(), "--config.optimiser.name=adam"],
         ["no field 'optimiser' (did you mean 'optimizer'?)"]),
    Case("a value where a group is", [*_exp(), "--config.data=mnist"], ["--config.data: is a group of fields"]),
    Case("wrong type", [*_exp(), "--config.epochs=many"], ["--config.epochs: expected a value of type int, got 'many'"]),
    Case("negative epochs", [*_exp(), "--config.epochs=-1"], ["epochs: expected an integer >= 1, got -1"]),
    Case("zero batch size", [*_exp(), "--config.data.batch_size=0"], ["data.batch_size: expected an integer >= 1, got 0"]),
    Case("zero eval batch size", [*_exp(), "--config.data.eval_batch_size=0"],
         ["data.eval_batch_size: expected an integer >= 1, got 0"]),
    Case("progress word", [*_exp(), "--config.progress=maybe"], ["progress: expected 'auto', true or false, got 'maybe'"]),
    Case("bool field", [*_exp(), "--config.plot=perhaps"], ["--config.plot: expected True or False"]),
    Case("unknown dataset", [*_exp(), "--config.data.name=cifar"], ["data.name: unknown dataset 'cifar'",
                                                                   "known datasets:"]),
    Case("unknown model", [*_exp(), "--config.model.name=resnet99"], ["model.name: unknown model 'resnet99'",
                                                                     "resnet18"]),
    Case("unknown model option", [*_exp(), "--config.model.options.widht=3"],
         ["model.options:", "has no option(s) ['widht']", "its options:"]),
    Case("model option of the wrong kind", [*_exp(), "--config.model.options.hidden=abc"],
         ["model.options: model 'mlp' cannot be built", "hidden=('abc',)"]),
    Case("unknown optimizer", [*_exp(), "--config.optimizer.name=signsgd"],
         ["optimizer.name: unknown optimizer 'signsgd'", "adam", "An optimizer defined in your own file is found once the file is imported (--import FILE"]),
    Case("negative learning rate", [*_exp(), "--config.optimizer.learning_rate=-1.0"],
         ["optimizer.learning_rate: expected a number >= 0, got -1.0"]),
    Case("optimizer hyperparameter out of range", [*_exp(), "--config.optimizer.name=adam",
                                                   "--config.optimizer.hparams.b1=1.5"],
         ["adam", "b1 must be in [0, 1), got 1.5"]),
    Case("unknown optimizer hyperparameter", [*_exp(), "--config.optimizer.hparams.beta1=0.9"],
         ["beta1", "accepted arguments:"]),
    Case("unknown schedule", [*_exp(), "--config.optimizer.schedule.name=cosin"],
         ["optimizer.schedule.name: unknown schedule 'cosin'", "cosine"]),
    Case("unknown loss", [*_exp(), "--config.loss=crossentropy"], ["loss: unknown loss 'crossentropy'",
                                                                  "sparse_categorical_crossentropy"]),
    Case("unknown metric", [*_exp(), "--config.metrics=f2:macro"], ["unknown metric 'f2' in 'f2:macro'"]),
    Case("unknown precision", [*_exp(), "--config.precision=half"],
         ["precision: expected 'float32', 'mixed_bfloat16' or 'mixed_float16', got 'half'"]),
    Case("unknown strategy", [*_exp(), "--config.strategy=tpu"], ["strategy: expected one of auto, data_parallel, model_parallel, pmap, single, got 'tpu'"]),
    Case("micro-batches not dividing the batch", [*_exp(), "--config.micro_batches=3"],
         ["micro_batches: 3 does not divide data.batch_size=64"]),
    Case("unknown non-finite policy", [*_exp(), "--config.nonfinite=ignore"],
         ["nonfinite: expected one of raise, skip, stop, got 'ignore'"]),
    Case("negative checkpoint interval", [*_exp(), "--config.checkpoint.every_seconds=-1.0"],
         ["checkpoint.every_seconds: expected a number >= 0, got -1.0"]),
    Case("keep no checkpoint", [*_exp(), "--config.checkpoint.keep=0"], ["checkpoint.keep: expected an integer >= 1"]),
    Case("checkpoint monitor not logged", _tabular("diabetes_regression", "--config.checkpoint.monitor=eval_f1"),
         ["checkpoint.monitor: the run does not log 'eval_f1'; it logs eval_loss"]),
    Case("checkpoint mode against the chosen monitor",
         _tabular("diabetes_regression", "--config.checkpoint.monitor=eval_accuracy", "--config.checkpoint.mode=max"),
         ["checkpoint.mode: 'max' contradicts the monitor jdl chose", "eval_loss"]),
    Case("early-stopping mode", [*_exp(), "--config.early_stopping.mode=up"],
         ["early_stopping.mode: expected one of auto, min, max, got 'up'"]),
    # --- data -----------------------------------------------------------------------------------------------
    Case("empty eval split", [*_exp(), "--config.data.eval_split=test[:0]"],
         ["split 'test[:0]'", "selects no example"]),
    Case("empty train split", [*_exp(), "--config.data.train_split=train[:0]"],
         ["split 'train[:0]'", "selects no example"]),
    Case("split out of bounds", [*_exp(), "--config.data.eval_split=test[:120%]"],
         ["split 'test[:120%]'", "is outside a split of"]),
    Case("unknown split", [*_exp(), "--config.data.eval_split=valid"], ["has no split 'valid'; available: train, test"]),
    Case("malformed split", [*_exp(), "--config.data.train_split=train[abc]"], ["split 'train[abc]'", "cannot parse"]),
    Case("batch larger than the train split", [*_exp(), "--config.data.batch_size=5000"],
         ["data.batch_size: 5000 is larger than the 576 training examples"]),
    Case("labels out of range", _tabular(*DIGITS, "--config.data.transform=label_twelve_for_tests"),
         ["data.train_split='train[:90%]' of digits: labels range over [0, 12], expected in [0, 10)"]),
    Case("fewer classes than the labels", _tabular(*DIGITS, "--config.model.options.num_classes=2"),
         ["labels range over [0, 9], expected in [0, 2)", "model.options.num_classes"]),
    Case("NaN inputs", _tabular(*DIGITS, "--config.data.transform=nan_input_for_tests"),
         ["input values are not finite (NaN or inf), the first in example 5"]),
    Case("infinite inputs", _tabular("diabetes_regression", "--config.data.transform=inf_input_for_tests"),
         ["1 input values are not finite", "example 7"]),
    Case("truncated IDX file", _exp(), ["train-labels-idx1-ubyte.gz", "corrupt or truncated gzip data"],
         setup=lambda t, m: _idx_copy(t, m, _truncate)),
    Case("corrupt gzip file", _exp(), ["train-labels-idx1-ubyte.gz", "corrupt or truncated gzip data"],
         setup=lambda t, m: _idx_copy(t, m, _garbage)),
    Case("wrong IDX header", _exp(), ["train-labels-idx1-ubyte.gz", "announces 9 dimensions; expected a label file"],
         setup=lambda t, m: _idx_copy(t, m, _bad_magic)),
    Case("JDL_DATA_DIR that does not exist", _exp(), ["JDL_DATA_DIR=", "is not a directory"],
         setup=lambda t, m: (m.setenv("JDL_DATA_DIR", str(t / "nowhere")), m.setenv("JDL_TFDS_DIR", str(t / "tfds")))),
    Case("empty JDL_DATA_DIR", _exp(), ["JDL_DATA_DIR is set but empty"],
         setup=lambda t, m: (m.setenv("JDL_DATA_DIR", ""), m.setenv("JDL_TFDS_DIR", str(t / "tfds")))),
    # --- workdir and resume --------------------------------------------------------------------------------
    Case("workdir under /proc", [*_exp(), "--workdir", "/proc/jdl-test/run"],
         ["workdir: cannot create /proc/jdl-test/run", "/proc does not accept new directories"],
         before_compile=False),
    Case("workdir that is a file", [*_exp(), "--workdir", "{tmp}/afile"], ["workdir:", "afile exists and is not a directory"],
         setup=lambda t, m: _write(t, "afile", "x")),
    Case("resume and overwrite", [*_exp(), "--workdir", "{tmp}/run", "--resume", "--overwrite"],
         ["resume and overwrite: choose one"]),
    Case("resume without a workdir", [*_exp(), "--resume"], ["--resume needs --workdir"]),
    Case("resume changing the parameter shapes", [*_exp(), "--workdir", "{tmp}/run", "--resume",
                                                 "--config.model.options.hidden=(64,)", "--config.epochs=2"],
         ["resume: the config differs", "model.options.hidden ([8] on disk, [64] now)"],
         setup=lambda t, m: _run_dir(t)),
    Case("resume in another experiment's workdir", ["mnist1d_logreg", "--workdir", "{tmp}/run", "--resume"],
         ["holds a run of the experiment 'mlp_fashion_mnist', not 'mnist1d_logreg'"],
         setup=lambda t, m: _run_dir(t)),
    Case("resume with damaged checkpoint metadata", [*_exp(), "--workdir", "{tmp}/run", "--resume"],
         ["no readable checkpoint to restore", "JSONDecodeError", "checkpoints/1"],
         setup=lambda t, m: (_run_dir(t), _corrupt_latest_checkpoint(t, "state/_METADATA")), before_compile=False,
         orbax_async=True),
    Case("resume with a damaged checkpoint data file", [*_exp(), "--workdir", "{tmp}/run", "--resume"],
         ["no readable checkpoint to restore", "checkpoints/1"],
         setup=lambda t, m: (_run_dir(t), _corrupt_latest_checkpoint(t, "state/d/*")), before_compile=False,
         orbax_async=True),
    Case("a disk that fills during a save", [*_exp(), "--workdir", "{tmp}/run", "--config.epochs=3"],
         ["checkpoint: saving epoch 2 in", "No space left on device", "checkpoints already on disk are complete"],
         setup=_full_disk, before_compile=False, orbax_async=True),
    # --- strategy ---------------------------------------------------------------------------------------------
    Case("batch not dividing the devices", [*_exp(), "--config.strategy=data_parallel", "--config.data.batch_size=60"],
         ["data.batch_size: 60 is not divisible by the 8 devices"]),
    Case("model-parallel axis larger than the devices", [*_exp(), "--config.strategy=model_parallel",
                                                        "--config.model_parallel.axis_size=16"],
         ["model_axis_size: 16 does not divide the 8 devices"]),
]


def test_the_table_has_forty_cases_or_more():
  assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


# A restore or save that fails inside TensorStore may leave Orbax's asyncio callbacks to a closed event loop
# (a race: it depends on when the background thread's futures finish); Python reports them as unraisable
# exceptions, which the strict settings would turn into errors. The files on disk are checked either way.
_ORBAX_ASYNC = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[_ORBAX_ASYNC] if c.orbax_async else [])
                                  for c in CASES])
def test_bad_input_gets_a_clear_error_and_leaves_nothing_half_written(case, tiny_data, tmp_path, monkeypatch, capsys):
  if case.setup is not None:
    case.setup(tmp_path, monkeypatch)
  capsys.readouterr()
  argv = [a.replace("{tmp}", str(tmp_path)) for a in case.argv]
  if "--workdir" not in argv and "--resume" not in argv:
    argv += ["--workdir", str(tmp_path / "new")]
  existed = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file() and "run" in p.parts}
  if case.before_compile:
    def no_compiling(*args, **kwargs):
      raise AssertionError("compiled before the error")

    monkeypatch.setattr(jax.stages.Lowered, "compile", no_compiling)
  code = cli.main(["train", *argv])
  err = capsys.readouterr().err
  assert code == case.code, err
  lines = [line for line in err.splitlines() if line.startswith("jdl train: error:")]
  assert len(lines) == 1, err
  for fragment in case.fragments:
    assert fragment in lines[0], (fragment, lines[0])
  assert "Traceback" not in err
  # Nothing half-written: a new workdir is either absent or one a plain rerun reuses.
  new = tmp_path / "new"
  if new.exists():
    plan = workdir_lib.plan(new, config_lib.load_experiment("mlp_fashion_mnist"), resume=False, overwrite=False)
    assert plan.mode == workdir_lib.NEW and not (new / "summary.json").exists()
  # An existing run keeps its files (except what its setup changed); a failed resume does not rewrite them.
  for path, mtime in existed.items():
    # Only a run that really continued may rewrite its config and metrics (the disk-full case trains on).
    rewritable = ("metrics.jsonl", "config.json") if case.id == "a disk that fills during a save" else ()
    if path.exists() and path.name not in rewritable + ("run.lock",):
      assert path.stat().st_mtime_ns == mtime, path
  if (tmp_path / "run").exists() and case.id.startswith("resume"):
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["options"]["hidden"] == [8]
