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


def _trial(final_valid, status="ok", steps=None, lr=1e-3, seed=0, metric="accuracy", mode="max", rounds=0,
           every=20, budget=100, target=0.95):
  """A run record whose validation curve first meets ``target`` at ``steps`` (None: never), ending at ``final_valid``."""
  below = target - 0.1 if mode == "max" else target + 0.1
  grid = list(range(0, budget + 1, every))
  valid = [final_valid if (steps is not None and s >= steps) else below for s in grid]
  valid[-1] = final_valid
  return {"status": status, "hparams": {"learning_rate": lr}, "seed": seed, "metric": metric, "mode": mode,
          "target": target, "role": "tune", "round": rounds, "timing": {},
          "workload_spec": {"steps": budget},
          "curves": {"step": grid, "seconds": [s / 1000 for s in grid], f"valid_{metric}": valid},
          "summary": {"final_valid": final_valid, "steps_to_target": steps, "final_test": final_valid}}


def test_time_to_target_is_read_from_the_curve_with_any_target():
  r = _trial(0.97, steps=40)
  assert analysis.time_to_target(r) == (40, 0.04)
  assert analysis.time_to_target(r, target=0.99) == (None, None)  # a recorded target applies to an old run
  assert analysis.time_to_target(r, target=0.5) == (0, 0.0)


def test_selection_and_scoring_agree():
  """The default selection is the suite's score: fewest steps to the target, then the final validation value."""
  acc = workloads.get_workload("digits_logreg").with_budget(target=0.95)
  trials = [_trial(0.99, steps=80, lr=1), _trial(None, status="diverged", lr=2), _trial(0.96, steps=40, lr=3),
            _trial(0.96, steps=40, lr=4, ), _trial(0.97, steps=None, lr=5)]
  trials[3]["summary"]["final_valid"] = trials[3]["curves"]["valid_accuracy"][-1] = 0.965
  assert suite.select_best(acc, trials)["hparams"]["learning_rate"] == 4  # 40 steps, better final value
  # The old criterion picked the best final value, which is slower to the target (the breast_cancer case).
  assert suite.select_best(acc, trials, by="final_valid")["hparams"]["learning_rate"] == 1
  loss = workloads.get_workload("quadratic_deep").with_budget(target=87.0)  # mode min
  picked = suite.select_best(loss, [_trial(90.0, lr=1, mode="min", metric="loss", target=87.0),
                                    _trial(86.0, lr=2, steps=60, mode="min", metric="loss", target=87.0)])
  assert picked["hparams"]["learning_rate"] == 2
  assert suite.select_best(loss, [_trial(None, status="diverged", mode="min", metric="loss")]) is None
  with pytest.raises(ValueError, match="selection: expected one of"):
    suite.select_best(acc, trials, by="best_test")
  # The trial selected is the one the score counts: its steps are the minimum over the trials' times.
  assert analysis.time_to_target(suite.select_best(acc, trials))[0] == min(
      t for t in (analysis.time_to_target(r)[0] for r in trials if r["status"] == "ok") if t is not None)


def test_an_edge_pick_or_all_diverged_extends_the_grid_beyond_that_edge():
  first = [{"learning_rate": lr} for lr in (1e-3, 1e-2, 1e-1, 1.0)]
  trials = [_trial(0.9, lr=h["learning_rate"], steps=None) for h in first]
  trials[0]["summary"]["final_valid"] = 0.99  # the smallest rate wins
  best = trials[0]
  assert suite.edge_side(trials, best) == "low"
  assert suite.extension_trials(trials, first, best, "low", 2) == [{"learning_rate": 1e-4}, {"learning_rate": 1e-5}]
  assert suite.edge_side(trials, trials[3]) == "high"
  assert suite.extension_trials(trials, first, trials[3], "high", 1) == [{"learning_rate": 10.0}]
  assert suite.edge_side(trials, trials[1]) is None
  assert suite.edge_side(trials, None) == "low"  # every trial diverged: smaller rates


