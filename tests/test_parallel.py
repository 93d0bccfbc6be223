"""Strategies: every one computes what `single` computes, on 8 simulated CPU devices."""

import json
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

import jdl.losses
import jdl.models
from jdl import config as config_lib
from jdl import optim
from jdl.checkpoint import Checkpointer
from jdl.train import create_train_state, experiment, fit, make_train_step, parallel

LOSS = jdl.losses.get("sparse_categorical_crossentropy")
STRATEGIES = ("data_parallel", "pmap", "model_parallel")


def _config(**overrides):
  """The Fashion-MNIST MLP experiment, shrunk: hidden 32 (its 784×32 kernel is split by model_parallel)."""
  config = config_lib.load_experiment("mlp_fashion_mnist")
  config.name = "tiny"
  config.model.options.hidden = (32,)
  config.data.batch_size = 64
  config.data.eval_batch_size = 100  # not a multiple of 8: rounded up, padding masked
  config.optimizer.schedule.name = "constant"
  config.progress = "false"
  config.epochs = 2
  for key, value in overrides.items():
    config_lib.apply_override(config, key, value)
  return config


class TinyBatchNormCNN(nn.Module):
  """Conv → BatchNorm → ReLU → global pool → Dense(64) → Dense(3): batch statistics matter."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(8, (3, 3))(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    x = nn.relu(x).mean(axis=(1, 2))
    return nn.Dense(3)(nn.relu(nn.Dense(64)(x)))


def _images(n, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 3, n).astype(np.int32)
  images = rng.normal(0, 1, (n, 8, 8, 1)).astype(np.float32) + labels[:, None, None, None]
  return {"image": images, "label": labels}


def _model(kind):
  return jdl.models.create("mlp", num_classes=3, hidden=(64,)) if kind == "mlp" else TinyBatchNormCNN()


def _strategy(name):
  # A low threshold so the tiny models' kernels (8·8·64, 64·64) are split too.
  return parallel.create(name, min_kernel_size=256) if name == "model_parallel" else parallel.create(name)


def _run(kind, strategy, on_device=True, tx=None, steps=20):
  model = _model(kind)
  tx = tx or optax.sgd(0.05, momentum=0.9)
  state = create_train_state(model, tx, jnp.zeros((1, 8, 8, 1)), seed=0)
  train_step = make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=tx)
  # 160 examples / batch 16 = 10 steps an epoch.
  return fit(state, train_step, _images(160), batch_size=16, epochs=steps // 10, data_on_device=on_device,
             progress=False, strategy=strategy)


def _assert_close(a, b, rtol=1e-5, atol=1e-6):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol), a, b)


@pytest.mark.parametrize("kind", ["mlp", "batchnorm_cnn"])
def test_every_strategy_trains_to_the_single_device_parameters(kind):
  # (Evaluation under every strategy: test_every_strategy_gives_the_single_summary.)
  reference = _run(kind, "single")
  for name in STRATEGIES:
    result = _run(kind, _strategy(name))
    assert int(result.state.step) == 20
    _assert_close(result.state.params, reference.state.params)
    _assert_close(result.state.model_state, reference.state.model_state)  # BatchNorm running statistics
    for got, want in zip(result.history, reference.history):
      for key in ("train_loss", "train_accuracy"):
        assert got[key] == pytest.approx(want[key], rel=1e-5), (name, key)


def test_streaming_path_under_pmap_matches_single():
  reference = _run("mlp", "single", on_device=False)
  _assert_close(_run("mlp", _strategy("pmap"), on_device=False).state.params, reference.state.params)


def test_strategies_place_state_and_batches_as_documented():
  model = _model("mlp")
  tx = optax.adam(1e-3)
  state = create_train_state(model, tx, jnp.zeros((1, 8, 8, 1)))
  dp = parallel.create("data_parallel")
  placed = dp.place_state(state)
  assert all(leaf.sharding.spec == P() and len(leaf.sharding.device_set) == 8 for leaf in jax.tree.leaves(placed))
  assert dp.data_parallel_size == 8 and dp.axis_name is None

  mp = _strategy("model_parallel")
  assert dict(mp.mesh.shape) == {"data": 4, "model": 2} and mp.data_parallel_size == 4
  placed = mp.place_state(state)
  # Dense_0 is 64→64 (4096 elements > 256, 64 even), Dense_1 is 64→3 (192 elements): only the first
  # kernel and its two Adam moments are split, each device holding half the output features.
  sharded = mp.sharded_paths(state)
  assert sharded == [".params['Dense_0']['kernel']", ".opt_state[0].mu['Dense_0']['kernel']",
                     ".opt_state[0].nu['Dense_0']['kernel']"]
  kernel = placed.params["Dense_0"]["kernel"]
  assert kernel.sharding.spec == P(None, "model")
  assert {shard.data.shape for shard in kernel.addressable_shards} == {(64, 32)}
  assert placed.params["Dense_1"]["kernel"].sharding.spec == P()
  assert placed.params["Dense_0"]["bias"].sharding.spec == P()
  assert mp.describe()["mesh"] == {"data": 4, "model": 2}

  assert parallel.create("auto").name == "data_parallel"
  assert parallel.create("auto", devices=jax.devices()[:1]).name == "single"
  assert parallel.get(None).name == "single"


def test_pmap_strategy_computes_what_jax_pmap_computes():
  """The pmap strategy's shard_map program against a literal jax.pmap over stacked state copies."""
  model = _model("mlp")
  tx = optax.sgd(0.1, momentum=0.9)
  state = create_train_state(model, tx, jnp.zeros((1, 8, 8, 1)))
  step = make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=tx, axis_name="data")
  data = _images(48)
  batches = [{k: v[i * 16:(i + 1) * 16] for k, v in data.items()} for i in range(3)]

  strategy = parallel.create("pmap")
  # jax.pmap's layout: one copy of the state per device, the batch reshaped to (devices, B/devices, ...);
  # placed along the devices up front so that jax.pmap compiles once.
  stacked_sharding = jax.sharding.NamedSharding(strategy.mesh, P("data"))
  stacked = jax.device_put(jax.tree.map(lambda x: np.stack([np.asarray(x)] * 8), state), stacked_sharding)
  ours = strategy.place_state(state)  # shares buffers with `state`, which the donation below consumes
  compiled = strategy.compile_step(strategy.bind_train_step(step), ours, batches[0])
  for batch in batches:
    ours, our_metrics = compiled(ours, jax.device_put(batch, strategy.batch_sharding))

  pmapped = jax.pmap(step, axis_name="data")
  for batch in batches:
    shards = jax.device_put({k: v.reshape((8, 2) + v.shape[1:]) for k, v in batch.items()}, stacked_sharding)
    stacked, metrics = pmapped(stacked, shards)
  theirs = jax.tree.map(lambda x: x[0], stacked)
  _assert_close(ours.params, theirs.params, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(our_metrics["loss"], metrics["loss"][0], rtol=1e-6)


def test_pmap_with_uneven_masks_still_averages_over_the_global_batch():
  """Masked examples all on some devices: the psum of per-device sums over the global count is exact."""
  model = _model("mlp")
  tx = optax.sgd(0.1)
  state = create_train_state(model, tx, jnp.zeros((1, 8, 8, 1)))
  batch = dict(_images(16), mask=np.array([1.0] * 5 + [0.0] * 11, np.float32))  # devices 3-7 see no example
  single, single_metrics = jax.jit(make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=tx))(state, batch)
  strategy = parallel.create("pmap")
  step = strategy.bind_train_step(make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=tx))
  placed = strategy.place_state(state)
  compiled = strategy.compile_step(step, placed, batch)
  ours, metrics = compiled(placed, jax.device_put(batch, strategy.batch_sharding))
  _assert_close(ours.params, single.params)
  np.testing.assert_allclose(metrics["loss"], single_metrics["loss"], rtol=1e-6)
  np.testing.assert_allclose(metrics["accuracy"], single_metrics["accuracy"], rtol=1e-6)


