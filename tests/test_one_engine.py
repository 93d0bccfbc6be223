"""One engine under `jdl train` and `jdl bench`: the same curves, evaluation at the optimizer's
evaluation parameters, the checkpoint monitor and its mode decided together, a step that composes."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jdl.losses
import jdl.models
import jdl.optim
from jdl import config as config_lib
from jdl.bench import engine, workloads
from jdl.checkpoint import Checkpointer
from jdl.train import create_train_state, experiment, make_eval_step, make_train_step, step


def _digits_config(epochs, optimizer="momentum", learning_rate=0.1, **optimizer_hparams):
  """`jdl train`'s config of the benchmark's digits_logreg workload (its splits, model, batch, optimizer)."""
  config = config_lib.base_config()
  config.name = "digits_logreg"
  config.data.name = "digits"
  config.data.train_split = workloads.TRAIN_SPLIT
  config.data.eval_split = workloads.VALID_SPLIT
  config.data.test_split = "test"
  config.data.batch_size = 32
  config.model.name = "logreg"
  config.optimizer.name = optimizer
  config.optimizer.learning_rate = learning_rate
  for key, value in optimizer_hparams.items():
    config.optimizer.hparams[key] = value
  config.epochs = epochs
  config.progress = "false"
  config.plot = False
  config.checkpoint.enabled = False
  config.strategy = "single"  # the tests see 8 CPU devices; the benchmark runs on one
  return config


@pytest.mark.parametrize("vmap", [False, True])
def test_the_benchmark_and_jdl_train_give_the_same_curve(tmp_path, vmap):
  epochs = 3
  config = _digits_config(epochs, momentum=0.8)
  config.metrics = ("f1:macro",)
  summary = experiment.train_and_evaluate(config, tmp_path / "run")
  steps_per_epoch = summary["history"][0]["step"]
  # The same workload as a benchmark run: one evaluation per epoch, the same seed and hyperparameters,
  # the same streamed metric.
  registered = workloads.get_workload("digits_logreg")
  wl = workloads.dataset_workload("digits_logreg_f1", dataset="digits", model="logreg", streamed=("f1:macro",),
                                  metric="f1_macro", target=registered.target, steps=epochs * steps_per_epoch,
                                  eval_every=steps_per_epoch, batch_size=registered.batch_size)
  problem = workloads.build(wl)
  spec = engine.RunSpec({"learning_rate": 0.1, "momentum": 0.8}, seed=0)
  other = engine.RunSpec({"learning_rate": 0.05, "momentum": 0.8}, seed=1)  # shares the vmapped program
  (bench, _) = engine.train_runs(wl, problem, "momentum", [spec, other], vmap=vmap)
  history = summary["history"]
  assert bench.curves["step"][1:] == [h["step"] for h in history]
  pairs = {"train_loss": "train_loss", "valid_loss": "eval_loss", "valid_accuracy": "eval_accuracy",
           "valid_f1_macro": "eval_f1_macro"}
  for bench_key, train_key in pairs.items():
    ours, theirs = bench.curves[bench_key][1:], [h[train_key] for h in history]
    if vmap:  # a batched matrix product sums in another order
      np.testing.assert_allclose(ours, theirs, rtol=1e-5, err_msg=bench_key)
    else:  # one engine, one data order, one program: the same numbers
      assert ours == theirs, bench_key
  assert bench.curves["test_accuracy"][-1] == pytest.approx(summary["test_accuracy"], abs=0 if not vmap else 1e-6)
  assert bench.curves["test_loss"][-1] == pytest.approx(summary["test_loss"], rel=0 if not vmap else 1e-5)


def test_schedule_free_is_evaluated_at_its_averaged_iterate_by_jdl_train(tmp_path):
  config = _digits_config(2, optimizer="schedule_free_sgd", learning_rate=1.0)
  config.checkpoint.enabled = True
  summary = experiment.train_and_evaluate(config, tmp_path / "run")
  # The trained state, restored: the training iterate y and the evaluation iterate x differ.
  model = jdl.models.create("logreg", num_classes=10)
  tx = experiment.build_optimizer(config, total_steps=summary["history"][-1]["step"])
  test = jdl.data.load("digits", "test")
  template = create_train_state(model, tx, jnp.zeros((1, 64)), seed=0)
  ckpt = Checkpointer(tmp_path / "run" / "checkpoints")
  state, _ = ckpt.restore(template)
  ckpt.close()
  x = jdl.optim.eval_params(state.opt_state, state.params)
  y = state.params
  assert not np.allclose(x["Dense_0"]["kernel"], y["Dense_0"]["kernel"])
  loss_fn = jdl.losses.get("sparse_categorical_crossentropy")

  def test_loss(params):
    return float(np.mean(loss_fn(model.apply({"params": params}, jnp.asarray(test["inputs"])),
                                 {"label": jnp.asarray(test["label"])})))

  assert summary["test_loss"] == pytest.approx(test_loss(x), rel=1e-5)
  assert abs(test_loss(y) - test_loss(x)) > 1e-3  # the training iterate would have given another figure


def test_the_checkpoint_monitor_and_its_mode_are_decided_together():
  logged = {"train_loss", "eval_loss"}  # a regression run: no accuracy
  group = config_lib.base_config().checkpoint
  assert experiment.resolve_monitor(group, logged | {"eval_accuracy"}, "checkpoint") == ("eval_accuracy", "max")
  # The default eval_accuracy becomes eval_loss, minimised (the bug: a user's mode="max" kept the worst).
  assert experiment.resolve_monitor(group, logged, "checkpoint") == ("eval_loss", "min")
  group.mode = "max"
  with pytest.raises(ValueError, match="checkpoint.mode: 'max' contradicts the monitor jdl chose"):
    experiment.resolve_monitor(group, logged, "checkpoint")
  group.mode, group.monitor = "auto", "eval_r2"
  with pytest.raises(ValueError, match="checkpoint.monitor: the run does not log 'eval_r2'; it logs eval_loss"):
    experiment.resolve_monitor(group, logged, "checkpoint")
  group.monitor = "eval_loss"
  assert experiment.resolve_monitor(group, logged, "checkpoint") == ("eval_loss", "min")
  # Without an evaluation split only the latest checkpoints are kept.
  group.monitor = "eval_accuracy"
  assert experiment.resolve_monitor(group, {"train_loss"}, "checkpoint") == (None, "max")


def test_a_regression_run_keeps_its_lowest_loss_checkpoint_as_the_best(tmp_path):
  config = config_lib.load_experiment("diabetes_regression")
  config.checkpoint.monitor = "eval_accuracy"  # the default, which a regression run does not log
  config.checkpoint.every_seconds, config.checkpoint.keep = 0.0, 1  # every epoch saved, the latest kept
  config.epochs, config.progress, config.plot = 6, "false", False
  summary = experiment.train_and_evaluate(config, tmp_path / "run")
  ckpt = Checkpointer(tmp_path / "run" / "checkpoints", monitor="eval_loss", mode="min")
  best = ckpt.best_epoch()
  ckpt.close()
  losses = {h["epoch"]: h["eval_loss"] for h in summary["history"]}
  assert best == min(losses, key=losses.get)
  assert best != max(losses, key=losses.get)  # the bug kept the highest loss as the best


def test_the_task_comes_from_the_dataset_and_the_config():
  info = jdl.data.info
  c = config_lib.load_experiment("breast_cancer_bce")
  assert experiment.resolve_task(c, info("breast_cancer")) == "binary"
  assert experiment.resolve_task(config_lib.load_experiment("diabetes_regression"), info("diabetes")) == "regression"
  assert experiment.resolve_task(config_lib.load_experiment("digits_attributes"), info("digits")) == "multilabel"
  assert experiment.resolve_task(config_lib.load_experiment("wine_two_heads"), info("wine")) == "multi_output"
  assert experiment.resolve_task(config_lib.load_experiment("mnist1d_mlp"), info("mnist1d")) == "classification"
  assert step.example_metrics_for("binary") is step.binary_correct
  assert step.example_metrics_for("classification") is step.top1_correct
  assert step.example_metrics_for("regression") is step.no_metrics


def test_per_head_losses_are_logged(tmp_path):
  config = config_lib.load_experiment("wine_two_heads")
  config.epochs, config.progress, config.plot = 2, "false", False
  config.checkpoint.enabled = False
  summary = experiment.train_and_evaluate(config, tmp_path / "run")
  last = summary["history"][-1]
  weights = {"cultivar": 1.0, "alcohol": 0.5}
  for prefix in ("train_", "eval_"):
    heads = {h: last[f"{prefix}loss/{h}"] for h in weights}
    assert last[f"{prefix}loss"] == pytest.approx(sum(weights[h] * v for h, v in heads.items()), rel=1e-5)
  assert summary["test_loss/alcohol"] > 0


LOSS = jdl.losses.get("sparse_categorical_crossentropy")


def _tiny():
  model = jdl.models.create("mlp", num_classes=3, hidden=(4,))
  tx = optax.sgd(0.1)
  state = create_train_state(model, tx, jnp.zeros((1, 5)), seed=0)
  batch = {"inputs": jnp.asarray(np.random.default_rng(0).normal(size=(8, 5)), jnp.float32),
           "label": jnp.asarray([0, 1, 2, 0, 1, 2, 0, 1])}
  return model, tx, state, batch


def test_make_train_step_rejects_unknown_options_at_once_listing_the_accepted_ones():
  model, tx, _, _ = _tiny()
  with pytest.raises(TypeError, match=r"make_train_step: unknown option\(s\) micro_batch; accepted options: "
                                      r"apply_fn, loss_fn, tx, input_key"):
    make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=tx, micro_batch=2)
  with pytest.raises(TypeError, match=r"make_train_step: missing option\(s\) tx"):
    make_train_step(apply_fn=model.apply, loss_fn=LOSS)
  with pytest.raises(TypeError, match="make_eval_step: unknown option"):
    make_eval_step(apply_fn=model.apply, loss_fn=LOSS, metric=["f1"])
  with pytest.raises(TypeError, match="batch_transforms: expected functions"):
    make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=tx, batch_transforms=[3])


def test_a_batch_transform_runs_inside_the_step_before_the_forward_pass():
  model, tx, state, batch = _tiny()
  keys = []

  def negate(state_, batch_, key):
    keys.append(key)
    return {**batch_, "inputs": -batch_["inputs"]}

  with_transform = make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=tx, input_key="inputs",
                                   batch_transforms=[negate])
  plain = make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=tx, input_key="inputs")
  got, m_got = jax.jit(with_transform)(state, batch)
  want, m_want = jax.jit(plain)(state, {**batch, "inputs": -batch["inputs"]})
  assert float(m_got["loss"]) == float(m_want["loss"])
  jax.tree.map(np.testing.assert_array_equal, got.params, want.params)
  assert len(keys) == 1  # traced once, with a key derived from the state
  assert with_transform.replace(input_key="image").config.input_key == "image"


def test_the_smoke_suites_digits_run_is_the_jdl_train_run(tmp_path):
  # The smoke suite's digits workload, budget, tuning seed and first adam trial, against `jdl train`. (The
  # registered workload validates on a quarter of train; here on 10%, so that epochs of 40 steps meet its
  # evaluations every 20.)
  from jdl.bench import search, suite as suite_lib

  smoke = suite_lib.get_suite("smoke")
  registered = workloads.get_workload("digits_logreg")
  assert registered.config["splits"] == ["train[:75%]", "train[75%:]", "test"]
  budget = {k: getattr(registered, k) for k in ("steps", "eval_every", "batch_size", "target")}
  wl = workloads.dataset_workload("digits_logreg_90", dataset="digits", model="logreg",
                                  **{**budget, **smoke.budgets["digits_logreg"]})
  hp = search.draw_trials(search.get_optimizer("adam"), smoke.trials, method=smoke.search, tune=smoke.tune)[0]
  (bench,) = engine.train_runs(wl, workloads.build(wl), "adam", [engine.RunSpec(hp, smoke.tuning_seed)])
  config = _digits_config(0, optimizer="adam", **{k: v for k, v in hp.items() if k != "learning_rate"})
  config.optimizer.learning_rate = hp["learning_rate"]
  config.seed = smoke.tuning_seed
  steps_per_epoch = 40  # 1,294 training examples, batch 32
  config.epochs = wl.steps // steps_per_epoch
  summary = experiment.train_and_evaluate(config, tmp_path / "run")
  at_epochs = [bench.curves["step"].index(h["step"]) for h in summary["history"]]  # evaluated every 20 steps
  np.testing.assert_allclose([bench.curves["valid_loss"][i] for i in at_epochs],
                             [h["eval_loss"] for h in summary["history"]], rtol=1e-5)
  assert [bench.curves["valid_accuracy"][i] for i in at_epochs] == pytest.approx(
      [h["eval_accuracy"] for h in summary["history"]], abs=1e-9)
