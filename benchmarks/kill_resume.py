"""Kill `jdl train` and `jdl bench run` at random moments, resume them, and check that nothing is lost.

Each *trial* starts a run in a fresh directory with the command a requeued job
would use (``jdl train EXP --workdir W --resume``, ``jdl bench run --suite S
--out D``), SIGKILLs it after a random delay, checks the directory, and runs the
same command again, until a run finishes on its own. Kills land everywhere: in
start-up, between epochs, inside Orbax's asynchronous checkpoint writes (the
model's state is 13 MB, so a save takes a good part of an epoch), while
`metrics.jsonl`, `summary.json` or `results.jsonl` are written.

After every kill:

* every checkpoint directory on disk is either complete and restorable, or
  one Orbax did not finish (a temporary name, or, seen too: its final name
  without all its items) that the restore skips: ``--resume`` restores the
  latest complete checkpoint;
* `summary.json` and `config.json`, if present, are whole JSON;
* `metrics.jsonl` has each epoch at most once among its complete lines
  (a last line cut short is allowed: readers skip it);
* `results.jsonl` holds each run id at most once.

After every trial the run equals an uninterrupted one: the final parameters
bitwise, every epoch's logged train and eval loss, the test metrics; each epoch
logged exactly once; the benchmark's records (summaries and curves) equal.

    python benchmarks/kill_resume.py --kills 200 --json benchmarks/results/kill_resume_cpu.json

``tests/reliability/test_kill.py`` runs the same harness with a handful of kills.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EXPERIMENT = '''
"""A run for the kill harness: 13 MB of state, 40 steps an epoch, a checkpoint every epoch."""
from jdl.config import base_config


def get_config():
  config = base_config()
  config.name = "kill_harness"
  config.data.name = "digits"
  config.data.batch_size = 32
  config.model.name = "mlp"
  config.model.options.hidden = (1024, 1024)
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.epochs = {epochs}
  config.progress = "false"
  config.plot = False
  config.strategy = "single"
  config.checkpoint.every_seconds = 0.0
  config.checkpoint.keep = 2
  return config
'''


def _env() -> dict[str, str]:
  env = dict(os.environ)
  env.setdefault("JAX_PLATFORMS", "cpu")
  env.pop("XLA_FLAGS", None)  # one device, as a user's run
  return env


def _train_command(experiment: Path, workdir: Path) -> list[str]:
  return [sys.executable, "-m", "jdl.cli", "train", str(experiment), "--workdir", str(workdir), "--resume"]


def _bench_command(out: Path) -> list[str]:
  # Two optimizers of the smoke suite on one workload: 16 runs, in a few seconds.
  return [sys.executable, "-m", "jdl.cli", "bench", "run", "--suite", "smoke", "--workloads", "noisy_quadratic",
          "--optimizers", "sgd,adam", "--quiet", "--out", str(out)]


# --------------------------------------------------------------------------- #
# Checks.
# --------------------------------------------------------------------------- #


def _json_or_none(path: Path, problems: list[str]) -> Any:
  if not path.exists():
    return None
  try:
    return json.loads(path.read_text())
  except ValueError as e:
    problems.append(f"{path.name} is not whole JSON ({e})")
    return None


def check_workdir(workdir: Path, template: Any) -> dict[str, Any]:
  """The invariants that must hold at any moment; returns counts and the problems found."""
  from jdl.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top

  problems: list[str] = []
  _json_or_none(workdir / "summary.json", problems)
  _json_or_none(workdir / "config.json", problems)
  metrics = workdir / "metrics.jsonl"
  if metrics.exists():
    lines = metrics.read_text().split("\n")
    complete = lines[:-1]  # the text after the last newline may be a line cut short
    epochs = []
    for line in complete:
      try:
        epochs.append(json.loads(line)["epoch"])
      except ValueError:
        problems.append(f"metrics.jsonl has a broken complete line: {line[:80]!r}")
    if len(epochs) != len(set(epochs)):
      problems.append(f"metrics.jsonl logs an epoch twice: {epochs}")
  restorable: list[int] = []
  incomplete = unfinished = 0
  directory = workdir / "checkpoints"
  if directory.is_dir():
    names = [p.name for p in directory.iterdir() if p.is_dir()]
    unfinished = sum(1 for n in names if not n.isdigit())  # Orbax's temporary names
    ckpt = Checkpointer(directory)
    try:
      for epoch in sorted(int(n) for n in names if n.isdigit()):
        try:
          ckpt.restore(template, epoch)
          restorable.append(epoch)
        except Exception:  # pylint: disable=broad-except  # a save cut short under its final name
          incomplete += 1
      if restorable or incomplete:
        # What --resume restores: the latest checkpoint that reads, skipping any that does not.
        try:
          _, meta = ckpt.restore(template)
          if not restorable or meta["epoch"] != restorable[-1]:
            problems.append(f"the restore took epoch {meta['epoch']}, not the latest complete {restorable[-1:]}")
        except Exception as e:  # pylint: disable=broad-except
          if restorable:
            problems.append(f"the restore failed although checkpoints {restorable} are complete: {e}")
    finally:
      ckpt.close()
  return {"problems": problems, "restorable": len(restorable), "incomplete": incomplete, "ignored": unfinished}


def check_results(out: Path) -> dict[str, Any]:
  from jdl.bench import records  # pylint: disable=g-import-not-at-top

  problems = []
  rows = records.read_records(out / records.RESULTS_FILE)
  ids = [r["run_id"] for r in rows]
  if len(ids) != len(set(ids)):
    problems.append("results.jsonl holds a run twice")
  return {"problems": problems, "records": len(rows)}


# --------------------------------------------------------------------------- #
# Trials.
# --------------------------------------------------------------------------- #


def _kill_after(command: list[str], delay: float | None, env: dict[str, str]) -> int | None:
  """Runs ``command``; SIGKILLs it after ``delay`` s (None: never). Returns its exit status, or None if killed."""
  with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env) as proc:
    try:
      _, err = proc.communicate(timeout=delay)
    except subprocess.TimeoutExpired:
      proc.send_signal(signal.SIGKILL)
      proc.communicate()
      return None
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{err.decode()[-3000:]}")
  return 0


def _reference_train(tmp: Path, experiment: Path, env: dict[str, str]) -> dict[str, Any]:
  workdir = tmp / "reference"
  subprocess.run(_train_command(experiment, workdir), env=env, check=True, capture_output=True)
  return _final(workdir)


def _final(workdir: Path) -> dict[str, Any]:
  from jdl.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  summary = json.loads((workdir / "summary.json").read_text())
  ckpt = Checkpointer(workdir / "checkpoints")
  latest = ckpt.latest_epoch()
  ckpt.close()
  with ocp.StandardCheckpointer() as restorer:
    params = restorer.restore(workdir / "checkpoints" / str(latest) / "state")["params"]
  lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {"summary": summary, "params": params, "latest": latest,
          "epochs_logged": [line["epoch"] for line in lines],
          "losses": [(line["train_loss"], line["eval_loss"]) for line in lines]}


def _same(reference: dict[str, Any], got: dict[str, Any]) -> list[str]:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  problems = []
  epochs = reference["summary"]["epochs_completed"]
  if got["epochs_logged"] != list(range(1, epochs + 1)):
    problems.append(f"epochs logged {got['epochs_logged']}, expected 1..{epochs} once each")
  if got["losses"] != reference["losses"]:
    problems.append("the logged losses differ from the uninterrupted run's")
  for key in ("test_loss", "test_accuracy", "epochs_completed"):
    if got["summary"][key] != reference["summary"][key]:
      problems.append(f"summary {key}: {got['summary'][key]} != {reference['summary'][key]}")
  same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))), reference["params"],
                      got["params"])
  if not all(jax.tree.leaves(same)):
    problems.append("the final parameters differ from the uninterrupted run's")
  return problems


def _without_timing(record: dict[str, Any]) -> tuple[Any, Any]:
  """A benchmark record's results (summary and curves), without the wall-clock seconds that vary by run."""
  summary = {k: v for k, v in record["summary"].items() if k != "seconds_to_target"}
  curves = {k: v for k, v in record["curves"].items() if k != "seconds"}
  return summary, curves