def test_batch_size_not_divisible_by_the_devices_is_an_error_naming_both():
  model = _model("mlp")
  tx = optax.sgd(0.1)
  state = create_train_state(model, tx, jnp.zeros((1, 8, 8, 1)))
  step = make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=tx)
  for name in ("data_parallel", "pmap"):
    with pytest.raises(ValueError, match=r"batch_size: 20 is not divisible by the 8 devices the "
                                         rf"{name} strategy splits every batch over; use a multiple of 8"):
      fit(state, step, _images(160), batch_size=20, epochs=1, progress=False, strategy=name)
  with pytest.raises(ValueError, match="batch_size: 18 is not divisible by the 4 devices"):
    fit(state, step, _images(160), batch_size=18, epochs=1, progress=False, strategy="model_parallel")
  with pytest.raises(ValueError, match="model_axis_size: 3 does not divide the 8 devices"):
    parallel.create("model_parallel", model_axis_size=3)
  with pytest.raises(ValueError, match="strategy: expected one of auto, data_parallel, model_parallel, pmap, "
                                       "single, got 'ddp'"):
    parallel.create("ddp")
  with pytest.raises(TypeError, match="pmap strategy .* axis_name keyword"):
    fit(state, lambda s, b: (s, {}), _images(160), batch_size=16, epochs=1, progress=False, strategy="pmap")


