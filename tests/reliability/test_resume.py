"""``--resume`` continues the run on disk: its own config, safe overrides only, finished runs left alone."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import _runs
from jdl import cli
from jdl.train import callbacks as callbacks_lib
from jdl.train import workdir as workdir_lib

# A small run of the default experiment, as a user would type it.
ARGS = ["--config.model.options.hidden=(32,)", "--config.data.batch_size=64", "--config.data.eval_batch_size=100",
        "--config.optimizer.schedule.name=constant", "--config.progress=false", "--config.plot=false",
        "--config.checkpoint.every_seconds=0"]  # every epoch: the tests kill runs between epochs


def _train(workdir, *extra, resume=False):
  argv = ["train", "mlp_fashion_mnist", "--workdir", str(workdir), *ARGS, *extra]
  return cli.main(argv + (["--resume"] if resume else []))


def _resume(workdir, *extra):
  """What a requeued job runs: the experiment, the workdir and --resume, plus ``extra``."""
  return cli.main(["train", "mlp_fashion_mnist", "--workdir", str(workdir), "--resume", *extra])


def _die_after(monkeypatch, epoch_to_die, *, before_save=False):
  """Makes the next run stop with a KeyboardInterrupt at the end of ``epoch_to_die``."""
  saving = callbacks_lib.ModelCheckpoint.on_epoch_end

  def save_then_die(self, run, epoch, logs):
    if not (before_save and epoch == epoch_to_die):
      saving(self, run, epoch, logs)
    if epoch == epoch_to_die:
      self.checkpointer.wait()
      raise KeyboardInterrupt(f"simulated interruption after epoch {epoch}")

  monkeypatch.setattr(callbacks_lib.ModelCheckpoint, "on_epoch_end", save_then_die)
  return lambda: monkeypatch.setattr(callbacks_lib.ModelCheckpoint, "on_epoch_end", saving)


_params, _summary, _epochs_logged = _runs.params, _runs.summary, _runs.epochs_logged


def test_resume_with_no_overrides_continues_the_run_as_it_was_started(tiny_data, tmp_path, monkeypatch):
  # Started with overrides the experiment file does not have (another optimizer, 4 epochs) ...
  started = ["--config.epochs=4", "--config.optimizer.name=adam"]
  assert _train(tmp_path / "straight", *started) == 0
  restore = _die_after(monkeypatch, 2)
  assert _train(tmp_path / "cut", *started) == 130  # the CLI's status for Ctrl-C
  restore()
  # ... and resumed with the plain command: the run's own config.json decides.
  assert _resume(tmp_path / "cut") == 0
  straight, resumed = _summary(tmp_path / "straight"), _summary(tmp_path / "cut")
  assert resumed["config"]["optimizer"]["name"] == "adam" and resumed["epochs_completed"] == 4
  assert resumed["test_loss"] == straight["test_loss"]
  assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
  (ea, pa), (eb, pb) = _params(tmp_path / "straight"), _params(tmp_path / "cut")
  assert ea == eb == 4
  jax.tree.map(np.testing.assert_array_equal, pa, pb)
  assert _epochs_logged(tmp_path / "cut") == [1, 2, 3, 4]
  # The whole run's training time and throughput, both parts of it counted.
  assert resumed["train_seconds"] == pytest.approx(sum(h["epoch_seconds"] for h in resumed["history"]))
  assert resumed["examples_per_second"] > 0


def test_resume_with_more_epochs_trains_on(tiny_data, tmp_path, capsys):
  assert _train(tmp_path / "run", "--config.epochs=2") == 0
  assert _resume(tmp_path / "run", "--config.epochs=3") == 0
  summary = _summary(tmp_path / "run")
  assert summary["epochs_completed"] == 3 and summary["config"]["epochs"] == 3
  assert _epochs_logged(tmp_path / "run") == [1, 2, 3]
  assert json.loads((tmp_path / "run" / "config.json").read_text())["epochs"] == 3
  assert "resuming the run" in capsys.readouterr().err


def test_resume_refuses_a_change_of_what_the_run_computes_naming_it(tiny_data, tmp_path, capsys):
  assert _train(tmp_path / "run", "--config.epochs=2") == 0
  before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
  assert _resume(tmp_path / "run", "--config.epochs=3", "--config.optimizer.name=sgd",
                 "--config.optimizer.learning_rate=0.5") == 2
  err = capsys.readouterr().err
  assert "optimizer.name ('rmsprop' on disk, 'sgd' now)" in err
  assert "optimizer.learning_rate (0.001 on disk, 0.5 now)" in err
  assert "epochs" not in err.split("change what it computes:")[1].split(";")[0]  # a safe change is not blamed
  assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()} == before


def test_a_finished_run_resumed_is_left_byte_for_byte(tiny_data, tmp_path, capsys):
  assert _train(tmp_path / "run", "--config.epochs=2") == 0
  files = sorted(p for p in (tmp_path / "run").rglob("*") if p.is_file())
  before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
  capsys.readouterr()
  # Also with an experiment default (5 epochs) above the run's: the run's own config decides.
  assert _resume(tmp_path / "run") == 0
  captured = capsys.readouterr()
  assert "is complete (2 epochs" in captured.err and "test_accuracy=" in captured.out
  assert sorted(p for p in (tmp_path / "run").rglob("*") if p.is_file()) == files
  assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before


def test_resume_refuses_fewer_epochs_than_the_run_has_done(tiny_data, tmp_path, capsys, monkeypatch):
  restore = _die_after(monkeypatch, 2)
  assert _train(tmp_path / "run", "--config.epochs=3") == 130  # the CLI's status for Ctrl-C
  restore()
  assert _resume(tmp_path / "run", "--config.epochs=1") == 2
  assert "has trained 2 epochs; epochs=1 would end before that" in capsys.readouterr().err


def test_killed_before_its_first_checkpoint_the_same_command_starts_over(tiny_data, tmp_path, monkeypatch, capsys):
  restore = _die_after(monkeypatch, 1, before_save=True)
  assert _train(tmp_path / "run", "--config.epochs=2") == 130  # the CLI's status for Ctrl-C
  restore()
  assert not workdir_lib.checkpoint_epochs(tmp_path / "run")
  assert _epochs_logged(tmp_path / "run") == [1]  # logged, but never checkpointed
  # The requeued job's command line (with --resume) and a plain rerun both work.
  assert _train(tmp_path / "run", "--config.epochs=2", resume=True) == 0
  assert "no checkpoint yet; starting the run again from step 0" in capsys.readouterr().err
  assert _epochs_logged(tmp_path / "run") == [1, 2]
  assert _summary(tmp_path / "run")["epochs_completed"] == 2


def test_resume_of_a_missing_workdir_starts_a_new_run(tiny_data, tmp_path, capsys):
  assert _train(tmp_path / "new", "--config.epochs=1", resume=True) == 0
  assert "holds no run yet; starting a new run" in capsys.readouterr().err
  assert _summary(tmp_path / "new")["epochs_completed"] == 1


def test_a_run_that_failed_before_training_is_reused_by_a_plain_rerun(tiny_data, tmp_path, capsys):
  # A run that failed before its first epoch (here: killed right after writing its config).
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "config.json").write_text(json.dumps({"name": "mlp_fashion_mnist"}))
  (tmp_path / "run" / "metrics.jsonl").write_text("")
  assert _train(tmp_path / "run", "--config.epochs=1") == 0
  assert "never finished an epoch" in capsys.readouterr().err
  assert _summary(tmp_path / "run")["epochs_completed"] == 1


def test_resume_in_another_experiments_workdir_says_so(tiny_data, tmp_path, capsys):
  assert _train(tmp_path / "run", "--config.epochs=1") == 0
  assert cli.main(["train", "mnist1d_logreg", "--workdir", str(tmp_path / "run"), "--resume"]) == 2
  err = capsys.readouterr().err
  assert "holds a run of the experiment 'mlp_fashion_mnist', not 'mnist1d_logreg'" in err
  assert "jdl train mlp_fashion_mnist --workdir" in err


def test_files_jdl_did_not_write_are_never_taken_for_a_run(tiny_data, tmp_path, capsys):
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "notes.txt").write_text("mine")
  for resume in (False, True):
    assert _train(tmp_path / "run", "--config.epochs=1", resume=resume) == 2
    assert "files jdl did not write (notes.txt)" in capsys.readouterr().err
  assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["notes.txt"]


def test_a_live_lock_is_refused_and_a_stale_one_taken_over(tiny_data, tmp_path, capsys):
  run = tmp_path / "run"
  # Another process holds the workdir (as a running jdl train would).
  holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from jdl.train.workdir import RunLock
RunLock({str(run)!r}).acquire()
print("locked", flush=True)
time.sleep(120)
"""], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    assert _train(run, "--config.epochs=1") == 2
    assert f"in use by another jdl process (pid {holder.pid} on" in capsys.readouterr().err
    assert not (run / "config.json").exists()
  finally:
    holder.kill()  # SIGKILL: its lock file stays behind, naming a process that is gone
    holder.wait()
    holder.stdout.close()
  assert json.loads((run / "run.lock").read_text())["pid"] == holder.pid
  assert _train(run, "--config.epochs=1") == 0
  assert f"taking over the lock of {run}, left by a process that no longer runs (pid {holder.pid})" in \
      capsys.readouterr().err
  assert not (run / "run.lock").exists()
  assert _summary(run)["epochs_completed"] == 1


