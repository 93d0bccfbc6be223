"""jdl.quantize (int8 post-training and quantization-aware), jdl quantize and jdl export, against hand computations."""

import json
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import use_tiny_data

import jdl
from jdl import cli
from jdl import quantize as Q
from jdl.models.mlp import MLP
from jdl.models.small_cnn import CNNSmall
from jdl.nn.layers import Conv, Dense

# One worker runs this module, so that its module-scoped run is set up once (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("quantize")


class Single(nn.Module):
  """One layer, called as jdl calls its models (``train=``)."""

  layer: nn.Module

  def __call__(self, x, train=False):
    del train
    return self.layer(x)


def test_quantize_kernel_per_output_channel_by_hand():
  kernel = np.array([[1.27, -0.5], [-0.635, 0.25], [0.0, 1.0]], np.float32)  # 3 inputs, 2 output channels
  q, scale = Q.quantize_kernel(kernel)
  np.testing.assert_allclose(scale, [0.01, 1.0 / 127], rtol=1e-6)
  np.testing.assert_array_equal(q, [[127, -64], [-64, 32], [0, 127]])  # -63.5 and 31.75 round to even/nearest
  assert q.dtype == jnp.int8
  q, scale = Q.quantize_kernel(np.zeros((2, 3), np.float32))
  np.testing.assert_array_equal(scale, [1.0, 1.0, 1.0])


def _hand_int8(x, kernel, bias, act_scale, conv=None):
  """The int8 layer in numpy integers: round, clip, exact int64 products, then the float rescale."""
  qw, sw = (np.asarray(a) for a in Q.quantize_kernel(kernel))
  qx = np.clip(np.round(np.asarray(x) / act_scale), -127, 127).astype(np.int64)
  acc = qx @ qw.astype(np.int64) if conv is None else conv(qx, qw.astype(np.int64))
  return acc, acc * (act_scale * sw) + bias


def test_int8_dense_equals_the_hand_computation():
  rng = np.random.default_rng(0)
  model = Single(Dense(4))
  x = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
  variables = model.init(jax.random.key(0), x)
  params = variables["params"]["layer"]
  qm = Q.quantize(model, variables, [x])
  act_scale = float(np.max(np.abs(x)) / 127)
  assert float(qm.layers["layer"]["act_scale"]) == pytest.approx(act_scale, rel=1e-6)
  acc, expected = _hand_int8(x, params["kernel"], np.asarray(params["bias"]), act_scale)
  np.testing.assert_allclose(qm.apply(x), expected, rtol=1e-5, atol=1e-6)
  # The integers themselves: the int32 sums XLA computes are the exact ones.
  qx = Q.quantize_tensor(x, qm.layers["layer"]["act_scale"])
  ints = jax.lax.dot_general(qx, qm.layers["layer"]["kernel"], (((1,), (0,)), ((), ())),
                             preferred_element_type=jnp.int32)
  np.testing.assert_array_equal(ints, acc)
  assert np.max(np.abs(np.asarray(qm.apply(x)) - np.asarray(model.apply(variables, x)))) < 0.05


@pytest.mark.parametrize("channels, strides, padding", [(1, 1, 1), (16, 2, "SAME"), (3, 1, "VALID")])
def test_int8_conv_equals_the_hand_computation(channels, strides, padding):
  rng = np.random.default_rng(1)
  model = Single(Conv(5, (3, 3), strides=strides, padding=padding))  # 1 or 3 input channels: jdl's patches path
  x = jnp.asarray(rng.uniform(size=(2, 9, 9, channels)), jnp.float32)
  variables = model.init(jax.random.key(0), x)
  qm = Q.quantize(model, variables, [x])
  act_scale = float(np.max(np.abs(x)) / 127)
  def conv(qx, qw):  # float32 is exact here: |sums| <= 9 * 16 * 127² < 2^24
    pads = [(1, 1), (1, 1)] if padding == 1 else padding
    return np.asarray(jax.lax.conv_general_dilated(
        jnp.asarray(qx, jnp.float32), jnp.asarray(qw, jnp.float32), (strides, strides), pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))).astype(np.int64)

  params = variables["params"]["layer"]
  _, expected = _hand_int8(x, params["kernel"], np.asarray(params["bias"]), act_scale, conv)
  np.testing.assert_allclose(qm.apply(x), expected, rtol=1e-5, atol=1e-5)


