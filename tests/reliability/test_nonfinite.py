"""config.nonfinite: a run made to diverge on purpose (an infinite learning rate at one step)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jdl.optim
from jdl import config as config_lib
from jdl.checkpoint import Checkpointer
from jdl.train import experiment

from jdl.data import pipeline, transforms

BATCH = 64


def _huge():
  """The training example made to overflow the forward pass: one that epoch 1 leaves out (its last
  partial batch), so the first bad step comes in epoch 2, after a finite epoch."""
  n = pipeline.num_examples(jdl.data.load("digits", "train"))
  return int(pipeline.epoch_permutation(0, 1, n)[-1])


HUGE = _huge()


@transforms.register("one_huge_example_for_tests")
def _one_huge_example(arrays):
  # Finite inputs, so the data checks pass, but large enough that the forward pass overflows to inf:
  # the loss and the gradients of every batch holding this example are NaN.
  inputs = np.array(arrays["inputs"], copy=True)
  if len(inputs) > 1000:  # the training split only
    inputs[HUGE] = 3e38
  return {**arrays, "inputs": inputs}


def _bad_steps(epochs):
  """The steps (from 1) whose batch holds the huge example, in jdl's data order: one per epoch at most."""
  n = pipeline.num_examples(jdl.data.load("digits", "train"))
  steps = n // BATCH
  out = []
  for epoch in range(1, epochs + 1):
    rows = np.flatnonzero((pipeline.epoch_batches(0, epoch, n, BATCH) == HUGE).any(axis=1))
    out += [(epoch - 1) * steps + int(r) + 1 for r in rows]
  return out, steps


def _config(policy, **overrides):
  config = config_lib.base_config()
  config.name = "huge_example"
  config.data.name = "digits"
  config.data.transform = "one_huge_example_for_tests"
  config.data.batch_size = BATCH
  config.data.train_split, config.data.eval_split = "train", "test"  # the whole train split; eval is test
  config.model.name = "mlp"
  config.model.options.hidden = (16,)
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.1
  config.epochs = 5
  config.progress = "false"
  config.plot = False
  config.strategy = "single"
  config.checkpoint.every_seconds = 0.0
  config.nonfinite = policy
  for key, value in overrides.items():
    config_lib.apply_override(config, key, value)
  return config


def _checkpoint_params(workdir):
  ckpt = Checkpointer(workdir / "checkpoints")
  epochs = ckpt.all_epochs()
  ckpt.close()
  import orbax.checkpoint as ocp

  with ocp.StandardCheckpointer() as restorer:
    return {e: restorer.restore(workdir / "checkpoints" / str(e) / "state")["params"] for e in epochs}


def _finite(tree):
  return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(tree))


def test_raise_names_the_first_bad_step_and_keeps_the_last_finite_checkpoint(tmp_path):
  bad, steps = _bad_steps(5)
  # The huge example's own loss may still be finite (huge); its gradient is not, so the loss is NaN at
  # that step or, at the latest, at the next one.
  with pytest.raises(FloatingPointError, match=r"train_loss is (nan|inf) at step (\d+) \(epoch (\d+), batch (\d+) "
                                               rf"of {steps}\)") as caught:
    experiment.train_and_evaluate(_config("raise"), tmp_path / "run")
  import re

  step, epoch, batch = map(int, re.search(r"at step (\d+) \(epoch (\d+), batch (\d+)", str(caught.value)).groups())
  assert step in (bad[0], bad[0] + 1) and step == (epoch - 1) * steps + batch
  saved = _checkpoint_params(tmp_path / "run")
  assert sorted(saved) == list(range(1, epoch)) and all(_finite(p) for p in saved.values())
  lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line)["epoch"] for line in lines] == list(range(1, epoch))
  assert not (tmp_path / "run" / "summary.json").exists()


def test_skip_continues_and_counts_the_skipped_steps(tmp_path):
  bad, steps = _bad_steps(5)
  summary = experiment.train_and_evaluate(_config("skip"), tmp_path / "run")
  history = summary["history"]
  assert [h["train_skipped_steps"] for h in history] == [sum(1 for b in bad if (b - 1) // steps + 1 == e)
                                                         for e in range(1, 6)]
  assert summary["skipped_steps"] == len(bad) >= 3 and summary["epochs_completed"] == 5
  assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["eval_loss"]) for h in history)
  assert summary["test_accuracy"] > 0.8
  assert _finite(_checkpoint_params(tmp_path / "run")[5])


