"""The `jdl bench` command: an interrupted smoke suite resumes without redoing runs; reports; users' own files."""

import json
import math
import os
import subprocess
import sys
import textwrap
from collections import Counter

import pytest

from jdl import cli
from jdl.bench import records

SMOKE_PAIRS = 3 * 4  # workloads x optimizers, each 4 trials (+ edge extensions) and 4 seeds


def _jdl(*args, env):
  return subprocess.run([sys.executable, "-m", "jdl.cli", *args], capture_output=True, text=True, env=env,
                        timeout=600)


@pytest.fixture
def env(tmp_path):
  return {**os.environ, "JDL_TFDS_DIR": str(tmp_path / "tfds"), "MPLBACKEND": "Agg"}


def _ids(out):
  return [json.loads(line)["run_id"] for line in (out / records.RESULTS_FILE).read_text().splitlines()]


@pytest.mark.slow
def test_smoke_suite_interrupted_then_resumed_then_reported(tmp_path, env, capsys):
  out = tmp_path / "smoke"
  first = _jdl("bench", "run", "--suite", "smoke", "--out", str(out), "--max-runs", "30", env=env)
  assert first.returncode == 3, first.stdout + first.stderr
  assert "30 run(s) written" in first.stdout and "run the same command again" in first.stdout
  written = (out / records.RESULTS_FILE).read_bytes()
  assert len(_ids(out)) == 30
  # A kill in the middle of a write leaves half a record behind.
  with open(out / records.RESULTS_FILE, "ab") as f:
    f.write(b'{"run_id": "deadbeefdeadbeef", "suite": "sm')

  second = _jdl("bench", "run", "--suite", "smoke", "--out", str(out), env=env)
  assert second.returncode == 0, second.stdout + second.stderr
  ids = _ids(out)
  total = len(ids)
  assert f"{total - 30} run(s) written, 30 already there" in second.stdout
  assert not [i for i, n in Counter(ids).items() if n > 1]
  assert (out / records.RESULTS_FILE).read_bytes().startswith(written)  # finished runs were not redone

  assert cli.main(["bench", "run", "--suite", "smoke", "--out", str(out)]) == 0  # nothing left to do
  assert f"0 run(s) written, {total} already there" in capsys.readouterr().out

  recs = [json.loads(line) for line in (out / records.RESULTS_FILE).read_text().splitlines()]
  extensions = [r for r in recs if r["round"]]
  assert Counter(r["role"] for r in recs) == {"tune": SMOKE_PAIRS * 4 + len(extensions), "final": SMOKE_PAIRS * 4}
  # The shared grid is 1e-3..1 (4 points); an edge pick tried one more rate beyond that edge, at the grid's spacing.
  assert extensions and all(r["hparams"]["learning_rate"] in (1e-4, 10.0) for r in extensions)
  assert {r["hparams"]["learning_rate"] for r in recs if r["role"] == "tune" and not r["round"]} == {
      0.001, 0.01, 0.1, 1.0}
  assert {r["workload"] for r in recs} == {"rosenbrock", "quadratic_deep", "digits_logreg"}
  assert {r["optimizer"] for r in recs} == {"sgd", "momentum", "adam", "rmsprop"}
  final = [r for r in recs if r["role"] == "final" and r["workload"] == "digits_logreg"]
  assert sorted({r["seed"] for r in final}) == [1, 2, 3, 4]
  assert all(r["curves"]["step"][-1] == 200 and len(r["curves"]["valid_accuracy"]) == 11 for r in final)
  assert all(r["trajectory"] for r in recs if r["workload"] == "rosenbrock")
  meta = json.loads((out / "meta.json").read_text())
  assert len(meta) == 3 and meta[0]["final_seeds"] == [1, 2, 3, 4] and meta[0]["versions"]["jax"]

  assert cli.main(["bench", "report", str(out)]) == 0
  md = (out / "report.md").read_text()
  html = (out / "report.html").read_text()
  for text in ("Leaderboard", "digits_logreg", "rosenbrock", "jax", "git revision", "confirmation seeds"):
    assert text in md and text in html
  for text in ("Leaderboard stability", "95% CI", "toy problem: not in the score", "sign-flip p"):
    assert text in md and text in html
  assert html.count("data:image/png;base64,") == 5  # profiles, budget, curves, sensitivity, trajectories
  assert "report_files/" not in html  # self-contained
  assert all((out / "report_files" / f"{n}.png").exists()
             for n in ("profiles", "budget", "learning_curves", "lr_sensitivity", "trajectories"))


