"""jdl.bench.records and analysis: run ids, durable JSONL, selection, performance profiles."""

import json
import math

import numpy as np
import pytest

from jdl.bench import analysis, records, suite, workloads


def test_run_id_hashes_the_full_config():
  spec = workloads.get_workload("digits_logreg").spec()
  base = records.run_id(records.run_config(spec, "adam", {"learning_rate": 1e-3}, 0))
  assert base == records.run_id(records.run_config(dict(spec), "adam", {"learning_rate": 1e-3}, 0))
  assert len(base) == 16 and int(base, 16) >= 0
  others = [
      records.run_config(spec, "adam", {"learning_rate": 1e-3}, 1),
      records.run_config(spec, "adam", {"learning_rate": 2e-3}, 0),
      records.run_config(spec, "sgd", {"learning_rate": 1e-3}, 0),
      records.run_config({**spec, "steps": spec["steps"] * 2}, "adam", {"learning_rate": 1e-3}, 0),
  ]
  assert len({base, *(records.run_id(c) for c in others)}) == 5


def _record(i, **extra):
  return {"run_id": f"{i:016x}", "value": float(i), **extra}


def test_store_appends_durably_skips_duplicates_and_tolerates_a_truncated_last_line(tmp_path):
  with records.open_store(tmp_path) as store:
    for i in range(3):
      store.append(_record(i))
    store.append(_record(1))  # already stored: ignored
    assert store.appended == 3
  path = tmp_path / records.RESULTS_FILE
  assert len(path.read_text().splitlines()) == 3
  # A kill in the middle of a write leaves half a line.
  with open(path, "a") as f:
    f.write('{"run_id": "00000000000000ff", "val')
  assert [r["run_id"] for r in records.read_records(path)] == [f"{i:016x}" for i in range(3)]
  with records.open_store(tmp_path) as store:
    assert store.done == {f"{i:016x}" for i in range(3)}
    store.append(_record(3, curve=[1.0, math.nan, math.inf]))  # JSON has no NaN: stored as null
  lines = path.read_text().splitlines()
  assert len(lines) == 4 and json.loads(lines[-1])["curve"] == [1.0, None, None]


def test_a_second_writer_on_the_same_directory_is_refused(tmp_path):
  with records.open_store(tmp_path):
    with pytest.raises(ValueError, match="in use by another `jdl bench run`"):
      records.ResultStore(tmp_path)
  records.ResultStore(tmp_path).close()  # free again


def _trial(final_valid, status="ok", steps=None, lr=1e-3):
  return {"status": status, "hparams": {"learning_rate": lr},
          "summary": {"final_valid": final_valid, "steps_to_target": steps}}


def test_select_best_uses_final_validation_then_speed_and_never_a_diverged_trial():
  acc = workloads.get_workload("digits_logreg")  # mode max
  trials = [_trial(0.90, lr=1), _trial(None, status="diverged", lr=2), _trial(0.95, steps=80, lr=3),
            _trial(0.95, steps=40, lr=4)]
  assert suite.select_best(acc, trials)["hparams"]["learning_rate"] == 4
  loss = workloads.get_workload("quadratic_deep")  # mode min
  assert suite.select_best(loss, [_trial(90.0, lr=1), _trial(86.0, lr=2)])["hparams"]["learning_rate"] == 2
  assert suite.select_best(loss, [_trial(None, status="diverged")]) is None


def test_performance_profiles_follow_the_definition():
  times = {"w1": {"a": 10.0, "b": 20.0, "c": math.inf},
           "w2": {"a": math.inf, "b": 5.0, "c": 15.0},
           "w3": {"a": 8.0, "b": 8.0}}  # c has no result on w3: counts as not reached
  taus, prof = analysis.performance_profiles(times, num=7)  # taus 1, 1.5, ..., 4
  assert taus.tolist() == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
  np.testing.assert_allclose(prof["a"], [2 / 3] * 7)
  np.testing.assert_allclose(prof["b"], [2 / 3, 2 / 3, 1, 1, 1, 1, 1])
  np.testing.assert_allclose(prof["c"], [0, 0, 0, 0, 1 / 3, 1 / 3, 1 / 3])
  assert analysis.profile_score(taus, prof["a"]) == pytest.approx(2 / 3)
  assert analysis.profile_score(taus, np.ones(7)) == pytest.approx(1.0)


def _summary(workload, optimizer, steps, test_mean, mode="max"):
  return {"workload": workload, "optimizer": optimizer, "mode": mode, "steps_to_target": steps,
          "seconds_to_target": steps / 100, "final_test": {"mean": test_mean}, "trials": 4, "trials_diverged": 1}


def test_leaderboard_ranks_by_profile_score():
  rows = [_summary("w1", "a", 10, 0.9), _summary("w1", "b", 30, 0.95),
          _summary("w2", "a", 50, 0.8), _summary("w2", "b", math.inf, 0.7)]
  board = analysis.leaderboard(rows)
  assert [r["optimizer"] for r in board] == ["a", "b"]
  a, b = board
  assert a["score_steps"] == pytest.approx(1.0) and a["targets"] == 2 and a["mean_rank"] == pytest.approx(1.5)
  assert 0 < b["score_steps"] < 0.5 and b["targets"] == 1 and b["diverged_trials"] == pytest.approx(0.25)