def test_config_from_disk_keeps_the_experiments_types(tmp_path):
  from jdl import config as config_lib

  config = config_lib.load_experiment("mlp_fashion_mnist")
  config.model.options.hidden = (32, 16)
  config.metrics = ("accuracy", "f1:macro")
  (tmp_path / "config.json").write_text(json.dumps(config_lib.to_dict(config)))
  back = workdir_lib.config_from_disk(tmp_path, config_lib.load_experiment("mlp_fashion_mnist"))
  assert back.model.options.hidden == (32, 16) and back.metrics == ("accuracy", "f1:macro")
  assert workdir_lib.differences(config_lib.to_dict(config), back) == []
  assert workdir_lib.differences({"a": {"b": 1}, "c": [1]}, {"a": {"b": 2}, "c": (1,), "d": 0}) == ["a.b", "d"]


def test_a_sparser_checkpoint_schedule_still_resumes_bitwise(tiny_data, tmp_path, monkeypatch):
  # A clock that advances 10 s each time the checkpoint callback reads it: with every_seconds=25 the
  # run saves every third epoch (and the last one), not every epoch.
  clock = iter(range(0, 10_000, 10))
  monkeypatch.setattr(callbacks_lib.ModelCheckpoint, "clock", staticmethod(lambda: next(clock)))
  sparse = ["--config.epochs=6", "--config.checkpoint.every_seconds=25"]
  assert _train(tmp_path / "straight", *sparse) == 0
  clock = iter(range(0, 10_000, 10))
  restore = _die_after(monkeypatch, 5)  # killed after epoch 5: the last checkpoint is epoch 3's
  assert _train(tmp_path / "cut", *sparse) == 130  # the CLI's status for Ctrl-C
  restore()
  assert workdir_lib.checkpoint_epochs(tmp_path / "cut")[-1] == 3
  assert _epochs_logged(tmp_path / "cut") == [1, 2, 3, 4, 5]
  assert _resume(tmp_path / "cut") == 0  # repeats epochs 4 and 5, then trains 6
  (ea, pa), (eb, pb) = _params(tmp_path / "straight"), _params(tmp_path / "cut")
  assert ea == eb == 6
  jax.tree.map(np.testing.assert_array_equal, pa, pb)
  assert _summary(tmp_path / "cut")["test_loss"] == _summary(tmp_path / "straight")["test_loss"]
  assert _epochs_logged(tmp_path / "cut") == [1, 2, 3, 4, 5, 6]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # Orbax's async after a failed read
