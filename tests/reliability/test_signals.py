"""SIGTERM and Ctrl-C: a checkpoint at the next chunk boundary, a clean exit, and an exact resume."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jdl import cli
from jdl.train import preemption
from jdl.train import workdir as workdir_lib

import _runs

# Batch 2 on all 640 tiny training examples: 320 steps an epoch, run as 10 chunks of 32 steps.
ARGS = ["--config.data.train_split=train", "--config.data.eval_split=test", "--config.model.options.hidden=(8,)", "--config.data.batch_size=2", "--config.data.eval_batch_size=100",
        "--config.optimizer.schedule.name=constant", "--config.progress=false", "--config.plot=false",
        "--config.checkpoint.every_seconds=0", "--config.epochs=2", "--config.strategy=single"]


def _train(workdir, *extra):
  return cli.main(["train", "mlp_fashion_mnist", "--workdir", str(workdir), *ARGS, *extra])


_params, _summary, _epochs_logged = _runs.params, _runs.summary, _runs.epochs_logged


def test_an_interruption_mid_epoch_saves_that_epoch_and_resumes_it_exactly(tiny_data, tmp_path, monkeypatch, capsys):
  assert _train(tmp_path / "straight") == 0
  # A signal seen at the third poll: after chunk 3 of epoch 1 (96 of 320 steps).
  polls = iter(range(1, 1000))
  with monkeypatch.context() as patch:
    patch.setattr(preemption.SignalGuard, "requested", lambda self: "SIGTERM" if next(polls) == 3 else None)
    assert _train(tmp_path / "cut") == 128 + signal.SIGTERM
  err = capsys.readouterr().err
  assert "interrupted by SIGTERM after step 96 of 320 of epoch 1; the checkpoint is saved" in err
  assert f"jdl train mlp_fashion_mnist --workdir {tmp_path / 'cut'} --resume" in err
  assert workdir_lib.checkpoint_epochs(tmp_path / "cut", workdir_lib.INTERRUPTED) == [96]
  assert not workdir_lib.checkpoint_epochs(tmp_path / "cut")  # no epoch finished
  assert not (tmp_path / "cut" / "summary.json").exists()
  assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(tmp_path / "cut"), "--resume"]) == 0
  assert "from its interrupted epoch" in capsys.readouterr().err
  straight, resumed = _summary(tmp_path / "straight"), _summary(tmp_path / "cut")
  assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
  assert resumed["test_loss"] == straight["test_loss"]
  (_, a), (_, b) = _params(tmp_path / "straight"), _params(tmp_path / "cut")
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert _epochs_logged(tmp_path / "cut") == [1, 2]
  # Once a later epoch's checkpoint is on disk the interrupted one is gone.
  assert not workdir_lib.checkpoint_epochs(tmp_path / "cut", workdir_lib.INTERRUPTED)


def test_an_interruption_at_an_epochs_end_saves_that_epoch(tiny_data, tmp_path, monkeypatch, capsys):
  polls = iter(range(1, 1000))
  # Polls: 10 chunk boundaries in epoch 1 (the 10th is the epoch's end, not an interruption point), then
  # the check after epoch 1's callbacks.
  monkeypatch.setattr(preemption.SignalGuard, "requested", lambda self: "SIGINT" if next(polls) >= 11 else None)
  assert _train(tmp_path / "run", "--config.checkpoint.every_seconds=1e9") == 128 + signal.SIGINT
  assert "interrupted by SIGINT after step 0 of 320 of epoch 2" in capsys.readouterr().err
  # every_seconds would not have saved epoch 1; the interruption did.
  assert workdir_lib.checkpoint_epochs(tmp_path / "run") == [1]
  assert _epochs_logged(tmp_path / "run") == [1]


def test_sigterm_to_the_jdl_command_exits_cleanly_and_the_same_command_resumes(tiny_data, tmp_path):
  jdl_bin = os.path.join(os.path.dirname(sys.executable), "jdl")
  workdir = tmp_path / "run"
  command = [jdl_bin, "train", "mlp_fashion_mnist", "--workdir", str(workdir), *ARGS, "--config.epochs=3", "--resume"]
  proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 240
  while time.monotonic() < deadline and proc.poll() is None:
    if (workdir / "metrics.jsonl").exists() and (workdir / "metrics.jsonl").read_text().count("\n") >= 1:
      break
    time.sleep(0.05)
  assert proc.poll() is None, proc.communicate()
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=240)
  assert proc.returncode == 128 + signal.SIGTERM, err
  assert "SIGTERM received: saving a checkpoint at the next chunk boundary" in err
  assert "Continue with: jdl train mlp_fashion_mnist" in err and "Traceback" not in err
  assert not (workdir / "run.lock").exists()
  # The requeued job runs the same command line and finishes the run.
  done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr
  assert _epochs_logged(workdir) == [1, 2, 3]
  assert _summary(workdir)["epochs_completed"] == 3


def test_the_guard_remembers_the_first_signal_and_gives_up_at_the_second():
  before = signal.getsignal(signal.SIGINT)  # Python's handler; SIG_IGN in a process started in the background
  with preemption.SignalGuard() as guard:
    assert guard.requested() is None
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.01)
    assert guard.requested() == "SIGINT"
    with pytest.raises(KeyboardInterrupt, match="second SIGINT"):
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(0.01)
  assert signal.getsignal(signal.SIGINT) is before  # the handler it found is back