USER_FILE = '''
import optax
import jdl.bench
import jdl.optim

jdl.bench.register_workload(jdl.bench.dataset_workload(
    "iris_tiny", dataset="iris", model="mlp", model_options={"hidden": (8,)}, target=0.8, steps=40,
    eval_every=10, batch_size=16, valid_percent=50, min_valid=50))
jdl.bench.register_optimizer("optax_momentum", optax.sgd, search_space={
    "learning_rate": jdl.optim.log_uniform(1e-2, 1.0), "momentum": jdl.optim.uniform(0.0, 0.9)})
jdl.bench.register_optimizer("optax_adam", optax.adam, search_space={
    "learning_rate": jdl.optim.log_uniform(1e-4, 1e-1), "b1": jdl.optim.uniform(0.8, 0.95)})
jdl.bench.register_suite(jdl.bench.Suite(
    name="mine", workloads=("iris_tiny",), optimizers=("optax_momentum", "optax_adam"), trials=4, tune=None,
    seeds=4, search="quasirandom", shared_space=None, extend_edges=False))  # their own ranges, as registered
'''


def test_users_register_workloads_optimizers_and_suites_from_their_own_file(tmp_path, capsys):
  user = tmp_path / "mine.py"
  user.write_text(textwrap.dedent(USER_FILE))
  out = tmp_path / "mine"
  assert cli.main(["bench", "run", "--suite", "mine", "--out", str(out), "--import", str(user), "--quiet"]) == 0
  recs = records.read_records(out / records.RESULTS_FILE)
  assert len(recs) == 2 * (4 + 4)
  trials = [r for r in recs if r["optimizer"] == "optax_momentum" and r["role"] == "tune"]
  assert len({r["hparams"]["momentum"] for r in trials}) == 4  # quasi-random over the whole space
  assert {r["timing"]["runs_in_program"] for r in trials} == {4}  # all four in one vmapped program
  finals = [r for r in recs if r["optimizer"] == "optax_momentum" and r["role"] == "final"]
  assert finals[0]["timing"]["compile_seconds"] == 0.0  # the seeds reuse the trials' program
  # The same suite with each program's runs sharded over 2 devices: the same records, the same selection.
  two = tmp_path / "mine-2"
  assert cli.main(["bench", "run", "--suite", "mine", "--out", str(two), "--import", str(user), "--quiet",
                   "--devices", "2"]) == 0
  recs2 = records.read_records(two / records.RESULTS_FILE)
  assert [r["run_id"] for r in recs2] == [r["run_id"] for r in recs]
  assert {r["timing"]["devices"] for r in recs2} == {2} and {r["timing"]["devices"] for r in recs} == {1}
  for a, b in zip(recs, recs2):
    assert a["summary"]["final_valid"] == pytest.approx(b["summary"]["final_valid"], rel=1e-6)
  assert cli.main(["bench", "report", str(out), "--import", str(user)]) == 0
  assert "iris_tiny" in (out / "report.md").read_text()
  assert (out / "report.html").exists()
  capsys.readouterr()
  # Errors name what is wrong.
  assert cli.main(["bench", "run", "--suite", "nope", "--out", str(out)]) == 2
  assert "unknown suite 'nope'" in capsys.readouterr().err
  assert cli.main(["bench", "report", str(tmp_path / "empty")]) == 2
  assert "no run records" in capsys.readouterr().err


