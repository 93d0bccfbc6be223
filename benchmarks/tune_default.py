"""`jdl tune` on the default experiment: a search killed and resumed, and what `--jobs 2` buys.

1. ``jdl tune mlp_fashion_mnist --space learning_rate --trials T`` in its own
   process group, SIGKILLed once K trials are complete, then resumed with
   ``--resume``: the trials kept, the one cut short, the final table, and the
   figures copied to ``docs/figures/tune_*.png``.
2. The same N trials from scratch with ``--jobs 1`` and ``--jobs 2``, one after
   the other in one sitting: wall seconds of the whole command and their ratio.

    python benchmarks/tune_default.py [--trials 10] [--kill-after 4] [--epochs 3] [--jobs-trials 6]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _command(workdir, trials, epochs, *extra, experiment="mlp_fashion_mnist"):
  return [sys.executable, "-m", "jdl.cli", "tune", experiment, "--space", "learning_rate",
          "--trials", str(trials), "--workdir", str(workdir), f"--config.epochs={epochs}", *extra]


def _trials(workdir):
  import optuna  # pylint: disable=g-import-not-at-top

  from jdl import tune  # pylint: disable=g-import-not-at-top

  if not (workdir / tune.STUDY_DB).is_file():
    return []
  try:
    storage = tune.open_storage(f"sqlite:///{workdir / tune.STUDY_DB}", heartbeat=False)
    return optuna.load_study(study_name="mlp_fashion_mnist", storage=storage).get_trials()
  except (KeyError, ValueError):  # the study is not created yet
    return []


def killed_and_resumed(tmp, trials, kill_after, epochs):
  import optuna  # pylint: disable=g-import-not-at-top

  complete = optuna.trial.TrialState.COMPLETE
  workdir = tmp / "study"
  start = time.perf_counter()
  process = subprocess.Popen(_command(workdir, trials, epochs), start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  while sum(t.state == complete for t in _trials(workdir)) < kill_after:
    if process.poll() is not None:
      raise RuntimeError(f"jdl tune ended before it was killed (status {process.returncode})")
    time.sleep(0.2)
  os.killpg(process.pid, signal.SIGKILL)
  process.wait()
  before = {t.number: (t.state.name, t.value) for t in _trials(workdir)}
  resumed = subprocess.run(_command(workdir, trials, epochs, "--resume"), capture_output=True, text=True, check=True)
  wall = time.perf_counter() - start
  after = _trials(workdir)
  kept = [n for n, (state, value) in before.items() if state == "COMPLETE" and after[n].value == value]
  interrupted = [t.number for t in after if t.user_attrs.get("interrupted")]
  for name in ("history", "importances", "intermediate"):
    if (workdir / f"{name}.png").is_file():
      shutil.copy(workdir / f"{name}.png", ROOT / "docs" / "figures" / f"tune_{name}.png")
  best = max((t for t in after if t.state == complete), key=lambda t: t.value)
  return {"trials": trials, "epochs": epochs, "killed_after_complete": kill_after,
          "before_kill": {str(n): s for n, (s, _) in before.items()}, "kept_unchanged": kept,
          "interrupted": interrupted, "states_after": {str(t.number): t.state.name for t in after},
          "best": {"number": best.number, "value": best.value, "params": best.params},
          "resume_output": resumed.stdout, "table": (workdir / "trials.md").read_text(), "wall_seconds": wall}


def jobs_speed(tmp, trials, epochs, experiment):
  out = {}
  for jobs in (1, 2):
    workdir = tmp / f"{experiment}_jobs{jobs}"
    start = time.perf_counter()
    subprocess.run(_command(workdir, trials, epochs, "--jobs", str(jobs), "--pruner", "none", "--sampler", "qmc",
                            experiment=experiment), check=True, capture_output=True)
    out[f"jobs{jobs}_seconds"] = time.perf_counter() - start
  out["speedup_jobs2"] = out["jobs1_seconds"] / out["jobs2_seconds"]
  out.update(trials=trials, epochs=epochs, experiment=experiment)
  return out


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--trials", type=int, default=10)
  parser.add_argument("--kill-after", type=int, default=4)
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--jobs-trials", type=int, default=6)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    result = {"machine": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
              "date": time.strftime("%Y-%m-%d"),
              "kill_resume": killed_and_resumed(tmp, args.trials, args.kill_after, args.epochs),
              "jobs": [jobs_speed(tmp, args.jobs_trials, 2, "mlp_fashion_mnist"),
                       jobs_speed(tmp, args.jobs_trials, 30, "mnist1d_mlp")]}
  (RESULTS / "tune_cpu.json").write_text(json.dumps(result, indent=1) + "\n")
  k, j = result["kill_resume"], result["jobs"]
  text = f"""# jdl tune on the default experiment (benchmarks/tune_default.py)

Machine: {result['machine']}, {result['date']}.

## Killed and resumed

`jdl tune mlp_fashion_mnist --space learning_rate --trials {k['trials']} --config.epochs={k['epochs']}`, SIGKILLed
(the whole process group) once {k['killed_after_complete']} trials were complete, then the same command with
`--resume`. Trials complete before the kill and unchanged after: {k['kept_unchanged']}; cut short and
marked failed (interrupted): {k['interrupted']}. Best: trial {k['best']['number']},
eval_accuracy {k['best']['value']:.4f}, {k['best']['params']}. Both commands: {k['wall_seconds']:.0f} s.

{k['table']}
## --jobs

The same trials from scratch (QMC sampler, no pruning), the whole command timed, one after the other:

| experiment | trials × epochs | `--jobs 1` | `--jobs 2` | `--jobs 2` is |
|---|---:|---:|---:|---:|
""" + "".join(f"| `{x['experiment']}` | {x['trials']} × {x['epochs']} | {x['jobs1_seconds']:.1f} s | "
              f"{x['jobs2_seconds']:.1f} s | {x['speedup_jobs2']:.2f}× |\n" for x in j)
  (RESULTS / "tune_cpu.md").write_text(text)
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
