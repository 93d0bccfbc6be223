"""Multi-process runs: coordinates from config, environment or SLURM; a real two-process run on localhost."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jdl import config as config_lib
from jdl import data
from jdl.checkpoint import Checkpointer
from jdl.train import distributed, experiment
from test_parallel import _config


def test_coordinates_come_from_config_then_environment_then_slurm():
  assert distributed.coordinates(None, {}) is None
  env = {"JDL_COORDINATOR": "10.0.0.1:1234", "JDL_NUM_PROCESSES": "4", "JDL_PROCESS_ID": "3",
         "JDL_LOCAL_DEVICE_IDS": "0,1"}
  assert distributed.coordinates(None, env) == distributed.Coordinates("env", "10.0.0.1:1234", 4, 3, (0, 1))
  config = config_lib.base_config()
  config.distributed.coordinator = "127.0.0.1:999"
  config.distributed.num_processes = 2
  config.distributed.process_id = 0
  assert distributed.coordinates(config, env) == distributed.Coordinates("config", "127.0.0.1:999", 2, 0, None)
  slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[01-02]", "SLURM_PROCID": "1", "SLURM_LOCALID": "1",
           "SLURM_NTASKS": "2"}
  assert distributed.coordinates(config_lib.base_config(), slurm).source == "slurm"
  assert distributed.coordinates(None, dict(slurm, SLURM_NTASKS="1")) is None  # one task: one process
  no_step = {k: v for k, v in slurm.items() if k != "SLURM_STEP_NODELIST"}
  assert distributed.coordinates(None, no_step) is None  # the batch script itself, outside srun


def test_bad_coordinates_are_errors_naming_the_variable():
  with pytest.raises(ValueError, match="JDL_COORDINATOR: expected host:port of process 0's coordinator, "
                                       "got 'node1'"):
    distributed.coordinates(None, {"JDL_COORDINATOR": "node1"})
  with pytest.raises(ValueError, match="JDL_NUM_PROCESSES and JDL_PROCESS_ID: both are needed"):
    distributed.coordinates(None, {"JDL_COORDINATOR": "node1:1234", "JDL_NUM_PROCESSES": "2"})
  with pytest.raises(ValueError, match=r"JDL_PROCESS_ID: expected 0 … 1 \(the run has 2 processes\), got 2"):
    distributed.coordinates(None, {"JDL_COORDINATOR": "node1:1234", "JDL_NUM_PROCESSES": "2", "JDL_PROCESS_ID": "2"})
  with pytest.raises(ValueError, match="JDL_NUM_PROCESSES: expected an integer >= 1, got 'two'"):
    distributed.coordinates(None, {"JDL_COORDINATOR": "h:1", "JDL_NUM_PROCESSES": "two", "JDL_PROCESS_ID": "0"})
  # This pytest process has used its devices already: joining a run now is refused with the reason.
  config = config_lib.base_config()
  config.distributed.coordinator = "127.0.0.1:1"
  config.distributed.num_processes = 2
  config.distributed.process_id = 1
  jax.devices()
  with pytest.raises(RuntimeError, match="already used a JAX device; initialise first"):
    distributed.initialize(config, timeout_seconds=1)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _final_state(workdir):
  """The epoch-2 checkpoint, restored onto this process's default device whatever topology saved it."""
  with ocp.StandardCheckpointer() as reader:
    metadata = reader.metadata(workdir / "checkpoints" / "2" / "state").item_metadata
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), metadata)
  checkpointer = Checkpointer(workdir / "checkpoints")
  state, _ = checkpointer.restore(target, 2)
  checkpointer.close()
  return state


def test_two_processes_on_localhost_train_to_the_single_process_result(tiny_data, tmp_path):
  # Prepare the dataset cache once, here, so the two processes only read it.
  for split in ("train", "test"):
    data.load("fashion_mnist", split)
  args = ["train", "mlp_fashion_mnist", "--config.epochs=2", "--config.model.options.hidden=(32,)",
          "--config.data.batch_size=64", "--config.data.eval_batch_size=100",
          "--config.optimizer.schedule.name=constant",
          "--config.progress=false", "--config.plot=False"]
  jdl_bin = os.path.join(os.path.dirname(sys.executable), "jdl")
  coordinator = f"127.0.0.1:{_free_port()}"
  procs = []
  for process_id in range(2):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               JDL_COORDINATOR=coordinator, JDL_NUM_PROCESSES="2", JDL_PROCESS_ID=str(process_id))
    procs.append(subprocess.Popen([jdl_bin, *args, "--workdir", str(tmp_path / "two"), "--config.strategy=auto",
                                   "--config.distributed.initialization_timeout=120"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
  outputs = []
  try:
    for proc in procs:
      outputs.append(proc.communicate(timeout=300))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.communicate()
  for proc, (out, err) in zip(procs, outputs):
    assert proc.returncode == 0, err[-4000:]
    assert "test_accuracy=" in out

  # The same run in one process on one device.
  config = _config(**{"epochs": "2", "plot": "False", "strategy": "single"})
  single = experiment.train_and_evaluate(config, tmp_path / "one")

  summary = json.loads((tmp_path / "two" / "summary.json").read_text())
  assert summary["environment"]["process_count"] == 2 and summary["environment"]["device_count"] == 4
  assert summary["strategy"]["name"] == "data_parallel" and summary["strategy"]["data_parallel_size"] == 4
  assert summary["test_loss"] == pytest.approx(single["test_loss"], rel=1e-5)
  assert summary["test_accuracy"] == pytest.approx(single["test_accuracy"], rel=1e-5)
  # Only process 0 logged: one line per epoch.
  lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
  # The collective Orbax checkpoint holds the single-process parameters.
  two, one = _final_state(tmp_path / "two"), _final_state(tmp_path / "one")
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), two["params"], one["params"])
