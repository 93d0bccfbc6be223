"""jdl.bench.engine: runs vmapped in one program match runs one by one; divergence is a status."""

import jax
import numpy as np
import optax
import pytest

import jdl.optim
from jdl.bench import engine, search, workloads
from jdl.data import pipeline

# One worker runs this module, so that its module-scoped run is set up once (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("bench_engine")


def test_batch_indices_are_epoch_permutations_whatever_the_chunking():
  n, bs = 10, 3  # 3 steps per epoch, the last example of each epoch's order is dropped
  whole = pipeline.batch_indices(7, 0, 6, bs, n)
  assert whole.shape == (6, 3)
  for epoch in range(2):
    seen = whole[3 * epoch:3 * epoch + 3].ravel()
    assert len(set(seen)) == 9 and set(seen) <= set(range(n))
    # The batches fit trains epoch e+1 on: one data order for jdl train and the benchmark.
    np.testing.assert_array_equal(whole[3 * epoch:3 * epoch + 3], np.asarray(pipeline.epoch_batches(7, epoch + 1, n, bs)))
  np.testing.assert_array_equal(np.concatenate([pipeline.batch_indices(7, s, 2, bs, n) for s in (0, 2, 4)]), whole)
  assert not np.array_equal(pipeline.batch_indices(8, 0, 6, bs, n), whole)  # another seed, another order
  with pytest.raises(ValueError, match="batch_size: 20 is larger than the 10"):
    pipeline.batch_indices(0, 0, 1, 20, n)


@pytest.fixture(scope="module")
def digits():
  wl = workloads.get_workload("digits_logreg").with_budget(steps=40, eval_every=10, target=0.9)
  return wl, workloads.build(wl)


def test_vmapped_runs_match_runs_one_after_another(digits):
  wl, problem = digits
  runs = [engine.RunSpec({"learning_rate": lr}, seed) for lr, seed in ((0.1, 0), (0.01, 0), (0.1, 1))]
  together = engine.train_runs(wl, problem, "momentum", runs)
  alone = engine.train_runs(wl, problem, "momentum", runs, vmap=False)
  assert together[0].timing["vmapped"] and together[0].timing["runs_in_program"] == 3
  assert not alone[0].timing["vmapped"]
  for a, b in zip(together, alone):
    assert a.spec == b.spec and a.status == b.status == "ok"
    assert a.curves["step"] == [0, 10, 20, 30, 40]
    for key in ("train_loss", "valid_loss", "valid_accuracy", "test_accuracy"):
      np.testing.assert_allclose(np.asarray(a.curves[key][1:], float), np.asarray(b.curves[key][1:], float),
                                 rtol=1e-5, err_msg=key)
  # Different learning rates and seeds really are different runs.
  assert together[0].curves["train_loss"] != together[1].curves["train_loss"]
  assert together[0].curves["train_loss"] != together[2].curves["train_loss"]
  # Time to target is read off the validation curve; the fast runs reach it, the slow one does not.
  reached = [r for r in together if r.summary["steps_to_target"] is not None]
  assert [r.spec for r in reached] == [runs[0], runs[2]]  # learning rate 0.1 reaches 0.9 within 40 steps
  for r in reached:
    s = r.summary
    i = r.curves["step"].index(s["steps_to_target"])
    assert r.curves["valid_accuracy"][i] >= wl.target
    assert all(v < wl.target for v in r.curves["valid_accuracy"][:i])
    assert s["seconds_to_target"] == r.curves["seconds"][i] > 0
  slow = together[1]
  assert slow.summary["steps_to_target"] is None and max(slow.curves["valid_accuracy"]) < wl.target
  # A smaller group padded into the same program size reuses the compiled program.
  again = engine.train_runs(wl, problem, "momentum", runs[:2], program_size=3)
  assert again[0].timing["compile_seconds"] == 0.0 and again[0].timing["runs_in_program"] == 2
  np.testing.assert_allclose(np.asarray(again[1].curves["valid_loss"], float),
                             np.asarray(together[1].curves["valid_loss"], float), rtol=1e-5)