def test_experiment_rejects_an_indivisible_batch_before_touching_the_workdir(tiny_data, tmp_path):
  with pytest.raises(ValueError, match="data.batch_size: 60 is not divisible by the 8 devices"):
    experiment.train_and_evaluate(_config(**{"data.batch_size": "60", "strategy": "pmap"}), tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_every_strategy_gives_the_single_summary(tiny_data, tmp_path):
  # The test split is evaluated once, at the end; no per-epoch evaluation, checkpoints or plots (time).
  overrides = {"checkpoint.enabled": "False", "plot": "False", "data.eval_split": ""}
  summaries = {name: experiment.train_and_evaluate(_config(**overrides, strategy=name), tmp_path / name)
               for name in ("single", *STRATEGIES)}
  reference = summaries["single"]
  assert reference["strategy"]["name"] == "single"
  assert reference["test_accuracy"] > 0.9
  for name, summary in summaries.items():
    assert summary["test_loss"] == pytest.approx(reference["test_loss"], rel=1e-5), name
    assert summary["test_accuracy"] == pytest.approx(reference["test_accuracy"], rel=1e-5), name
  on_disk = json.loads((tmp_path / "model_parallel" / "summary.json").read_text())
  assert on_disk["strategy"]["mesh"] == {"data": 4, "model": 2}


def test_gradient_accumulation_equals_one_step_on_the_k_times_larger_batch():
  model = _model("mlp")
  k, micro = 4, 8
  big_tx = optim.from_config({"name": "adam", "learning_rate": 1e-2})
  acc_tx = optim.from_config({"name": "adam", "learning_rate": 1e-2, "accumulate_steps": k})
  data = _images(k * micro * 2)
  big_state = create_train_state(model, big_tx, jnp.zeros((1, 8, 8, 1)))
  acc_state = create_train_state(model, acc_tx, jnp.zeros((1, 8, 8, 1)))
  big_step = jax.jit(make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=big_tx))
  acc_step = jax.jit(make_train_step(apply_fn=model.apply, loss_fn=LOSS, tx=acc_tx))
  for update in range(2):
    big_state, _ = big_step(big_state, {key: v[update * k * micro:(update + 1) * k * micro] for key, v in data.items()})
    for i in range(k):
      start = (update * k + i) * micro
      before = acc_state.params
      acc_state, _ = acc_step(acc_state, {key: v[start:start + micro] for key, v in data.items()})
      if i < k - 1:  # parameters move only on the k-th micro-batch
        jax.tree.map(np.testing.assert_array_equal, acc_state.params, before)
    _assert_close(acc_state.params, big_state.params)


RESTORE_SCRIPT = """
import json, sys
import jax, jax.numpy as jnp, numpy as np, optax
import jdl.models
from jdl.checkpoint import Checkpointer
from jdl.train import create_train_state, parallel

model = jdl.models.create("mlp", num_classes=3, hidden=(64,))
state = create_train_state(model, optax.adam(1e-3), jnp.zeros((1, 8, 8, 1)), seed=1)
target = parallel.create(sys.argv[2]).place_state(state)
restored, meta = Checkpointer(sys.argv[1]).restore(target)
leaves = jax.tree.leaves(restored)
print(json.dumps({"devices": jax.device_count(), "epoch": meta["epoch"],
                  "sums": [float(np.sum(np.asarray(x, np.float64))) for x in leaves],
                  "shardings": sorted({type(x.sharding).__name__ for x in leaves})}))
"""


def test_a_checkpoint_restores_under_another_device_count_and_strategy(tmp_path):
  model = _model("mlp")
  tx = optax.adam(1e-3)
  state = _strategy("model_parallel").place_state(create_train_state(model, tx, jnp.zeros((1, 8, 8, 1)), seed=0))
  assert state.params["Dense_0"]["kernel"].sharding.spec == P(None, "model")
  saved = jax.tree.map(np.asarray, state)
  ckpt = Checkpointer(tmp_path / "ckpt")
  ckpt.save(1, state, {"epoch": 1})  # 8 devices, kernels split over the model axis
  ckpt.wait()

  fresh = create_train_state(model, tx, jnp.zeros((1, 8, 8, 1)), seed=1)
  for name in ("single", "data_parallel", "pmap"):
    target = parallel.create(name).place_state(fresh)
    restored, meta = ckpt.restore(target)
    assert meta["epoch"] == 1
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, restored), saved)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(target)):
      assert got.sharding.is_equivalent_to(want.sharding, got.ndim)
  ckpt.close()

  # And in a process with one device, as a run resumed on a smaller machine would ('auto' is 'single' there).
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", textwrap.dedent(RESTORE_SCRIPT), str(tmp_path / "ckpt"), "auto"],
                       capture_output=True, text=True, env=env, timeout=180, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.loads(out.stdout.strip().splitlines()[-1])
  assert report["devices"] == 1 and report["epoch"] == 1
  assert report["shardings"] == ["SingleDeviceSharding"]
  np.testing.assert_allclose(report["sums"], [float(np.sum(np.asarray(x, np.float64)))
                                              for x in jax.tree.leaves(saved)], rtol=1e-12)


def test_a_single_device_checkpoint_restores_sharded(tmp_path):
  model = _model("mlp")
  tx = optax.adam(1e-3)
  state = create_train_state(model, tx, jnp.zeros((1, 8, 8, 1)), seed=0)
  ckpt = Checkpointer(tmp_path / "ckpt")
  ckpt.save(1, state, {"epoch": 1})  # on device 0 only
  ckpt.wait()
  strategy = _strategy("model_parallel")
  fresh = strategy.place_state(create_train_state(model, tx, jnp.zeros((1, 8, 8, 1)), seed=3))
  restored, _ = ckpt.restore(fresh)
  ckpt.close()
  assert restored.params["Dense_0"]["kernel"].sharding.spec == P(None, "model")
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, restored), jax.tree.map(np.asarray, state))