def test_an_unreadable_latest_checkpoint_falls_back_to_the_one_before(tiny_data, tmp_path, monkeypatch, capsys):
  assert _train(tmp_path / "straight", "--config.epochs=3") == 0
  restore = _die_after(monkeypatch, 2)
  assert _train(tmp_path / "cut", "--config.epochs=3") == 130
  restore()
  for f in (tmp_path / "cut" / "checkpoints" / "2" / "state" / "d").iterdir():  # a data file cut short
    f.write_bytes(f.read_bytes()[:10])
  capsys.readouterr()
  assert _resume(tmp_path / "cut") == 0
  err = capsys.readouterr().err
  assert "checkpoint 2 in" in err and "cannot be read" in err and "falling back to checkpoint 1" in err
  assert (tmp_path / "cut" / "checkpoints" / "2.unreadable").is_dir()  # set aside, not deleted
  (_, a), (_, b) = _params(tmp_path / "straight"), _params(tmp_path / "cut")
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert _epochs_logged(tmp_path / "cut") == [1, 2, 3]


def test_a_run_from_before_a_new_config_field_still_resumes(tiny_data, tmp_path, monkeypatch):
  restore = _die_after(monkeypatch, 1)
  assert _train(tmp_path / "run", "--config.epochs=2") == 130
  restore()
  config = json.loads((tmp_path / "run" / "config.json").read_text())
  del config["nonfinite"], config["checkpoint"]["every_seconds"]  # fields a newer jdl added
  (tmp_path / "run" / "config.json").write_text(json.dumps(config))
  assert _resume(tmp_path / "run") == 0
  assert _summary(tmp_path / "run")["epochs_completed"] == 2


def test_a_run_records_its_data_and_refuses_to_resume_on_other_data(tiny_data, tmp_path, monkeypatch, capsys):
  run = tmp_path / "run"
  assert _train(run, "--config.epochs=1") == 0
  recorded = json.loads((run / "data.json").read_text())
  assert recorded["dataset"] == "fashion_mnist" and recorded["train_split"] == "train[:90%]"
  assert recorded["splits"]["train"]["examples"] == 576 and recorded["splits"]["test"]["examples"] == 230
  assert _train(run, "--config.epochs=2", resume=True) == 0  # the same data: resumes
  # The dataset's files replaced by others (same sizes, other pixels): the run does not continue on them.
  from conftest import _tiny_images  # pylint: disable=g-import-not-at-top
  from jdl.data import write_idx  # pylint: disable=g-import-not-at-top

  other = tmp_path / "other_raw"
  other.mkdir()
  for prefix, n, seed in (("train", 640, 5), ("t10k", 230, 6)):
    images, labels = _tiny_images(n, seed)
    write_idx(other / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(other / f"{prefix}-labels-idx1-ubyte.gz", labels)
  monkeypatch.setenv("JDL_DATA_DIR", str(other))
  monkeypatch.setenv("JDL_TFDS_DIR", str(tmp_path / "other_tfds"))
  before = (run / "metrics.jsonl").read_text()
  capsys.readouterr()
  assert _train(run, "--config.epochs=3", resume=True) == 2
  err = capsys.readouterr().err
  assert "--resume: the data of the run in" in err and "has changed since it started: train ('train[:90%]': 576" in err, err
  assert (run / "metrics.jsonl").read_text() == before
