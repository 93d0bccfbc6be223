"""Experiment runs end to end: config → data → fit → checkpoints → summary, and the CLI."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jdl import cli
from jdl import config as config_lib
from jdl.checkpoint import Checkpointer
from jdl.train import callbacks as callbacks_lib
from jdl.train import experiment


def _config(**overrides):
  config = config_lib.load_experiment("mlp_fashion_mnist")
  config.name = "tiny"
  config.model.options.hidden = (32,)
  config.data.batch_size = 64
  config.data.eval_batch_size = 100
  config.optimizer.schedule.name = "constant"
  config.progress = "false"
  config.epochs = 4
  config.checkpoint.every_seconds = 0.0  # every epoch
  for key, value in overrides.items():
    config_lib.apply_override(config, key, value)
  return config


def _final_params(workdir):
  ckpt = Checkpointer(workdir / "checkpoints")
  epoch = ckpt.latest_epoch()
  path = workdir / "checkpoints" / str(epoch) / "state"
  ckpt.close()
  import orbax.checkpoint as ocp

  with ocp.StandardCheckpointer() as restorer:
    return epoch, restorer.restore(path)


def test_run_writes_summary_metrics_curves_and_checkpoints(tiny_data, tmp_path):
  summary = experiment.train_and_evaluate(_config(), tmp_path / "run")
  run = tmp_path / "run"
  assert summary["test_accuracy"] > 0.9
  on_disk = json.loads((run / "summary.json").read_text())
  for key in ("test_accuracy", "test_loss", "examples_per_second", "train_seconds", "compile_seconds",
              "config", "environment"):
    assert key in on_disk
  assert on_disk["environment"]["jax"] == jax.__version__
  assert on_disk["config"]["optimizer"]["name"] == "rmsprop"
  lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
  assert [line["epoch"] for line in lines] == [1, 2, 3, 4]
  assert lines[-1]["eval_accuracy"] == pytest.approx(summary["test_accuracy"])  # eval split is test here
  assert (run / "curves.png").stat().st_size > 1000
  # keep=3 most recent (2, 3, 4) plus the best by eval_accuracy.
  ckpt = Checkpointer(run / "checkpoints")
  assert set(ckpt.all_epochs()) >= {2, 3, 4}
  ckpt.close()


def test_interrupted_run_resumes_to_the_uninterrupted_result_bitwise(tiny_data, tmp_path, monkeypatch):
  straight = experiment.train_and_evaluate(_config(), tmp_path / "straight")

  saving = callbacks_lib.ModelCheckpoint.on_epoch_end

  def save_then_die(self, run, epoch, logs):
    saving(self, run, epoch, logs)
    if epoch == 2:
      self.checkpointer.wait()
      raise KeyboardInterrupt("simulated interruption after epoch 2")

  monkeypatch.setattr(callbacks_lib.ModelCheckpoint, "on_epoch_end", save_then_die)
  with pytest.raises(KeyboardInterrupt):
    experiment.train_and_evaluate(_config(), tmp_path / "cut")
  monkeypatch.setattr(callbacks_lib.ModelCheckpoint, "on_epoch_end", saving)
  assert not (tmp_path / "cut" / "summary.json").exists()

  with pytest.raises(FileExistsError, match="--resume"):
    experiment.train_and_evaluate(_config(), tmp_path / "cut")
  resumed = experiment.train_and_evaluate(_config(), tmp_path / "cut", resume=True)

  assert resumed["test_loss"] == straight["test_loss"]
  assert resumed["test_accuracy"] == straight["test_accuracy"]
  assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
  epoch_a, params_a = _final_params(tmp_path / "straight")
  epoch_b, params_b = _final_params(tmp_path / "cut")
  assert epoch_a == epoch_b == 4
  jax.tree.map(np.testing.assert_array_equal, params_a, params_b)
  lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


def test_early_stopping_in_a_run_restores_the_best_epoch(tiny_data, tmp_path):
  config = _config(**{"early_stopping.enabled": "True", "early_stopping.monitor": "eval_loss",
                      "early_stopping.patience": "1", "early_stopping.min_delta": "10.0", "epochs": "6",
                      "data.eval_split": "test"})
  summary = experiment.train_and_evaluate(config, tmp_path / "run")
  assert summary["stopped_early"] and summary["epochs_completed"] == 2
  assert summary["best_epoch"] == 1
  # The test metrics are those of epoch 1's state, the best one.
  assert summary["test_loss"] == pytest.approx(summary["history"][0]["eval_loss"], rel=1e-6)


def test_workdir_is_never_overwritten_unless_asked(tiny_data, tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "notes.txt").write_text("mine")
  with pytest.raises(FileExistsError, match="already holds files jdl did not write"):
    experiment.train_and_evaluate(_config(epochs="1"), workdir)
  assert (workdir / "notes.txt").read_text() == "mine"
  with pytest.raises(ValueError, match="resume and overwrite"):
    experiment.train_and_evaluate(_config(epochs="1"), workdir, resume=True, overwrite=True)
  experiment.train_and_evaluate(_config(**{"epochs": "1"}), workdir, overwrite=True)
  assert not (workdir / "notes.txt").exists() and (workdir / "summary.json").exists()
  with pytest.raises(FileExistsError, match="already holds a run; pass --resume"):
    experiment.train_and_evaluate(_config(epochs="1"), workdir)


USER_EXPERIMENT = """
import flax.linen as nn
import jdl.models
from jdl.config import base_config


