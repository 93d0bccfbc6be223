"""jdl.bench.search: trials by grid and quasi-random search, optimizers, traced hyperparameters."""

import math

import numpy as np
import optax
import pytest

import jdl.optim
from jdl.bench import search


def test_learning_rate_grid_spans_the_search_space_log_evenly():
  opt = search.get_optimizer("adam")
  trials = search.draw_trials(opt, 4, method="grid", tune=["learning_rate"])
  lrs = [t["learning_rate"] for t in trials]
  assert lrs == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2])
  assert all(set(t) == {"learning_rate"} for t in trials)  # the rest stays at the factory's defaults
  assert search.draw_trials(opt, 4, method="grid", tune=["learning_rate"]) == trials


def test_grid_over_two_dimensions_and_choices():
  opt = search.BenchOptimizer("toy", optax.sgd, {"learning_rate": jdl.optim.log_uniform(1e-3, 1e-1),
                                                  "momentum": jdl.optim.uniform(0.0, 0.9),
                                                  "nesterov": jdl.optim.choice(False, True)})
  trials = search.draw_trials(opt, 18, method="grid")
  assert len(trials) == 3 * 3 * 2
  assert sorted({t["momentum"] for t in trials}) == pytest.approx([0.0, 0.45, 0.9])
  assert {t["nesterov"] for t in trials} == {False, True}
  assert len({tuple(sorted(t.items())) for t in trials}) == len(trials)


def test_quasirandom_trials_are_deterministic_and_inside_the_space():
  opt = search.get_optimizer("adam")
  space = opt.search_space
  trials = search.draw_trials(opt, 16, method="quasirandom")
  assert trials == search.draw_trials(opt, 16, method="quasirandom")
  assert trials != search.draw_trials(opt, 16, method="quasirandom", seed=1)
  for t in trials:
    assert set(t) == set(space)
    for name, value in t.items():
      assert space[name]["low"] <= value <= space[name]["high"]
  # A low-discrepancy sequence covers the log learning-rate range: every decade gets a trial.
  decades = {math.floor(math.log10(t["learning_rate"])) for t in trials}
  assert decades == {-5, -4, -3, -2} or decades >= {-5, -4, -3}


def test_halton_points_are_in_the_unit_cube_and_well_spread():
  points = search.halton(64, 3)
  assert points.shape == (64, 3) and (points >= 0).all() and (points < 1).all()
  # Each half of each axis holds about half the points.
  assert np.all(np.abs((points < 0.5).mean(axis=0) - 0.5) < 0.1)


def test_tune_must_name_dimensions_of_the_space_and_include_the_learning_rate():
  opt = search.get_optimizer("momentum")
  with pytest.raises(ValueError, match="no search dimension.*'b1'"):
    search.draw_trials(opt, 4, tune=["learning_rate", "b1"])
  with pytest.raises(ValueError, match="must include 'learning_rate'"):
    search.draw_trials(opt, 4, tune=["momentum"])
  with pytest.raises(ValueError, match="search: expected one of"):
    search.draw_trials(opt, 4, method="random")
  with pytest.raises(ValueError, match="trials: expected a positive integer, got 0"):
    search.draw_trials(opt, 0)


def test_unknown_optimizer_lists_the_known_ones():
  with pytest.raises(ValueError, match="unknown optimizer 'adamm'.*adam"):
    search.get_optimizer("adamm")


def test_register_optimizer_checks_its_search_space():
  with pytest.raises(ValueError, match="must include 'learning_rate'"):
    search.register_optimizer("bad_space", optax.sgd, search_space={"momentum": jdl.optim.uniform(0, 1)})
  with pytest.raises(ValueError, match="learning rate's dimension must be log_uniform"):
    search.register_optimizer("bad_lr", optax.sgd, search_space={"learning_rate": jdl.optim.uniform(0.0, 1.0)})
  opt = search.register_optimizer("test_optax_sgd", optax.sgd, overwrite=True,
                                  search_space={"learning_rate": jdl.optim.log_uniform(1e-3, 1.0)})
  assert search.get_optimizer("test_optax_sgd") is opt
  assert "test_optax_sgd" in search.list_optimizers()


def test_trace_plan_finds_what_each_factory_accepts_as_arrays():
  # jdl.optim checks concrete values only: the learning rate and the momentum trace as arrays.
  plan = search.trace_plan(search.get_optimizer("momentum"), {"learning_rate": 0.1, "momentum": 0.9})
  assert plan == search.TracePlan(search.LR_ARRAY, ("momentum",))
  # Plain optax factories take arrays: every numeric hyperparameter traces.
  opt = search.BenchOptimizer("optax_sgd", optax.sgd, {"learning_rate": jdl.optim.log_uniform(1e-3, 1.0),
                                                       "momentum": jdl.optim.uniform(0.0, 0.9)})
  plan = search.trace_plan(opt, {"learning_rate": 0.1, "momentum": 0.5})
  assert plan == search.TracePlan(search.LR_ARRAY, ("momentum",))
  assert plan.traced_names() == ("learning_rate", "momentum")

  # A factory that needs a Python number keeps it static.
  def picky(learning_rate, decay=0.9):
    if decay > 0.5:  # Python control flow on the value: not traceable
      return optax.chain(optax.scale_by_rms(decay=decay), optax.scale_by_learning_rate(learning_rate))
    return optax.sgd(learning_rate)

  opt = search.BenchOptimizer("picky", picky, {"learning_rate": jdl.optim.log_uniform(1e-3, 1.0),
                                               "decay": jdl.optim.uniform(0.6, 0.99)})
  assert search.trace_plan(opt, {"learning_rate": 0.1, "decay": 0.9}).traced == ()