def test_batch_norm_folding_leaves_the_float_outputs_unchanged():
  model = CNNSmall(num_classes=10, features=(4, 6), kernel_size=3)
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.uniform(size=(8, 12, 12, 1)), jnp.float32)
  variables = jax.tree.map(lambda a: a, model.init(jax.random.key(0), x))
  for name in ("bn_0", "bn_1"):  # statistics and affine parameters far from the identity
    n = variables["batch_stats"][name]["mean"].shape[0]
    variables["batch_stats"][name] = {"mean": jnp.asarray(rng.normal(size=n), jnp.float32),
                                      "var": jnp.asarray(rng.uniform(0.2, 3.0, size=n), jnp.float32)}
    variables["params"][name] = {"scale": jnp.asarray(rng.uniform(0.5, 2, size=n), jnp.float32),
                                 "bias": jnp.asarray(rng.normal(size=n), jnp.float32)}
  infos = Q.inspect_layers(model, variables, x)
  assert [(i.path, i.folds_into) for i in infos if i.kind == "batch_norm"] == [("bn_0", "conv_0"), ("bn_1", "conv_1")]
  weights, folded = Q.fold_batch_norm(variables, infos)
  rest = Q._without(variables, [*weights, *folded])  # pylint: disable=protected-access
  _, logits = Q._capture_inputs(model, rest, weights, folded, x, set())  # pylint: disable=protected-access
  np.testing.assert_allclose(logits, model.apply(variables, x), rtol=1e-5, atol=1e-5)
  qm = Q.quantize(model, variables, [x])
  assert qm.folded == {"bn_0": "conv_0", "bn_1": "conv_1"} and "batch_stats" not in qm.rest
  assert set(qm.layers) == {"conv_0", "conv_1", "fc"}


def test_calibration_is_deterministic_and_percentile_clips_outliers():
  model = MLP(num_classes=3, hidden=(8,))
  rng = np.random.default_rng(3)
  batches = [jnp.asarray(rng.normal(size=(64, 10)), jnp.float32) for _ in range(3)]
  batches[1] = batches[1].at[0, 0].set(40.0)  # one outlier
  variables = model.init(jax.random.key(0), batches[0])
  a = Q.quantize(model, variables, batches)
  b = Q.quantize(model, variables, batches)
  for path in a.layers:
    assert float(a.layers[path]["act_scale"]) == float(b.layers[path]["act_scale"])
  assert float(a.layers["Dense_0"]["act_scale"]) == pytest.approx(40.0 / 127)
  p = Q.quantize(model, variables, batches, calibration_method="percentile", percentile=99.0)
  expected = np.mean([np.percentile(np.abs(np.asarray(x)), 99.0) for x in batches]) / 127
  assert float(p.layers["Dense_0"]["act_scale"]) == pytest.approx(expected, rel=1e-5)
  d = Q.quantize(model, variables, batches[:1], method="dynamic")
  assert "act_scale" not in d.layers["Dense_0"]
  np.testing.assert_allclose(d.apply(batches[1]), model.apply(variables, batches[1]), atol=0.5)


def test_a_convolution_kept_in_float_keeps_its_batch_norm():
  model = CNNSmall(num_classes=10, features=(4, 6), kernel_size=3)
  x = jnp.asarray(np.random.default_rng(4).uniform(size=(8, 12, 12, 1)), jnp.float32)
  variables = model.init(jax.random.key(0), x)
  qm = Q.quantize(model, variables, [x], keep_float=["conv_0"])
  assert set(qm.layers) == {"conv_1", "fc"} and qm.folded == {"bn_1": "conv_1"}
  assert "conv_0" in qm.rest["params"] and "bn_0" in qm.rest["batch_stats"]
  np.testing.assert_allclose(qm.apply(x), model.apply(variables, x), atol=0.05)


