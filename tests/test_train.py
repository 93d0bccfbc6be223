"""The engine core: train step, fit loop, evaluation, early stopping."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jdl.losses
from jdl.data import pipeline
import jdl.models
from jdl.train import (EarlyStopping, Evaluator, Run, create_train_state, fit, make_eval_step,
                       make_train_step)
from jdl.train import loop as loop_lib

LOSS = jdl.losses.get("sparse_categorical_crossentropy")


def _blobs(n, seed=0, num_classes=3, dim=6):
  """Gaussian blobs: easy to separate, so a few epochs reach high accuracy."""
  centers = np.random.default_rng(1234).normal(0, 3, (num_classes, dim)).astype(np.float32)
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, n).astype(np.int32)
  inputs = centers[labels] + rng.normal(0, 0.5, (n, dim)).astype(np.float32)
  return {"inputs": inputs, "label": labels}


def _setup(tx=None, hidden=(16,), dropout=0.0, seed=0, dim=6):
  model = jdl.models.create("mlp", num_classes=3, hidden=hidden, dropout=dropout)
  tx = tx or optax.sgd(0.1, momentum=0.9)
  state = create_train_state(model, tx, jnp.zeros((1, dim)), seed=seed)
  train_step = make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=tx, input_key="inputs")
  eval_step = make_eval_step(apply_fn=model.apply, loss_fn=LOSS, input_key="inputs")
  return model, tx, state, train_step, eval_step


def test_train_step_equals_hand_written_optax_loop_bitwise():
  model, tx, state, train_step, _ = _setup(tx=optax.adam(1e-2))
  data = _blobs(64)
  params, opt_state = state.params, tx.init(state.params)

  @jax.jit
  def hand_step(params, opt_state, x, y):
    def loss_of(p):
      logits = model.apply({"params": p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = jax.value_and_grad(loss_of)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step = jax.jit(train_step)
  for i in range(5):
    batch = {k: v[i * 8:(i + 1) * 8] for k, v in data.items()}
    state, metrics = step(state, batch)
    params, opt_state, loss = hand_step(params, opt_state, batch["inputs"], batch["label"])
    np.testing.assert_array_equal(metrics["loss"], loss)
  assert int(state.step) == 5
  jax.tree.map(np.testing.assert_array_equal, state.params, params)
  jax.tree.map(np.testing.assert_array_equal, state.opt_state, opt_state)


def test_train_step_metrics_are_the_batch_means():
  model, _, state, train_step, _ = _setup()
  batch = {k: v[:10] for k, v in _blobs(10).items()}
  logits = model.apply({"params": state.params}, batch["inputs"])
  _, metrics = jax.jit(train_step)(state, batch)
  np.testing.assert_allclose(metrics["loss"], LOSS(logits, batch).mean(), rtol=1e-6)
  np.testing.assert_allclose(metrics["accuracy"], np.mean(np.argmax(logits, -1) == batch["label"]))


def test_masked_examples_do_not_contribute_to_the_gradient():
  _, _, state, train_step, _ = _setup(tx=optax.sgd(0.1))
  data = _blobs(8)
  half = {k: v[:4] for k, v in data.items()}
  masked = dict(data, mask=np.array([1, 1, 1, 1, 0, 0, 0, 0], np.float32))
  step = jax.jit(train_step)
  s_half, m_half = step(state, half)
  s_mask, m_mask = step(state, masked)
  np.testing.assert_allclose(m_half["loss"], m_mask["loss"], rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), s_half.params, s_mask.params)


def test_fit_learns_blobs_and_reports_throughput():
  _, _, state, train_step, eval_step = _setup()
  result = fit(state, train_step, _blobs(512), batch_size=32, epochs=3, eval_step=eval_step,
               eval_data=_blobs(200, seed=1), progress=False)
  assert [h["epoch"] for h in result.history] == [1, 2, 3]
  assert result.history[-1]["eval_accuracy"] > 0.95
  assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
  assert result.examples_per_second > 0 and result.compile_seconds > 0
  assert int(result.state.step) == 3 * (512 // 32)


def test_device_resident_and_streaming_paths_agree():
  outs = []
  for on_device in (True, False):
    _, _, state, train_step, eval_step = _setup(dropout=0.2)
    outs.append(fit(state, train_step, _blobs(300), batch_size=32, epochs=2, eval_step=eval_step,
                    eval_data=_blobs(50, seed=1), data_on_device=on_device, progress=False))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), outs[0].state.params,
               outs[1].state.params)
  for a, b in zip(outs[0].history, outs[1].history):
    assert a["eval_loss"] == pytest.approx(b["eval_loss"], rel=1e-5)


def test_fit_compiles_the_step_once(monkeypatch):
  _, _, state, train_step, eval_step = _setup()
  traces = []

  def counted(state, batch):
    traces.append(1)
    return train_step(state, batch)

  eval_traces = []

  def counted_eval(state, batch):
    eval_traces.append(1)
    return eval_step(state, batch)

  # 300 examples / batch 20 = 15 steps in 5 chunks of 3: one program for every chunk and epoch.
  fit(state, counted, _blobs(300), batch_size=20, epochs=3, eval_step=counted_eval,
      eval_data=_blobs(55, seed=1), eval_batch_size=10, chunks_per_epoch=5, progress=False)
  assert len(traces) == 1
  assert len(eval_traces) == 1


def test_same_seed_same_run_and_shuffling_depends_on_seed():
  runs = []
  for seed in (0, 0, 1):
    _, _, state, train_step, _ = _setup()
    runs.append(fit(state, train_step, _blobs(128), batch_size=16, epochs=2, seed=seed, progress=False))
  jax.tree.map(np.testing.assert_array_equal, runs[0].state.params, runs[1].state.params)
  assert not np.array_equal(runs[0].state.params["Dense_0"]["kernel"], runs[2].state.params["Dense_0"]["kernel"])


def test_evaluator_counts_every_example_of_an_uneven_last_batch():
  model, _, state, _, eval_step = _setup()
  data = _blobs(23)
  logits = model.apply({"params": state.params}, data["inputs"])
  expected_loss = float(np.mean(LOSS(logits, data)))
  expected_acc = float(np.mean(np.argmax(logits, -1) == data["label"]))
  for batch_size in (5, 23, 100):
    metrics = Evaluator(eval_step, batch_size)(state, data)
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(expected_acc)


def test_choose_chunks_divides_the_epoch():
  assert loop_lib.choose_chunks(468, 10) == 9
  assert loop_lib.choose_chunks(13, 10) == 1
  assert loop_lib.choose_chunks(4, 10) == 4


def test_bad_arguments_are_named():
  _, _, state, train_step, eval_step = _setup()
  with pytest.raises(ValueError, match="batch_size: 600 is larger than the 100"):
    fit(state, train_step, _blobs(100), batch_size=600, epochs=1, progress=False)
  with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
    fit(state, train_step, _blobs(100), batch_size=0, epochs=1, progress=False)
  with pytest.raises(ValueError, match="every array needs the same number"):
    fit(state, train_step, {"inputs": np.zeros((4, 6)), "label": np.zeros(3)}, batch_size=2, epochs=1)
  with pytest.raises(ValueError, match="eval_step and eval_data"):
    fit(state, train_step, _blobs(100), batch_size=10, epochs=1, eval_step=eval_step)
  with pytest.raises(ValueError, match="data_on_device"):
    fit(state, train_step, _blobs(100), batch_size=10, epochs=1, data_on_device="yes")


def test_divergence_raises_naming_the_metric_and_the_first_bad_step():
  _, _, state, train_step, _ = _setup(tx=optax.sgd(1e6))
  data = _blobs(64)
  data["inputs"] = data["inputs"] * 1e15  # activations overflow float32 within a few steps
  # The same steps by hand, in fit's data order: the first step whose loss is not finite.
  idx = np.concatenate([pipeline.epoch_batches(0, epoch, 64, 16) for epoch in (1, 2, 3)])
  by_hand, first_bad = state, None
  for i, idx_B in enumerate(idx):
    by_hand, metrics = jax.jit(train_step)(by_hand, {k: jnp.asarray(v[idx_B]) for k, v in data.items()})
    if first_bad is None and not np.isfinite(float(metrics["loss"])):
      first_bad = i + 1
  assert first_bad is not None
  epoch, batch = (first_bad - 1) // 4 + 1, (first_bad - 1) % 4 + 1
  with pytest.raises(FloatingPointError, match=rf"training diverged: train_loss is (nan|inf) at step {first_bad} "
                                               rf"\(epoch {epoch}, batch {batch} of 4\)"):
    fit(state, train_step, data, batch_size=16, epochs=3, progress=False)


def test_early_stopping_patience_and_restore_best():
  es = EarlyStopping(monitor="eval_loss", patience=2)
  run = Run(state={"w": jnp.array(0.0)}, history=[])
  losses = [1.0, 0.5, 0.6, 0.55, 0.4]
  for epoch, loss in enumerate(losses, 1):
    run.state = {"w": jnp.array(float(epoch))}
    run.epoch = epoch
    es.on_epoch_end(run, epoch, {"eval_loss": loss})
    if run.stop_training:
      break
  assert run.stop_training and es.stopped_epoch == 4 and es.best_epoch == 2
  es.on_train_end(run)
  assert float(run.state["w"]) == 2.0  # the best epoch's state
  assert es.state_dict() == {"best": 0.5, "best_epoch": 2, "wait": 2}


def test_early_stopping_mode_and_errors():
  assert EarlyStopping(monitor="eval_accuracy").mode == "max"
  assert EarlyStopping(monitor="eval_loss").mode == "min"
  with pytest.raises(ValueError, match="mode: expected 'auto', 'min' or 'max', got 'up'"):
    EarlyStopping(mode="up")
  with pytest.raises(KeyError, match="monitored metric 'eval_f1'"):
    EarlyStopping(monitor="eval_f1").on_epoch_end(Run(state=None, history=[]), 1, {"eval_loss": 1.0})


def test_early_stopping_stops_fit_and_keeps_the_best_state():
  _, _, state, train_step, eval_step = _setup(tx=optax.sgd(0.05))
  es = EarlyStopping(monitor="eval_accuracy", patience=1, min_delta=1.0)  # nothing counts as better
  result = fit(state, train_step, _blobs(128), batch_size=16, epochs=10, eval_step=eval_step,
               eval_data=_blobs(64, seed=1), callbacks=[es], progress=False)
  assert result.stopped_early and len(result.history) == 2
  assert es.best_epoch == 1
  assert int(result.state.step) == 128 // 16  # the state after epoch 1


def test_convolutional_models_train_on_the_device_and_match_streaming():
  # jdl.nn.Conv keeps XLA's fast CPU convolutions inside the epoch's scan, so 'auto' keeps the data on
  # the device for convolutional models too; streaming the same batches gives the same training.
  loss = jdl.losses.get("sparse_categorical_crossentropy")
  rng = np.random.default_rng(0)
  data = {"image": rng.integers(0, 255, (64, 8, 8, 1)).astype(np.uint8), "label": rng.integers(0, 10, 64)}
  model = jdl.models.create("cnn_small", num_classes=10, features=(4,), kernel_size=3, dropout=0.0)
  tx = optax.sgd(0.1)
  results = {}
  for placement in ("auto", False):
    state = create_train_state(model, tx, jnp.zeros((1, 8, 8, 1)), seed=0)
    step = make_train_step(apply_fn=model.apply, loss_fn=loss, tx=tx)
    results[placement] = fit(state, step, data, batch_size=16, epochs=2, progress=False, data_on_device=placement)
  assert results["auto"].data_on_device and not results[False].data_on_device
  np.testing.assert_allclose([h["train_loss"] for h in results["auto"].history],
                             [h["train_loss"] for h in results[False].history], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(results["auto"].state.params), jax.tree.leaves(results[False].state.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_micro_batches_give_the_whole_batch_update():
  # Without BatchNorm or dropout, k independent micro-batches compute the whole batch's mean loss and gradient.
  model, tx, state, whole_step, _ = _setup(tx=optax.adam(1e-2))
  split_step = make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=tx, input_key="inputs", micro_batches=4)
  data = _blobs(64)
  whole, split = state, state
  for i in range(3):
    batch = {k: jnp.asarray(v[i * 16:(i + 1) * 16]) for k, v in data.items()}
    whole, m_whole = jax.jit(whole_step)(whole, batch)
    split, m_split = jax.jit(split_step)(split, batch)
    np.testing.assert_allclose(float(m_split["loss"]), float(m_whole["loss"]), rtol=1e-6)
    assert float(m_split["accuracy"]) == float(m_whole["accuracy"])
  for a, b in zip(jax.tree.leaves(split.params), jax.tree.leaves(whole.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_micro_batches_normalise_batch_norm_per_micro_batch():
  # Ghost batch normalisation: the running statistics average the micro-batches' updates.
  model = jdl.models.create("cnn_small", num_classes=3, features=(2,), kernel_size=3, dropout=0.0)
  tx = optax.sgd(0.0)
  state = create_train_state(model, tx, jnp.zeros((1, 4, 4, 1)), seed=0)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 4, 4, 1)), jnp.float32)
  batch = {"image": x, "label": jnp.zeros((8,), jnp.int32)}
  new, _ = jax.jit(make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=tx, micro_batches=2))(state, batch)
  parts = []
  for half in (x[:4], x[4:]):
    _, updated = model.apply({"params": state.params, **state.model_state}, half, train=True, mutable=["batch_stats"])
    parts.append(updated["batch_stats"])
  want = jax.tree.map(lambda a, b: (a + b) / 2, *parts)
  for a, b in zip(jax.tree.leaves(new.model_state["batch_stats"]), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_micro_batches_bad_values_are_named():
  model, tx, state, _, _ = _setup()
  with pytest.raises(ValueError, match="micro_batches: expected a positive int, got 0"):
    make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=tx, input_key="inputs", micro_batches=0)
  step = make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=tx, input_key="inputs", micro_batches=3)
  batch = {k: jnp.asarray(v) for k, v in _blobs(16).items()}
  with pytest.raises(ValueError, match="batch of 16 examples .* 3 equal micro-batches"):
    step(state, batch)