@pytest.mark.parametrize("every_seconds", ["0.0", "30.0"])  # every epoch saved, or only the last (by default)
def test_stop_ends_the_run_at_the_last_finite_checkpoint(tmp_path, every_seconds):
  bad, _ = _bad_steps(5)
  summary = experiment.train_and_evaluate(_config("stop", **{"checkpoint.every_seconds": every_seconds}),
                                          tmp_path / "run")
  where = summary["nonfinite"]
  assert where["epoch"] >= 2  # the test's point: finite epochs come first
  assert where["step"] in (bad[0], bad[0] + 1) and where["metric"] == "train_loss"
  epoch = where["epoch"]
  assert not np.isfinite(where["value"])
  assert summary["stopped_early"] and summary["epochs_completed"] == epoch - 1
  # The test metrics are those of the last finite epoch (the eval split is the test split here).
  assert summary["test_loss"] == pytest.approx(summary["history"][-1]["eval_loss"], rel=1e-6)
  saved = _checkpoint_params(tmp_path / "run")
  expected = list(range(1, epoch)) if every_seconds == "0.0" else [epoch - 1]  # the last finite one, always
  assert sorted(saved) == expected and all(_finite(p) for p in saved.values())


def test_skip_gives_up_after_too_many_in_a_row(tiny_data, tmp_path):
  # An infinite learning rate from step 25 on: every update is skipped, then the limit is reached.
  @jdl.optim.register_schedule("inf_from_for_tests", overwrite=True)
  def _inf_from(learning_rate, total_steps, *, at):
    del total_steps
    return lambda count: jnp.where(count >= at - 1, jnp.inf, learning_rate)

  config = _config("skip", nonfinite_max_skips="3")
  config.data.transform = ""
  config.optimizer.schedule = {"name": "inf_from_for_tests", "at": 25}
  with pytest.raises(FloatingPointError, match=r"at step 29 .*more non-finite updates in a row than "
                                               r"nonfinite=skip skips"):
    experiment.train_and_evaluate(config, tmp_path / "run")


def test_skip_nonfinite_skips_bad_gradients_and_bad_updates():
  tx = jdl.optim.skip_nonfinite(optax.sgd(1.0), max_consecutive=2)
  params = {"w": jnp.asarray([1.0, 2.0])}
  state = tx.init(params)
  updates, state = tx.update({"w": jnp.asarray([1.0, jnp.nan])}, state, params)
  np.testing.assert_array_equal(updates["w"], [0.0, 0.0])
  assert int(state.skipped) == 1 and int(state.consecutive) == 1
  updates, state = tx.update({"w": jnp.asarray([0.5, 0.5])}, state, params)
  np.testing.assert_array_equal(updates["w"], [-0.5, -0.5])
  assert int(state.skipped) == 1 and int(state.consecutive) == 0
  assert int(jdl.optim.skipped_steps(state)) == 1 and jdl.optim.skipped_steps(optax.sgd(1.0).init(params)) is None
  huge = jdl.optim.skip_nonfinite(optax.sgd(1e38))  # a finite gradient, an update that overflows
  updates, s = huge.update({"w": jnp.asarray([1e3, 1e3])}, huge.init(params), params)
  assert int(s.skipped) == 1 and float(jnp.max(jnp.abs(updates["w"]))) == 0.0
  with pytest.raises(ValueError, match="max_consecutive must be >= 1"):
    jdl.optim.skip_nonfinite(optax.sgd(1.0), max_consecutive=0)


def test_a_bad_policy_is_refused_before_anything_is_written(tmp_path):
  with pytest.raises(ValueError, match="nonfinite: expected one of raise, skip, stop, got 'ignore'"):
    experiment.train_and_evaluate(_config("ignore"), tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_under_float16_the_loss_scale_handles_overflow_and_skip_counts_nothing(tiny_data, tmp_path):
  config = config_lib.load_experiment("mlp_fashion_mnist")
  for key, value in (("model.options.hidden", "(16,)"), ("data.batch_size", "64"), ("epochs", "2"),
                     ("progress", "false"), ("plot", "False"), ("strategy", "single"), ("nonfinite", "skip"),
                     ("precision", "mixed_float16"), ("loss_scale.initial", "1.6e7")):
    config_lib.apply_override(config, key, value)
  summary = experiment.train_and_evaluate(config, tmp_path / "run")
  first = summary["history"][0]
  assert first["train_loss_scale"] < 1.6e7  # overflowing steps halved the scale (and were not applied)
  assert summary["skipped_steps"] == 0  # those are the loss scale's to skip, not skip_nonfinite's
  assert summary["test_accuracy"] > 0.5  # it learns (chance: 0.1)