def test_unsupported_layers_are_named_and_can_stay_in_float():
  model = MLP(num_classes=3, hidden=(8,), activation="prelu")
  x = jnp.ones((4, 10))
  variables = model.init(jax.random.key(0), x)
  with pytest.raises(Q.UnsupportedLayerError, match=r"cannot quantize PReLU_0 \(PReLU\).*keep_float=\['PReLU_0'\]"):
    Q.quantize(model, variables, [x])
  qm = Q.quantize(model, variables, [x], keep_float=["PReLU_0"])
  assert set(qm.layers) == {"Dense_0", "Dense_1"} and "PReLU_0" in qm.rest["params"]
  np.testing.assert_allclose(qm.apply(x), model.apply(variables, x), atol=0.05)
  with pytest.raises(ValueError, match="keep_float: Dense_7 not among the model's layers"):
    Q.quantize(model, variables, [x], keep_float=["Dense_7"])


@pytest.mark.parametrize("kwargs, message", [
    ({"calibration": []}, "calibration: expected at least one batch of inputs, got none"),
    ({"method": "float8"}, "method: expected one of static, dynamic, got 'float8'"),
    ({"calibration_method": "mse"}, "calibration_method: expected one of minmax, percentile"),
])
def test_bad_quantize_arguments(kwargs, message):
  model = Single(Dense(2))
  variables = model.init(jax.random.key(0), jnp.ones((1, 3)))
  kwargs = {"calibration": [jnp.ones((1, 3))], **kwargs}
  with pytest.raises(ValueError, match=message):
    Q.quantize(model, variables, **kwargs)


def test_fake_quant_passes_gradients_straight_through_and_init_is_unchanged():
  x = jnp.array([0.1, 0.26, -0.9])
  np.testing.assert_allclose(Q.fake_quant(x, 0.5 / 127 * 2), np.round(x / (1 / 127)) / 127, rtol=1e-6)
  np.testing.assert_allclose(jax.grad(lambda v: jnp.sum(Q.fake_quant(v, 0.1) * jnp.arange(3.0)))(x), [0, 1, 2])
  model = MLP(num_classes=3, hidden=(8,))
  v = jnp.ones((2, 5))
  plain = model.init(jax.random.key(0), v)
  with nn.intercept_methods(Q.fake_quant_interceptor):
    qat = model.init(jax.random.key(0), v)
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), plain, qat))
  apply = Q.fake_quant_apply(model.apply)
  out = apply(plain, v)
  assert not np.allclose(out, model.apply(plain, v), rtol=0, atol=0) and np.allclose(out, model.apply(plain, v),
                                                                                      atol=0.05)


# --- runs: jdl train --config.quantization.enabled, jdl quantize, jdl export -----------------------------------

SMALL = ["--config.model.options.hidden=(16,)", "--config.data.batch_size=64", "--config.data.eval_batch_size=100",
         "--config.progress=false", "--config.plot=false", "--config.epochs=2", "--config.checkpoint.every_seconds=0"]


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory, tiny_dirs):
  with pytest.MonkeyPatch.context() as mp:
    use_tiny_data(tiny_dirs, mp)
    root = tmp_path_factory.mktemp("runs")
    assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(root / "mlp"), *SMALL]) == 0
    assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(root / "qat"), *SMALL,
                     "--config.quantization.enabled=true"]) == 0
    yield root