def test_runs_sharded_over_devices_equal_runs_on_one(digits):
  """``devices=n``: the run axis over n devices (3 runs padded to 4 on 4 devices); every run's numbers unchanged."""
  wl, problem = digits
  runs = [engine.RunSpec({"learning_rate": lr, "momentum": m}, seed)
          for lr, m, seed in ((0.1, 0.9, 0), (0.01, 0.5, 0), (0.1, 0.0, 1))]
  one = engine.train_runs(wl, problem, "momentum", runs)
  four = engine.train_runs(wl, problem, "momentum", runs, devices=4)
  assert [r.timing["devices"] for r in (one[0], four[0])] == [1, 4]
  assert four[0].timing["program_size"] == 4 and four[0].timing["runs_in_program"] == 3
  for a, b in zip(one, four):
    assert a.spec == b.spec and a.status == b.status
    for key in ("train_loss", "valid_loss", "valid_accuracy", "test_accuracy"):
      np.testing.assert_allclose(np.asarray(a.curves[key][1:], float), np.asarray(b.curves[key][1:], float),
                                 rtol=1e-6, err_msg=key)
  n = jax.local_device_count()
  with pytest.raises(ValueError, match=rf"devices: expected an int from 1 to the {n} local device\(s\), got {n + 1}"):
    engine.train_runs(wl, problem, "momentum", runs, devices=n + 1)
  with pytest.raises(ValueError, match="devices: runs one after another"):
    engine.train_runs(wl, problem, "momentum", runs, vmap=False, devices=2)


def test_a_diverging_run_is_recorded_not_raised():
  wl = workloads.get_workload("quadratic_deep").with_budget(steps=35, eval_every=7)
  problem = workloads.build(wl)
  runs = [engine.RunSpec({"learning_rate": lr}, 0) for lr in (1e-3, 10.0)]
  ok, bad = engine.train_runs(wl, problem, "sgd", runs)
  assert ok.status == "ok" and ok.diverged_at_step is None and ok.summary["final_valid"] is not None
  assert bad.status == "diverged" and 0 < bad.diverged_at_step <= wl.steps
  assert bad.summary["final_valid"] is None and bad.summary["steps_to_target"] is None
  assert None in bad.curves["valid_loss"]


def test_hyperparameters_that_trace_share_one_program():
  opt = search.BenchOptimizer("optax_momentum", optax.sgd, {"learning_rate": jdl.optim.log_uniform(1e-3, 1e-1),
                                                            "momentum": jdl.optim.uniform(0.0, 0.9)})
  wl = workloads.get_workload("noisy_quadratic").with_budget(steps=20, eval_every=10)
  problem = workloads.build(wl)
  trials = search.draw_trials(opt, 4, method="grid")  # 2 learning rates x 2 momenta
  results = engine.train_runs(wl, problem, opt, [engine.RunSpec(h, 0) for h in trials])
  assert {r.timing["runs_in_program"] for r in results} == {4}
  assert len({tuple(r.curves["valid_loss"]) for r in results}) == 4
  traj = results[0].trajectory
  assert len(traj["u"]) == len(traj["v"]) == wl.steps + 1
  assert (traj["u"][0], traj["v"][0]) == pytest.approx((-3.0, 2.0))  # the start point
  # jdl.optim's momentum traces its momentum too: the same runs in one program.
  same = engine.train_runs(wl, problem, "momentum", [engine.RunSpec(h, 0) for h in trials])
  assert {r.timing["runs_in_program"] for r in same} == {4}
  for a, b in zip(results, same):
    np.testing.assert_allclose(np.asarray(a.curves["valid_loss"], float), np.asarray(b.curves["valid_loss"], float),
                               rtol=1e-4, atol=1e-6)