def test_performance_profiles_follow_the_definition():
  times = {"w1": {"a": 10.0, "b": 20.0, "c": math.inf},
           "w2": {"a": math.inf, "b": 5.0, "c": 15.0},
           "w3": {"a": 8.0, "b": 8.0}}  # c has no result on w3: counts as not reached (failing never helps)
  taus, prof = analysis.performance_profiles(times, num=7)  # taus 1, 1.5, ..., 4
  assert taus.tolist() == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
  np.testing.assert_allclose(prof["a"], [2 / 3] * 7)
  np.testing.assert_allclose(prof["b"], [2 / 3, 2 / 3, 1, 1, 1, 1, 1])
  np.testing.assert_allclose(prof["c"], [0, 0, 0, 0, 1 / 3, 1 / 3, 1 / 3])
  assert analysis.profile_score(taus, prof["a"]) == pytest.approx(2 / 3)
  assert analysis.profile_score(taus, np.ones(7)) == pytest.approx(1.0)


def test_bootstrap_intervals_are_reproducible_and_cover_the_statistic():
  values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0]
  a = analysis.bootstrap_ci(values, np.mean, seed=7)
  assert a == analysis.bootstrap_ci(values, np.mean, seed=7)  # the same seed, the same interval
  assert a != analysis.bootstrap_ci(values, np.mean, seed=8)
  assert a[0] < np.mean(values) < a[1] and min(values) <= a[0] and a[1] <= max(values)
  # Unreached seeds (inf) make the median infinite when half or more of them are.
  assert analysis.bootstrap_ci([10.0, math.inf, math.inf, math.inf], np.median)[1] == math.inf
  assert analysis.bootstrap_ci([5.0] * 6) == (5.0, 5.0)
  with pytest.raises(ValueError, match="bootstrap_ci: expected a non-empty 1-D"):
    analysis.bootstrap_ci([])


def test_paired_sign_flip_test_is_exact():
  # Every difference positive over 5 seeds: only the all-plus and all-minus patterns are as extreme: p = 2/32.
  t = analysis.paired_test([2.0, 3.0, 4.0, 5.0, 6.0], [1.0, 1.0, 1.0, 1.0, 1.0])
  assert t["diff"] == pytest.approx(3.0) and t["p"] == pytest.approx(2 / 32) and t["ci"][0] > 0
  assert analysis.paired_test([1.0, 2.0], [1.0, 2.0])["p"] == 1.0
  with pytest.raises(ValueError, match="paired_test"):
    analysis.paired_test([1.0], [1.0, 2.0])


def _summary(workload, optimizer, steps, test_mean, mode="max", seeds=(1, 2, 3), toy=False, unresolved=False,
             incomplete=False, per_seed=None, tests=None):
  per_seed = [float(steps)] * len(seeds) if per_seed is None else [float(x) for x in per_seed]
  return {"workload": workload, "optimizer": optimizer, "mode": mode, "steps_to_target": steps,
          "seconds_to_target": steps / 100, "final_test": {"mean": test_mean}, "trials": 4, "extension_trials": 0,
          "trials_diverged": 1, "toy": toy, "variant_of": None, "unresolved": unresolved, "incomplete": incomplete,
          "train_seconds": 0.1, "steps_per_seed": per_seed, "seconds_per_seed": [x / 100 for x in per_seed],
          "seed_list": list(seeds), "final_seeds": list(seeds),
          "final_test_values": [test_mean] * len(seeds) if tests is None else list(tests), "seeds": len(seeds),
          "budget_steps": 100, "final_valid": {"mean": test_mean}}