def test_quantize_run_reports_real_sizes_and_accuracies(mlp_run, capsys):
  run = mlp_run / "mlp"
  assert cli.main(["quantize", str(run), "--calibration-batches", "2", "--no-speed"]) == 0
  assert "| parameter bytes | 50,920 | 12,920 (3.94x smaller) |" in capsys.readouterr().out
  report = json.loads((run / "quantize.json").read_text())
  summary = json.loads((run / "summary.json").read_text())
  assert report["test"]["float32"]["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)
  assert abs(report["test"]["int8"]["accuracy"] - report["test"]["float32"]["accuracy"]) <= 0.02
  assert all(v > 25 for v in report["sqnr_db"].values())
  # jdl summary's int8 figure is the saved model's size.
  assert f"int8:             {report['bytes']['int8']:,} B" in jdl.models.summary("mlp", (28, 28, 1), hidden=(16,))
  from jdl.train import deploy, runs

  qm = deploy.load_quantized(run)
  trained = runs.load_run(run)
  x = trained.inputs(trained.split("test"))[:50]
  assert qm.nbytes() == report["bytes"]["int8"]
  np.testing.assert_allclose(qm.apply(x), Q.quantize(trained.model, trained.variables, deploy._calibration(  # pylint: disable=protected-access
      trained, 2, 256)).apply(x), rtol=1e-6)


def test_quantization_aware_training_converts_with_its_own_accuracy(mlp_run):
  from jdl.train import deploy

  run = mlp_run / "qat"
  config = json.loads((run / "config.json").read_text())
  assert config["quantization"]["enabled"] is True
  report = deploy.quantize_run(run, calibration_batches=2, measure_speed=False)
  summary = json.loads((run / "summary.json").read_text())  # evaluated with fake quantization
  assert abs(report["test"]["int8"]["accuracy"] - summary["test_accuracy"]) <= 0.02


def test_exported_networks_run_in_a_fresh_process_without_jdl(mlp_run, tmp_path):
  from jdl.train import deploy, runs

  run = mlp_run / "mlp"
  if not (run / "quantized").exists():
    deploy.quantize_run(run, calibration_batches=2, measure_speed=False)
  assert cli.main(["export", str(run)]) == 0 and cli.main(["export", str(run), "--int8"]) == 0
  trained = runs.load_run(run)
  images = np.asarray(trained.split("test")["image"][:7])
  np.save(tmp_path / "x.npy", images)
  script = textwrap.dedent(f"""
      import sys, numpy as np
      from jax import export
      x = np.load({str(tmp_path / 'x.npy')!r})
      for name in ("model.jax", "model_int8.jax"):
        exported = export.deserialize(open({str(run / 'export')!r} + "/" + name, "rb").read())
        np.save({str(tmp_path)!r} + "/" + name + ".npy", np.asarray(exported.call(x)))
      assert "jdl" not in sys.modules
  """)
  subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
  x = trained.inputs({"image": images})
  np.testing.assert_allclose(np.load(tmp_path / "model.jax.npy"), trained.logits(x), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.load(tmp_path / "model_int8.jax.npy"), deploy.load_quantized(run).apply(x),
                             rtol=1e-5, atol=1e-5)
  info = json.loads((run / "export" / "export.json").read_text())
  assert info["input_shape"] == ["batch", 28, 28, 1] and info["input_dtype"] == "uint8"
  assert info["class_names"][0] == "T-shirt/top"


@pytest.mark.parametrize("argv, message", [
    (["--calibration-batches", "0"], "calibration_batches: expected an int >= 1, got 0"),
    (["--method", "qat"], "method: expected one of ptq-static, ptq-dynamic, got 'qat'"),
    (["--calibration", "mse"], "calibration: expected one of minmax, percentile, got 'mse'"),
    (["--method", "ptq-dynamic", "--calibration", "percentile"], "calibration: 'percentile' sets static activation"),
])
def test_bad_quantize_commands_fail_before_compiling(mlp_run, argv, message, capsys, monkeypatch):
  def no_compiling(*args, **kwargs):
    raise AssertionError("compiled before the error")

  monkeypatch.setattr(jax.stages.Lowered, "compile", no_compiling)
  assert cli.main(["quantize", str(mlp_run / "mlp"), *argv]) == 2
  assert message in capsys.readouterr().err


def test_a_quantization_cut_short_leaves_nothing_to_export(mlp_run, tmp_path, monkeypatch, capsys):
  import shutil

  from jdl.train import deploy

  run = tmp_path / "copy"
  shutil.copytree(mlp_run / "mlp", run)
  deploy.quantize_run(run, calibration_batches=1, measure_speed=False)

  def killed(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(deploy, "_evaluate", killed)
  with pytest.raises(KeyboardInterrupt):
    deploy.quantize_run(run, calibration_batches=1, measure_speed=False, keep_float=["Dense_0"])
  assert (run / "quantized").is_dir() and not (run / "quantize.json").exists()
  assert cli.main(["export", str(run), "--int8"]) == 2
  assert "holds no int8 model" in capsys.readouterr().err
  assert cli.main(["export", str(run), "--int8", "--epoch", "1"]) == 2
  assert "--epoch applies to the float32 export only" in capsys.readouterr().err


def test_quantizing_or_exporting_without_a_checkpoint_or_int8_model(mlp_run, tmp_path, capsys):
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "config.json").write_text((mlp_run / "mlp" / "config.json").read_text())
  assert cli.main(["quantize", str(empty)]) == 2
  assert "has no checkpoint" in capsys.readouterr().err
  assert cli.main(["export", str(empty), "--int8"]) == 2
  assert "holds no int8 model; make one with `jdl quantize" in capsys.readouterr().err
