"""Mixed precision wired into the train step: bfloat16 trains, float16 with loss scaling does not diverge."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import jdl.losses
import jdl.models
from jdl.train import (DynamicLossScale, LossScaledTrainState, create_train_state, experiment, fit, make_eval_step,
                       make_train_step, with_loss_scale)
from test_parallel import _config

LOSS = jdl.losses.get("sparse_categorical_crossentropy")


def _images(n, seed=0):
  """Three well separated classes of 8×8 noise images: class k lights rows 2k and 2k+1."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 3, n).astype(np.int32)
  images = rng.normal(0, 0.5, (n, 8, 8, 1)).astype(np.float32)
  for k in range(3):
    images[labels == k, 2 * k:2 * k + 2] += 2.0
  return {"image": images, "label": labels}


def _setup(precision, tx=None):
  # jdl's MLP casts its input to float32 itself: the step must still compute in the policy's dtype.
  model = jdl.models.create("mlp", num_classes=3, hidden=(64,))
  tx = tx or optax.adam(3e-3)
  state = create_train_state(model, tx, jnp.zeros((1, 8, 8, 1)), seed=0)
  train_step = make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=tx, precision=precision)
  eval_step = make_eval_step(apply_fn=model.apply, loss_fn=LOSS, precision=precision)
  return state, train_step, eval_step


def _matmul_dtypes(step, state, batch):
  text = jax.jit(step).lower(state, batch).as_text()
  return set(re.findall(r"stablehlo\.dot_general.*-> tensor<[0-9x]*(\w+)>", text))


def test_bfloat16_step_computes_in_bfloat16_and_keeps_float32_masters():
  state, train_step, eval_step = _setup("mixed_bfloat16")
  batch = {k: v[:16] for k, v in _images(16).items()}
  assert _matmul_dtypes(train_step, state, batch) == {"bf16"}
  assert _matmul_dtypes(eval_step, state, batch) == {"bf16"}
  assert _matmul_dtypes(_setup(None)[1], state, batch) == {"f32"}
  new, metrics = jax.jit(train_step)(state, batch)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((new.params, new.opt_state))
             if jnp.issubdtype(leaf.dtype, jnp.floating))
  assert metrics["loss"].dtype == jnp.float32 and np.isfinite(float(metrics["loss"]))


def test_a_bfloat16_run_trains(tiny_data, tmp_path):
  overrides = {"checkpoint.enabled": "False", "plot": "False", "data.eval_split": "", "strategy": "single"}
  summary = experiment.train_and_evaluate(_config(**overrides, precision="mixed_bfloat16"), tmp_path / "bf16")
  assert summary["precision"] == "mixed_bfloat16"
  assert summary["test_accuracy"] > 0.9
  assert summary["history"][-1]["train_loss"] < summary["history"][0]["train_loss"]


def test_float16_overflowing_step_is_skipped_and_the_scale_halved():
  state, train_step, _ = _setup("mixed_float16", tx=optax.sgd(0.1))
  state = with_loss_scale(state, DynamicLossScale.create(2.0**40, max_scale=2.0**40))  # float16 overflows
  batch = {k: v[:16] for k, v in _images(16).items()}
  new, metrics = jax.jit(train_step)(state, batch)
  jax.tree.map(np.testing.assert_array_equal, new.params, state.params)
  assert float(new.loss_scale.scale) == 2.0**39 and int(new.step) == 1
  assert float(metrics["loss_scale"]) == 2.0**40 and np.isfinite(float(metrics["loss"]))
  ok = with_loss_scale(state, DynamicLossScale.create(2.0**10))
  moved, _ = jax.jit(train_step)(ok, batch)
  assert not np.array_equal(moved.params["Dense_0"]["kernel"], state.params["Dense_0"]["kernel"])
  assert float(moved.loss_scale.scale) == 2.0**10 and int(moved.loss_scale.counter) == 1


def test_float16_with_dynamic_loss_scaling_does_not_diverge():
  state, train_step, _ = _setup("mixed_float16")
  # Start far too high: the first steps overflow and are skipped until the scale fits; it grows again
  # every 5 finite steps and backs off on each overflow.
  state = with_loss_scale(state, DynamicLossScale.create(2.0**30, growth_interval=5, max_scale=2.0**30))
  result = fit(state, train_step, _images(320), batch_size=32, epochs=5, progress=False)
  assert isinstance(result.state, LossScaledTrainState)
  scale = float(result.state.loss_scale.scale)
  assert 1.0 <= scale < 2.0**30
  for logs in result.history:
    assert np.isfinite(logs["train_loss"])
  assert result.history[-1]["train_accuracy"] > 0.9
  assert result.history[0]["train_loss_scale"] < 2.0**30  # it backed off during the first epoch


def test_precision_arguments_are_checked_when_the_step_is_built(tiny_data, tmp_path):
  with pytest.raises(ValueError, match="precision: expected 'float32', 'mixed_bfloat16' or 'mixed_float16', "
                                       "got 'half'"):
    experiment.train_and_evaluate(_config(precision="half"), tmp_path / "bad")
  with pytest.raises(ValueError, match="unknown policy 'float8'"):
    make_train_step(apply_fn=None, loss_fn=LOSS, tx=optax.sgd(0.1), precision="float8")
  with pytest.raises(TypeError, match="precision: expected a Policy or a policy name"):
    make_eval_step(apply_fn=None, loss_fn=LOSS, precision=16)
  state, train_step, _ = _setup("mixed_float16")
  with pytest.raises(ValueError, match=r"needs a dynamic loss scale in the state; expected a LossScaledTrainState "
                                       r"\(jdl.train.with_loss_scale\(state\)\), got TrainState"):
    jax.jit(train_step)(state, {k: v[:8] for k, v in _images(8).items()})


def test_a_float16_run_checkpoints_its_loss_scale(tiny_data, tmp_path):
  config = _config(precision="mixed_float16", epochs="1", plot="False", strategy="pmap")
  summary = experiment.train_and_evaluate(config, tmp_path / "run")
  assert summary["test_accuracy"] > 0.5 and np.isfinite(summary["test_loss"])
  with ocp.StandardCheckpointer() as restorer:
    saved = restorer.restore(tmp_path / "run" / "checkpoints" / "1" / "state")
  # 576 training examples (90% of 640) / batch 64 = 9 finite steps at the initial scale 2**15 (growth every 2000).
  assert float(saved["loss_scale"]["scale"]) == 2.0**15
  assert int(saved["loss_scale"]["counter"]) == 9