def test_leaderboard_ranks_by_profile_score_on_the_scored_pairs_only():
  rows = [_summary("w1", "a", 10, 0.9), _summary("w1", "b", 30, 0.95),
          _summary("w2", "a", 50, 0.8), _summary("w2", "b", math.inf, 0.7),
          _summary("toy", "b", 1, 0.0, toy=True), _summary("toy", "a", 100, 0.0, toy=True),
          _summary("w3", "b", 1, 0.99, incomplete=True), _summary("w3", "a", 5, 0.9),  # w3 still running
          _summary("w4", "b", math.inf, 0.5, unresolved=True), _summary("w4", "a", 5, 0.9)]
  board = analysis.leaderboard(rows)
  assert [r["optimizer"] for r in board] == ["a", "b"]
  a, b = board
  assert a["workloads"] == 3 and b["workloads"] == 3  # w1, w2, w4: not the toy problem, not the partial w3
  assert a["score_steps"] == pytest.approx(1.0) and a["targets"] == 3 and a["mean_rank"] == pytest.approx(4 / 3)
  # b: fastest nowhere, 3x a on w1, never on w2, and its unresolved w4 counts as not reached.
  assert b["score_steps"] == pytest.approx((4 - 3) / 3 / 3, abs=1e-3) and b["targets"] == 1  # τ on a 301-point grid
  assert b["diverged_trials"] == pytest.approx(0.25)
  assert a["score_steps_ci"][0] <= a["score_steps"] <= a["score_steps_ci"][1]
  assert a["score_seconds"] is None  # runs of 0.1 s are too short to time: steps are the unit
  # a's lead holds on every resample of identical seeds; with seeds that disagree it is not separated.
  assert a["separated"]
  noisy = [_summary("w1", "a", 20, 0.9, seeds=(1, 2, 3, 4), per_seed=(10, 10, 90, 90)),
           _summary("w1", "b", 30, 0.9, seeds=(1, 2, 3, 4), per_seed=(90, 90, 20, 30)),
           _summary("w2", "a", 20, 0.9, seeds=(1, 2, 3, 4), per_seed=(20, 20, 20, 20)),
           _summary("w2", "b", 20, 0.9, seeds=(1, 2, 3, 4), per_seed=(20, 20, 20, 20))]
  assert not analysis.leaderboard(noisy)[0]["separated"]


def test_a_winner_is_separated_only_when_the_paired_seeds_say_it_is_better():
  # Median steps favour a (6 of 10 seeds at 10 steps) but its 4 unreached seeds cost the whole budget (100):
  # per seed it is not better than b's steady 20. It must not be called separated.
  a = _summary("w", "a", 10, 0.9, seeds=range(10), per_seed=[10] * 6 + [math.inf] * 4)
  b = _summary("w", "b", 20, 0.9, seeds=range(10), per_seed=[20] * 10)
  speed = analysis.workload_winners([a, b])["w"]["speed"]
  assert speed["best"] == "a" and speed["diff"] == pytest.approx(20 - (6 * 10 + 4 * 100) / 10)
  assert speed["diff"] < 0 and not speed["separated"]
  # Higher accuracy on every one of 8 shared seeds: separated, p = 2/256.
  hi = _summary("v", "a", 10, 0.95, seeds=range(8), tests=[0.95 + i / 1000 for i in range(8)])
  lo = _summary("v", "b", 10, 0.90, seeds=range(8), tests=[0.90] * 8)
  test = analysis.workload_winners([lo, hi])["v"]["test"]
  assert test["best"] == "a" and test["diff"] > 0 and test["p"] == pytest.approx(2 / 256) and test["separated"]
  # Losses: lower is better, and the difference is still positive when the best is better.
  l1 = _summary("u", "a", 10, 1.0, mode="min", seeds=range(8), tests=[1.0] * 8)
  l2 = _summary("u", "b", 10, 2.0, mode="min", seeds=range(8), tests=[2.0 + i / 100 for i in range(8)])
  loss = analysis.workload_winners([l2, l1])["u"]["test"]
  assert loss["best"] == "a" and loss["diff"] > 0 and loss["separated"]


def test_leave_one_out_ranks_without_each_workload_and_each_optimizer():
  rows = [_summary("w1", "a", 10, 0.9), _summary("w1", "b", 30, 0.9), _summary("w1", "c", 40, 0.9),
          _summary("w2", "a", 50, 0.9), _summary("w2", "b", 20, 0.9), _summary("w2", "c", 30, 0.9),
          _summary("w3", "a", 10, 0.9), _summary("w3", "b", 40, 0.9), _summary("w3", "c", 12, 0.9)]
  assert analysis.leaderboard(rows)[0]["optimizer"] == "a"
  loo = {r["left_out"]: r for r in analysis.leave_one_out(rows)}
  assert set(loo) == {"workload w1", "workload w2", "workload w3", "optimizer a", "optimizer b", "optimizer c"}
  # Without w1, c's two near-best times beat a's mix of best and 2.5x: the leader depends on w1.
  assert loo["workload w1"]["ranking"] == ["c", "a", "b"] and not loo["workload w1"]["same_leader"]
  assert loo["workload w2"]["leader"] == "a" and loo["workload w2"]["same_leader"]
  assert loo["optimizer a"]["ranking"] == ["c", "b"] and loo["optimizer a"]["same_leader"]
  assert all(r["kendall_tau"] is None or -1 <= r["kendall_tau"] <= 1 for r in loo.values())
  assert analysis.kendall_tau(["a", "b", "c"], ["c", "b", "a"]) == -1.0


