"""Reading a run directory back, for the reliability tests."""

import json

from jdl.checkpoint import Checkpointer


def params(workdir):
  """``(epoch, params)`` of the latest checkpoint in ``workdir``."""
  ckpt = Checkpointer(workdir / "checkpoints")
  epoch = ckpt.latest_epoch()
  ckpt.close()
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  with ocp.StandardCheckpointer() as restorer:
    return epoch, restorer.restore(workdir / "checkpoints" / str(epoch) / "state")["params"]


def summary(workdir):
  return json.loads((workdir / "summary.json").read_text())


def epochs_logged(workdir):
  return [json.loads(line)["epoch"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