def _template(experiment: Path) -> Any:
  """A restore target with the run's state structure."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  import jdl  # pylint: disable=g-import-not-at-top
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top
  from jdl.train import create_train_state, experiment as experiment_lib  # pylint: disable=g-import-not-at-top

  config = config_lib.load_experiment(str(experiment))
  model = jdl.models.create("mlp", num_classes=10, hidden=tuple(config.model.options.hidden))
  tx = experiment_lib.build_optimizer(config, total_steps=40 * config.epochs)
  return create_train_state(model, tx, jnp.zeros((1, 64)), seed=0)


def run(kills: int, bench_kills: int, epochs: int, seed: int, log=print,
        max_kills_per_trial: int | None = None) -> dict[str, Any]:
  """Kills ``jdl train`` ``kills`` times and ``jdl bench run`` ``bench_kills`` times at random moments.

  A trial kills the same command again and again (each time after a delay drawn up to an uninterrupted
  run's length) until one attempt finishes; with ``max_kills_per_trial`` the attempt after that many kills
  runs to the end, which bounds a trial's length (the tests' short version).
  """
  rng = random.Random(seed)
  env = _env()
  with tempfile.TemporaryDirectory() as tmp_name:
    tmp = Path(tmp_name)
    experiment = tmp / "kill_harness.py"
    experiment.write_text(EXPERIMENT.format(epochs=epochs))
    reference = _reference_train(tmp, experiment, env)  # also prepares the data
    start = time.perf_counter()
    subprocess.run(_train_command(experiment, tmp / "warm"), env=env, check=True, capture_output=True)
    reference_seconds = time.perf_counter() - start  # a whole run, start-up included
    template = _template(experiment)
    stats = {"kills": 0, "trials": 0, "problems": [], "restorable_checkpoints_seen": 0,
             "unfinished_checkpoints_seen": 0, "incomplete_checkpoints_skipped": 0,
             "kills_before_first_checkpoint": 0, "trial_kills": [],
             "reference_seconds": reference_seconds}
    while stats["kills"] < kills:
      stats["trials"] += 1
      workdir = tmp / f"trial{stats['trials']}"
      command = _train_command(experiment, workdir)
      killed_here = 0
      while True:
        delay = rng.uniform(0.0, reference_seconds)
        if max_kills_per_trial is not None and killed_here >= max_kills_per_trial:
          delay = None  # this attempt runs to the end
        if _kill_after(command, delay, env) == 0:
          break
        killed_here += 1
        stats["kills"] += 1
        found = check_workdir(workdir, template)
        for problem in found["problems"]:
          stats["problems"].append(f"trial {stats['trials']}, kill {killed_here} (after {delay:.2f} s): {problem}")
          log(f"PROBLEM {stats['problems'][-1]}")
        stats["restorable_checkpoints_seen"] += found["restorable"]
        stats["unfinished_checkpoints_seen"] += found["ignored"]
        stats["incomplete_checkpoints_skipped"] += found["incomplete"]
        stats["kills_before_first_checkpoint"] += found["restorable"] == 0
      got = _final(workdir)
      for problem in _same(reference, got):
        stats["problems"].append(f"trial {stats['trials']}: {problem}")
        log(f"PROBLEM {stats['problems'][-1]}")
      stats["trial_kills"].append(killed_here)
      log(f"trial {stats['trials']}: {killed_here} kills, {stats['kills']} in all, "
          f"{len(stats['problems'])} problems")
    # The benchmark suite.
    out_ref = tmp / "bench_reference"
    start = time.perf_counter()
    subprocess.run(_bench_command(out_ref), env=env, check=True, capture_output=True)
    bench_seconds = time.perf_counter() - start
    from jdl.bench import records  # pylint: disable=g-import-not-at-top

    want = {r["run_id"]: _without_timing(r) for r in records.read_records(out_ref / records.RESULTS_FILE)}
    bench = {"kills": 0, "trials": 0, "problems": [], "reference_seconds": bench_seconds}
    while bench["kills"] < bench_kills:
      bench["trials"] += 1
      out = tmp / f"bench{bench['trials']}"
      killed_here = 0
      while True:
        delay = rng.uniform(0.0, bench_seconds)
        if max_kills_per_trial is not None and killed_here >= max_kills_per_trial:
          delay = None
        if _kill_after(_bench_command(out), delay, env) == 0:
          break
        killed_here += 1
        bench["kills"] += 1
        bench["problems"] += check_results(out)["problems"]
      got = {r["run_id"]: _without_timing(r) for r in records.read_records(out / records.RESULTS_FILE)}
      if got != want:
        bench["problems"].append(f"trial {bench['trials']}: the records differ from the uninterrupted suite's")
      log(f"bench trial {bench['trials']}: {bench['kills']} kills in all, {len(bench['problems'])} problems")
    stats["bench"] = bench
    return stats


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--kills", type=int, default=200, help="SIGKILLs of jdl train, in all")
  p.add_argument("--bench-kills", type=int, default=20, help="SIGKILLs of jdl bench run, in all")
  p.add_argument("--epochs", type=int, default=12)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json", help="write the figures here")
  args = p.parse_args(argv)
  start = time.perf_counter()
  stats = run(args.kills, args.bench_kills, args.epochs, args.seed)
  stats["wall_seconds"] = time.perf_counter() - start
  stats["machine"] = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version()}
  stats["command"] = "python benchmarks/kill_resume.py " + " ".join(argv if argv is not None else sys.argv[1:])
  print(json.dumps({k: v for k, v in stats.items() if k != "trial_kills"}, indent=2))
  if args.json:
    Path(args.json).write_text(json.dumps(stats, indent=2) + "\n")
  return 1 if stats["problems"] or stats["bench"]["problems"] else 0


if __name__ == "__main__":
  sys.exit(main())