def test_list_names_suites_workloads_and_optimizers(capsys):
  assert cli.main(["bench", "run", "--list"]) == 0
  text = capsys.readouterr().out
  for name in ("smoke", "small", "gpu", "quadratic_deep", "mnist1d_gru", "fmnist_cnn", "diabetes_mlp", "rmsprop"):
    assert name in text


def test_submitit_local_executor_runs_one_job_per_pair(tmp_path, env):
  pytest.importorskip("submitit")
  user = tmp_path / "mine.py"
  user.write_text(textwrap.dedent(USER_FILE))
  out = tmp_path / "cluster"
  args = ["bench", "run", "--suite", "mine", "--optimizers", "optax_momentum", "--out", str(out), "--import",
          str(user), "--executor", "submitit", "--cluster", "local"]
  res = _jdl(*args, "--timeout-min", "10", env=env)
  assert res.returncode == 0, res.stdout + res.stderr
  assert "submitted 1 job(s) to local" in res.stdout
  ids = _ids(out)
  assert len(ids) == 8 and len(set(ids)) == 8
  assert [p.name for p in (out / "shards").glob("*.jsonl")] == ["iris_tiny__optax_momentum.jsonl"]
  again = _jdl(*args, env=env)
  assert again.returncode == 0 and "submitted" not in again.stdout and "0 run(s) written" in again.stdout


def test_a_subset_of_the_suites_optimizers_keeps_their_search_spaces():
  from jdl.bench import cli as bench_cli

  args = bench_cli.run_parser().parse_args(["--suite", "small", "--optimizers", "adam,sgd", "--out", "x"])
  suite = bench_cli._suite_from_args(args)  # pylint: disable=protected-access
  assert list(suite.optimizers) == ["adam", "sgd"]
  assert set(suite.search_spaces) <= {"adam", "sgd"}


def test_bench_refuses_a_training_runs_directory(tmp_path, capsys):
  (tmp_path / "config.json").write_text("{}")
  assert cli.main(["bench", "run", "--suite", "smoke", "--out", str(tmp_path)]) == 2
  assert "is the directory of a `jdl train` run" in capsys.readouterr().err


