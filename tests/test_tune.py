"""jdl tune: Optuna studies of jdl train runs, in a real SQLite database; killed, resumed, pruned, reported."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from jdl import cli
from jdl import config as config_lib
from jdl import tune

SMALL = [("model.options.hidden", "(8,)"), ("data.batch_size", "64"), ("data.eval_batch_size", "64"),
         ("checkpoint.every_seconds", "0"), ("epochs", "2"), ("tensorboard", "false")]

SPACE = '''
def space(trial, config):
  config.optimizer.learning_rate = trial.suggest_float("optimizer.learning_rate", 1e-4, 1e-1, log=True)
  return config

space.grid = {"optimizer.learning_rate": [1e-3, 1e-2]}


def by_number(trial, config):
  """Trial 0 learns, trial 1 cannot (a learning rate of 1e-9: pruned), trial 2 diverges (failed)."""
  name, lr = [("rmsprop", 1e-2), ("rmsprop", 1e-9), ("sgd", 1e30)][trial.number % 3]
  config.optimizer.name = name
  config.optimizer.learning_rate = trial.suggest_float("optimizer.learning_rate", lr, lr)
  return config


def invalid(trial, config):
  config.optimizer.name = trial.suggest_categorical("optimizer.name", ["adamm"])
  return config


def returns_nothing_useful(trial, config):
  return {"optimizer.learning_rate": 0.1}
'''


@pytest.fixture
def space_file(tmp_path):
  path = tmp_path / "space.py"
  path.write_text(SPACE)
  return path


def _trials(workdir):
  storage = tune.open_storage(f"sqlite:///{workdir / tune.STUDY_DB}", heartbeat=False)
  return optuna.load_study(study_name="mlp_fashion_mnist", storage=storage).get_trials()


def _last_eval(run_dir, key="eval_accuracy"):
  return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])[key]


def test_a_study_reports_its_trials_and_the_best_one_runs_as_an_experiment(tiny_data, space_file, tmp_path, capsys):
  workdir = tmp_path / "study"
  tune.tune("mlp_fashion_mnist", str(space_file), trials=2, workdir=workdir, sampler="random", pruner="none",
            overrides=SMALL)
  trials = _trials(workdir)
  assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
  for t in trials:  # each trial is a jdl train run; its value is that run's last validation accuracy
    run_dir = workdir / "trials" / f"{t.number:04d}"
    stored = json.loads((run_dir / "config.json").read_text())
    assert stored["optimizer"]["learning_rate"] == pytest.approx(t.params["optimizer.learning_rate"])
    assert stored["data"]["eval_split"] == "train[90%:]"  # tuned on the validation split, never on test
    assert t.value == pytest.approx(_last_eval(run_dir))
  best = max(trials, key=lambda t: t.value)
  table = (workdir / "trials.md").read_text()
  assert table in capsys.readouterr().out
  head, _, *rows = table.strip().splitlines()
  assert head == "| trial | state | eval_accuracy | epochs | seconds | optimizer.learning_rate | run |"
  assert len(rows) == 2 and rows[best.number].startswith(f"| **{best.number}** | **complete** | **{best.value:.4f}**")
  for name in ("history.png", "importances.png", "intermediate.png"):
    assert (workdir / name).stat().st_size > 1000
  config = config_lib.load_experiment(str(workdir / "best_experiment.py"))
  assert config.optimizer.learning_rate == best.params["optimizer.learning_rate"]
  assert config.model.options.hidden == (8,) and config.epochs == 2  # the study's overrides come along


def test_pruned_and_diverging_trials_are_recorded_and_the_study_goes_on(tiny_data, space_file, tmp_path):
  workdir = tmp_path / "study"
  tune.tune("mlp_fashion_mnist", f"{space_file}:by_number", trials=3, workdir=workdir, pruner="median:1:0",
            overrides=SMALL)
  states = optuna.trial.TrialState
  good, slow, diverged = _trials(workdir)
  assert good.state == states.COMPLETE
  assert slow.state == states.PRUNED and slow.user_attrs["epochs"] == 1  # stopped after its first epoch
  assert slow.intermediate_values[1] < good.intermediate_values[1]
  assert diverged.state == states.FAIL and diverged.user_attrs["failure"].startswith("training diverged: train_loss is nan")
  assert "| 2 | failed: " in (workdir / "trials.md").read_text()


def test_a_study_is_never_overwritten_and_resumes_only_as_it_was_started(tiny_data, space_file, tmp_path):
  workdir = tmp_path / "study"
  tune.tune("mlp_fashion_mnist", str(space_file), trials=1, workdir=workdir, overrides=SMALL)
  before = (workdir / "study.db").read_bytes()
  with pytest.raises(FileExistsError, match="already has 1 trials; --resume continues it, --overwrite"):
    tune.tune("mlp_fashion_mnist", str(space_file), trials=1, workdir=workdir, overrides=SMALL)
  with pytest.raises(ValueError, match=r"--resume: the study was started with other settings; space: .*learning_rate"):
    tune.tune("mlp_fashion_mnist", "learning_rate", trials=2, workdir=workdir, overrides=SMALL, resume=True)
  with pytest.raises(ValueError, match=r"metric: 'eval_accuracy' \(stored\) vs 'eval_loss'"):
    tune.tune("mlp_fashion_mnist", str(space_file), trials=2, workdir=workdir, overrides=SMALL, resume=True,
              metric="eval_loss")
  assert (workdir / "study.db").read_bytes() == before
  tune.tune("mlp_fashion_mnist", str(space_file), trials=2, workdir=workdir, overrides=SMALL, resume=True)
  first, second = _trials(workdir)
  # A resumed search draws new points (its sampler does not start its random sequence again).
  assert second.params["optimizer.learning_rate"] != first.params["optimizer.learning_rate"]
  with pytest.raises(ValueError, match="--resume: no study 'mlp_fashion_mnist'"):
    tune.tune("mlp_fashion_mnist", str(space_file), trials=1, workdir=tmp_path / "other", overrides=SMALL, resume=True)
  tune.tune("mlp_fashion_mnist", str(space_file), trials=1, workdir=workdir, overrides=SMALL, overwrite=True,
            sampler="grid")
  assert [t.number for t in _trials(workdir)] == [0]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"space": "nope"}, ValueError, "--space: unknown space 'nope'; shipped spaces: learning_rate, optimizer"),
    ({"space": "missing.py"}, FileNotFoundError, "--space: no file missing.py"),
    ({"space": "{file}:absent"}, ValueError, "defines no function 'absent'"),
    ({"sampler": "bayes"}, ValueError, "--sampler: expected one of tpe, random, grid, qmc, got 'bayes'"),
    ({"pruner": "median:x"}, ValueError, "--pruner: STARTUP and WARMUP are whole numbers"),
    ({"pruner": "asha"}, ValueError, "--pruner: expected median[:STARTUP[:WARMUP]], halving, hyperband or none"),
    ({"trials": 0}, ValueError, "--trials: expected a whole number >= 1, got 0"),
    ({"jobs": 0}, ValueError, "--jobs: expected a whole number >= 1, got 0"),
    ({"metric": "test_accuracy"}, ValueError, "one of eval_loss, eval_accuracy, got 'test_accuracy' (tuning never"),
    ({"space": "{file}:by_number", "sampler": "grid"}, ValueError, "--sampler grid: the space '.*by_number' has no grid"),
    ({"storage": "sqlite:////nonexistent/dir/study.db"}, ValueError, "--storage: cannot open the study database"),
    ({"storage": "nosuchdb://host/db"}, ValueError, "--storage: cannot open the study database 'nosuchdb://host/db'"),
    ({"space": "{file}:invalid"}, ValueError, r"space '.*invalid' made an invalid config in trial 0 .*adamm"),
    ({"space": "{file}:returns_nothing_useful"}, TypeError, "expected it to return the ml_collections.ConfigDict"),
])
def test_bad_input_is_a_clear_error(tiny_data, space_file, tmp_path, kwargs, error, message):
  kwargs = {"space": str(space_file), "trials": 1, **kwargs}
  kwargs["space"] = kwargs["space"].format(file=space_file)
  import re  # pylint: disable=g-import-not-at-top

  with pytest.raises(error, match=message if ".*" in message else re.escape(message)):
    tune.tune("mlp_fashion_mnist", workdir=tmp_path / "study", overrides=SMALL, **kwargs)
  assert not (tmp_path / "study" / "trials").exists()  # nothing trained


def test_the_shipped_spaces_write_valid_configs():
  for name, fn in tune.spaces_lib.SPACES.items():
    config = config_lib.load_experiment("mlp_fashion_mnist")
    trial = optuna.trial.FixedTrial({
        "optimizer.learning_rate": 3e-3, "optimizer.name": "adamw", "optimizer.learning_rate[adamw]": 3e-3,
        "optimizer.hparams.weight_decay": 1e-4, "regularizer.l2": True, "regularizer.l2_strength": 1e-4,
        "model.options.dropout": 0.25, "augment": "crop:2,flip", "model.options.depth": 2,
        "model.options.width": 300})
    config = fn(trial, config)
    config_lib.check(config)
    assert {"learning_rate": config.optimizer.learning_rate == 3e-3,
            "optimizer": config.optimizer.name == "adamw" and config.optimizer.hparams.weight_decay == 1e-4,
            "regularization": config.regularizer == "l2:0.0001" and config.model.options.dropout == 0.25,
            "augmentation": config.augment == "crop:2,flip",
            "mlp": config.model.options.hidden == (256, 256)}[name], name
  grid = tune.load_space("learning_rate").grid_for(config_lib.load_experiment("mlp_fashion_mnist"))
  assert grid["optimizer.learning_rate"] == pytest.approx([1e-4, 1e-3 / 10 ** 0.5, 1e-3, 1e-3 * 10 ** 0.5, 1e-2])


def _complete(workdir):
  try:
    return any(t.state == optuna.trial.TrialState.COMPLETE for t in _trials(workdir))
  except (KeyError, ValueError):  # no database or no study yet
    return False


def test_a_killed_search_with_two_workers_resumes_without_repeating_finished_trials(tiny_data, space_file, tmp_path):
  workdir = tmp_path / "study"
  overrides = [f"--config.{k}={v}" for k, v in SMALL if k != "epochs"] + ["--config.epochs=5"]
  command = [sys.executable, "-m", "jdl.cli", "tune", "mlp_fashion_mnist", "--space", str(space_file),
             "--trials", "3", "--jobs", "2", "--workdir", str(workdir), "--sampler", "random", "--pruner", "none",
             *overrides]
  with subprocess.Popen(command, env=os.environ, start_new_session=True, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE) as process:
    deadline = time.monotonic() + 240
    while not _complete(workdir):  # a trial finished
      assert process.poll() is None, process.stderr.read().decode()
      assert time.monotonic() < deadline
      time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)  # the parent and both workers, as a killed job
    process.wait()
  states = optuna.trial.TrialState
  killed = _trials(workdir)
  finished = {t.number: (t.value, (workdir / "trials" / f"{t.number:04d}" / "summary.json").stat().st_mtime_ns)
              for t in killed if t.state == states.COMPLETE}
  running = [t.number for t in killed if t.state == states.RUNNING]
  assert finished and len(finished) < 3
  assert cli.main(["tune", "mlp_fashion_mnist", "--space", str(space_file), "--trials", "3", "--workdir", str(workdir),
                   "--resume", "--sampler", "random", "--pruner", "none", *overrides]) == 0
  after = _trials(workdir)
  for number, (value, mtime) in finished.items():  # kept, not run again
    assert after[number].value == value
    assert (workdir / "trials" / f"{number:04d}" / "summary.json").stat().st_mtime_ns == mtime
  for number in running:  # cut short: failed, and drawn again in their place
    assert after[number].state == states.FAIL and after[number].user_attrs["interrupted"]
  assert len([t for t in after if t.state == states.COMPLETE]) == 3
  assert len(after) == 3 + len(running)


def test_figures_are_skipped_with_a_note_when_optuna_cannot_draw_them(tmp_path, capsys):
  study = optuna.create_study(direction="maximize")
  for x in (0.1, 0.5, 0.9):  # every trial scores the same: fANOVA has no variance to split
    study.add_trial(optuna.trial.create_trial(params={"x": x}, value=0.5,
                                              distributions={"x": optuna.distributions.FloatDistribution(0, 1)}))
  written = tune.plots(study, tmp_path)
  assert set(written) == {"history"} and (tmp_path / "history.png").is_file()
  assert "jdl tune: no importances.png:" in capsys.readouterr().out