def test_a_suite_shares_one_learning_rate_range_and_extends_edges_by_default():
  s = suite.Suite(name="x", workloads=("digits_logreg",), optimizers=("adam", "sgd"))
  assert s.extend_edges and s.shared_space == suite.SHARED_LR
  assert s.optimizer("adam").search_space["learning_rate"] == s.optimizer("sgd").search_space["learning_rate"] == {
      "distribution": "log_uniform", "low": 1e-5, "high": 10.0}
  own = suite.Suite(name="y", workloads=("digits_logreg",), optimizers=("adam",), shared_space=None)
  assert own.optimizer("adam").search_space["learning_rate"]["high"] == 0.01  # jdl.optim's registered range


def test_suite_refuses_bad_protocol_settings():
  with pytest.raises(ValueError, match="selection must be one of"):
    suite.Suite(name="x", workloads=("digits_logreg",), optimizers=("adam",), selection="best_test")
  with pytest.raises(ValueError, match="max_extensions must be a non-negative integer"):
    suite.Suite(name="x", workloads=("digits_logreg",), optimizers=("adam",), max_extensions=-1)
  with pytest.raises(ValueError, match="shared_space"):
    suite.Suite(name="x", workloads=("digits_logreg",), optimizers=("adam",),
                shared_space={"learning_rate": {"distribution": "log_uniform", "low": 0.0, "high": 1.0}})


def test_the_shared_range_is_every_optimizers_range():
  small = suite.get_suite("small")
  drawn = {o: [h["learning_rate"] for h in __import__("jdl.bench.search", fromlist=["x"]).draw_trials(
      small.optimizer(o), small.trials, method=small.search, tune=small.tune)] for o in small.optimizers}
  grids = {tuple(v) for v in drawn.values()}
  assert len(grids) == 1  # the same 13 rates for sgd, adam, adagrad, ...
  (grid,) = grids
  assert len(grid) == 13 and grid[0] == 1e-5 and grid[-1] == 10.0
  assert grid[1] == pytest.approx(10 ** -4.5, rel=1e-5)  # half a decade apart


def test_the_small_suite_uses_its_shipped_recorded_targets():
  from jdl.bench import targets  # pylint: disable=g-import-not-at-top

  small = suite.get_suite("small")
  shipped = targets.load("small")
  assert shipped["source"] == "jdl/bench/recorded_targets/small.json" and shipped["seeds"] == 20
  assert set(shipped["workloads"]) == set(small.workloads)  # every workload of the suite has a recorded target
  for name, entry in shipped["workloads"].items():
    assert small.workload(name).target == entry["target"]
    baseline = entry["baselines"][entry["from"]]
    assert len(baseline["values"]) == 20 and len(baseline["run_ids"]) == 20
    median = float(np.median([v for v in baseline["values"] if v is not None]))
    assert entry["target"] == targets.round_target(median, entry["mode"])
    assert entry["target"] <= median if entry["mode"] == "max" else entry["target"] >= median  # never stricter


def test_targets_are_rounded_the_lenient_way():
  from jdl.bench.targets import round_target  # pylint: disable=g-import-not-at-top

  assert round_target(111 / 114, "max") == 0.9736  # 0.9737 would need 111.0018 right answers of 114
  assert round_target(0.9, "max") == 0.9 and round_target(0.43297, "min") == 0.433
  assert round_target(0.0097883, "min") == 0.009789 and round_target(85.6812, "min") == 85.69


def test_every_shipped_suite_evaluates_at_least_20_times_per_run():
  for name in ("small", "small_v1", "gpu"):  # not smoke: a check of the machinery in a minute, not a comparison
    s = suite.get_suite(name)
    for w in s.workloads:
      wl = s.workload(w)
      assert wl.steps // wl.eval_every >= 20, f"{name}/{w}: {wl.steps // wl.eval_every} evaluations"