def test_set_targets_records_targets_that_a_suite_then_uses_without_retraining(tmp_path, capsys):
  import dataclasses  # pylint: disable=g-import-not-at-top

  import numpy as np  # pylint: disable=g-import-not-at-top

  from jdl.bench import suite as suite_lib, targets  # pylint: disable=g-import-not-at-top

  smoke = dataclasses.replace(suite_lib.get_suite("smoke"), workloads=("digits_logreg",), optimizers=("adam",),
                              budgets={"digits_logreg": suite_lib.get_suite("smoke").budgets["digits_logreg"]})
  out = tmp_path / "t"
  data = targets.set_targets(smoke, out, baselines=["adam"], seeds=3, fraction=0.5, log=lambda line: None)
  recs = records.read_records(out / records.RESULTS_FILE)
  reruns = [r for r in recs if r["role"] == "target"]
  assert sorted(r["seed"] for r in reruns) == [1001, 1002, 1003]
  # The target: the median over seeds of each rerun's best validation accuracy within the first half (100 steps).
  best = [max(v for s, v in zip(r["curves"]["step"], r["curves"]["valid_accuracy"]) if s <= 100) for r in reruns]
  entry = data["workloads"]["digits_logreg"]
  assert entry["target"] == targets.round_target(float(np.median(best)), "max") <= np.median(best)
  assert entry["from"] == "adam" and entry["previous"] == 0.9
  assert entry["baselines"]["adam"]["run_ids"] == [r["run_id"] for r in reruns]
  assert targets.load(out)["workloads"] == data["workloads"]  # a directory or its targets.json

  # The suite in the same directory reuses every tuning run (a run's id does not depend on its target) and
  # selects with the recorded target.
  tuned = {r["run_id"] for r in recs if r["role"] == "tune"}
  with_targets = dataclasses.replace(smoke, targets=str(out / targets.TARGETS_FILE))
  assert with_targets.workload("digits_logreg").target == entry["target"]
  progress = suite_lib.run_suite(with_targets, out, log=lambda line: None)
  assert progress.skipped >= len(tuned)
  after = records.read_records(out / records.RESULTS_FILE)
  assert {r["run_id"] for r in after if r["role"] == "tune"} == tuned
  assert {r["target"] for r in after if r["role"] == "final"} == {entry["target"]}
  # The report compares the runs of the suite's protocol only: not the reruns, nor set-targets' own picks.
  kept, status = suite_lib.protocol_view(with_targets, after)
  assert {r["role"] for r in kept} == {"tune", "final"} and status == {
      ("digits_logreg", "adam"): {"unresolved": False, "incomplete": False, "rounds": status[("digits_logreg",
                                                                                             "adam")]["rounds"]}}
  assert {r["seed"] for r in kept if r["role"] == "final"} == set(with_targets.final_seeds())
  partial, status = suite_lib.protocol_view(with_targets, [r for r in after if r["role"] != "final"])
  assert status[("digits_logreg", "adam")]["incomplete"] and not [r for r in partial if r["role"] == "final"]
  meta = json.loads((out / "meta.json").read_text())
  assert suite_lib.suite_of(meta) == with_targets  # rebuilt from meta.json
  assert meta[-1]["targets"] == {"digits_logreg": entry["target"]} and meta[-1]["targets_source"].endswith(
      "targets.json")
  assert cli.main(["bench", "report", str(out)]) == 0
  md = (out / "report.md").read_text()
  assert "recorded by `jdl bench set-targets`" in md and f"≥ {entry['target']}" in md
  assert "1001" not in md.split("## Workload")[1]  # the reruns are not confirmation seeds of any pair
  capsys.readouterr()

  with pytest.raises(FileNotFoundError, match="neither a targets.json file nor a shipped name"):
    targets.load(tmp_path / "nope")
  (tmp_path / "bad.json").write_text('{"workloads": {"w": {"value": 1}}}')
  with pytest.raises(ValueError, match="is not a targets file"):
    targets.load(tmp_path / "bad.json")
  with pytest.raises(ValueError, match="seeds: expected an integer >= 2"):
    targets.set_targets(smoke, out, baselines=["adam"], seeds=1)


def test_external_tuning_scores_the_median_over_studies_of_each_studys_fastest_trial(tmp_path):
  import dataclasses  # pylint: disable=g-import-not-at-top

  from jdl.bench import analysis, suite as suite_lib  # pylint: disable=g-import-not-at-top

  smoke = suite_lib.get_suite("smoke")
  ext = dataclasses.replace(smoke, name="ext", workloads=("digits_logreg",), optimizers=("adam",), search="quasirandom",
                            studies=3, seeds=2, budgets={"digits_logreg": smoke.budgets["digits_logreg"]})
  suite_lib.run_suite(ext, tmp_path, log=lambda line: None)
  recs = records.read_records(tmp_path / records.RESULTS_FILE)
  tune = [r for r in recs if r["role"] == "tune"]
  assert sorted({(r["study"], r["seed"]) for r in tune}) == [(0, 0), (1, 2001), (2, 2002)]  # a seed, a draw each
  assert len(tune) == 3 * 4 and not any(r["round"] for r in tune)  # no edge extension under external tuning
  assert len({r["hparams"]["learning_rate"] for r in tune}) == 12  # each study its own quasi-random draw
  (pair,) = analysis.summaries(recs)
  fastest = [min(math.inf if (t := analysis.time_to_target(r)[0]) is None else t for r in tune if r["study"] == s)
             for s in range(3)]
  assert pair["studies"] == 3 and pair["steps_per_seed"] == fastest
  assert pair["steps_to_target"] == sorted(fastest)[1]  # the median of three
  assert len([r for r in recs if r["role"] == "final"]) == 2  # study 0's pick confirmed for the performance table
  with pytest.raises(ValueError, match="studies .external tuning. draw quasirandom trials"):
    dataclasses.replace(ext, search="grid")
  with pytest.raises(ValueError, match="studies must be 0 .no external tuning. or at least 2, got 1"):
    dataclasses.replace(ext, studies=1)