@jdl.models.register("user_tiny_net")
class UserTinyNet(nn.Module):
  num_classes: int
  width: int = 16

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_classes)(nn.relu(nn.Dense(self.width)(x)))


def get_config():
  config = base_config()
  config.model.name = "user_tiny_net"
  config.model.options.width = 8
  config.data.batch_size = 64
  config.data.eval_batch_size = 100
  config.epochs = 3
  config.progress = "false"
  return config
"""


def test_cli_trains_a_users_own_module_from_their_file(tiny_data, tmp_path, capsys):
  path = tmp_path / "my_experiment.py"
  path.write_text(textwrap.dedent(USER_EXPERIMENT))
  workdir = tmp_path / "run"
  code = cli.main(["train", str(path), "--workdir", str(workdir), "--config.model.options.width=24",
                   "--config.optimizer.learning_rate", "3e-3", "--config.checkpoint.enabled=False"])
  assert code == 0
  out = capsys.readouterr().out
  assert "test_accuracy=" in out and str(workdir) in out
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["experiment"] == "my_experiment"
  assert summary["config"]["model"] == {"name": "user_tiny_net", "options": {"width": 24}}
  assert summary["config"]["optimizer"]["learning_rate"] == 3e-3
  assert summary["test_accuracy"] > 0.8
  assert not (workdir / "checkpoints").exists()


def test_cli_reports_bad_input_clearly(tiny_data, tmp_path, capsys):
  assert cli.main(["train", "no_such_experiment"]) == 2
  assert "unknown experiment 'no_such_experiment'; known experiments:" in capsys.readouterr().err
  assert cli.main(["train", "mlp_fashion_mnist", "--config.optimizer.learnig_rate=1"]) == 2
  err = capsys.readouterr().err
  assert "no field 'optimizer.learnig_rate'" in err and "learning_rate" in err
  assert cli.main(["train", "mlp_fashion_mnist", "--config.epochs=many"]) == 2
  assert "--config.epochs: expected a value of type int, got 'many'" in capsys.readouterr().err
  with pytest.raises(SystemExit, match="unrecognised argument '--epochs=3'"):
    cli.main(["train", "mlp_fashion_mnist", "--epochs=3"])


def test_the_jdl_command_runs_as_a_program(tiny_data, tmp_path):
  jdl_bin = os.path.join(os.path.dirname(sys.executable), "jdl")
  env = dict(os.environ)
  out = subprocess.run([jdl_bin, "train", "mlp_fashion_mnist", "--workdir", str(tmp_path / "run"),
                        "--config.epochs=1", "--config.model.options.hidden=(16,)", "--config.data.batch_size=64"],
                       capture_output=True, text=True, env=env, timeout=300, check=False)
  assert out.returncode == 0, out.stderr
  assert "test_accuracy=" in out.stdout
  assert json.loads((tmp_path / "run" / "summary.json").read_text())["epochs_completed"] == 1


def test_mlp_from_scratch_lesson_trains(tiny_data):
  import importlib.util

  path = config_lib.find_experiment("mlp_from_scratch")
  spec = importlib.util.spec_from_file_location("mlp_from_scratch", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert module.main(["--epochs", "3"]) > 0.9
