"""jdl.visualize (activation maximisation, saliency, filters) and jdl.train.diagnostics, against hand computations."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import use_tiny_data

from jdl import cli, visualize
from jdl.models.mlp import MLP
from jdl.train import diagnostics

# One worker runs this module, so that its module-scoped run is set up once (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("visualize")

W = np.array([[1.0, -2.0, 0.5], [-1.0, 3.0, 0.0], [2.0, 0.25, -1.0], [0.0, -0.5, 1.5]], np.float32)  # 4 -> 3


def linear(x):
  return x.reshape(x.shape[0], -1) @ W + jnp.array([[0.1, -0.2, 0.3]])


X = np.array([[0.2, 0.9, 0.4, 0.1], [0.8, 0.1, 0.6, 0.7]], np.float32)


def test_total_variation_by_hand():
  x = np.zeros((1, 2, 3, 1), np.float32)
  x[0, 0, 1, 0] = 1.0  # one bright pixel: |1-0| twice along the row, once along the column
  assert float(visualize.total_variation(x)[0]) == pytest.approx(3.0 / 6)
  assert float(visualize.total_variation(np.full((2, 4, 4, 3), 0.7, np.float32))[1]) == 0.0


def test_gaussian_blur_keeps_constants_and_mass():
  flat = np.full((1, 5, 5, 2), 0.3, np.float32)
  np.testing.assert_allclose(visualize.gaussian_blur(flat, 1.0), flat, atol=1e-6)
  spike = np.zeros((1, 9, 9, 1), np.float32)
  spike[0, 4, 4, 0] = 1.0
  blurred = np.asarray(visualize.gaussian_blur(spike, 1.0))
  assert blurred.sum() == pytest.approx(1.0, abs=1e-5) and blurred[0, 4, 4, 0] < 0.2
  assert blurred[0, 4, 3, 0] == pytest.approx(blurred[0, 3, 4, 0])  # separable and symmetric
  np.testing.assert_array_equal(visualize.gaussian_blur(spike, 0.0), spike)


def test_saliency_of_a_linear_model_is_its_weight_column():
  g = visualize.saliency(linear, X)
  predicted = np.argmax(linear(X), axis=-1)
  np.testing.assert_allclose(g, W[:, predicted].T, rtol=1e-6)
  np.testing.assert_allclose(visualize.saliency(linear, X, 2), np.stack([W[:, 2]] * 2), rtol=1e-6)


def test_smoothgrad_equals_the_gradient_without_noise_and_on_linear_models():
  def mlp(x):
    return jnp.tanh(x @ W) @ W.T[:, :3]

  np.testing.assert_allclose(visualize.smoothgrad(mlp, X, 1, noise=0.0, samples=3), visualize.saliency(mlp, X, 1),
                             rtol=1e-6)
  np.testing.assert_allclose(visualize.smoothgrad(linear, X, 0, noise=0.5, samples=4), np.stack([W[:, 0]] * 2),
                             rtol=1e-5)
  noisy = visualize.smoothgrad(mlp, X, 1, noise=0.3, samples=16, key=jax.random.key(1))
  assert not np.allclose(noisy, visualize.saliency(mlp, X, 1))


def test_integrated_gradients_linear_exact_and_complete_for_a_nonlinear_net():
  baseline = np.full_like(X, 0.1)
  ig = visualize.integrated_gradients(linear, X, 1, baseline=baseline, steps=3)
  np.testing.assert_allclose(ig, (X - baseline) * W[:, 1], rtol=1e-6)
  v = np.array([0.3, -1.2, 0.8], np.float32)

  def net(x):
    return jax.nn.softplus(x @ W) @ jnp.stack([v, -v, v * 2], axis=1)

  ig = np.asarray(visualize.integrated_gradients(net, X, 0, steps=256))
  gap = np.asarray(net(X)[:, 0] - net(np.zeros_like(X))[:, 0])
  np.testing.assert_allclose(ig.sum(axis=1), gap, rtol=1e-3)


def test_maximise_input_reaches_the_box_corner_of_a_linear_score():
  w = jnp.array([0.5, -1.0, 2.0, -0.1])
  out = visualize.maximise_input(lambda x: x @ w, np.full((1, 4), 0.5, np.float32), steps=100, learning_rate=0.1)
  np.testing.assert_array_equal(out["x"][0], [1.0, 0.0, 1.0, 0.0])
  assert out["score"][0] == pytest.approx(2.5) and out["trace"].shape == (100, 1)
  assert out["trace"][-1, 0] >= out["trace"][0, 0]
  # An L2 weight pulls towards the centre (0 without a range): w·x - l2·mean(x²) is largest at x = 2 w / l2.
  out = visualize.maximise_input(lambda x: x @ w, np.full((1, 4), 0.5, np.float32), steps=1500, learning_rate=0.01,
                                 l2=40.0, clip=None)
  np.testing.assert_allclose(out["x"][0], 2 * np.asarray(w) / 40.0, atol=2e-3)


def test_total_variation_weight_per_example_smooths_only_its_image():
  key = jax.random.key(0)
  pattern = jax.random.normal(key, (1, 8, 8, 1))

  def score(x):  # rewards a high-frequency pattern
    return jnp.sum((x * pattern).reshape(x.shape[0], -1), axis=1)

  x0 = np.full((2, 8, 8, 1), 0.5, np.float32)
  out = visualize.maximise_input(score, x0, steps=200, learning_rate=0.05, tv=[0.0, 30.0])
  tv = np.asarray(visualize.total_variation(out["x"]))
  assert tv[1] < 0.5 * tv[0]


def test_ideal_inputs_make_a_class_almost_certain():
  def logits_fn(x):
    return linear(x) * 4.0

  out = visualize.ideal_inputs(logits_fn, [0, 1, 2], (4,), steps=150, learning_rate=0.1)
  assert out["x"].shape == (3, 4) and out["classes"] == [0, 1, 2]
  assert np.all(out["x"] >= 0) and np.all(out["x"] <= 1)
  assert np.all(out["probability"] > 0.99)


def test_first_layer_filters_in_creation_order():
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      x = nn.Conv(3, (3, 3), name="z_first")(x)
      return nn.Conv(5, (1, 1), name="a_second")(x)

  variables = Net().init(jax.random.key(0), jnp.ones((1, 6, 6, 2)))
  assert visualize.first_layer_filters(variables).shape == (3, 3, 2, 3)
  with pytest.raises(ValueError, match="no convolution"):
    visualize.first_layer_filters({"params": {"Dense_0": {"kernel": W}}})


def test_layer_objective_reads_a_layer_and_a_channel_and_names_the_layers():
  model = MLP(num_classes=3, hidden=(5, 4))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6)), jnp.float32)
  variables = model.init(jax.random.key(0), x)
  dense0 = x @ variables["params"]["Dense_0"]["kernel"] + variables["params"]["Dense_0"]["bias"][None]
  score = visualize.layer_objective(model, variables, "Dense_0", example=x)
  np.testing.assert_allclose(score(x), jnp.mean(dense0, axis=1), rtol=1e-5)
  hidden1 = jax.nn.relu(jax.nn.relu(dense0) @ variables["params"]["Dense_1"]["kernel"]
                        + variables["params"]["Dense_1"]["bias"][None])
  score = visualize.layer_objective(model, variables, "hidden_1", channel=2, example=x)
  np.testing.assert_allclose(score(x), hidden1[:, 2], rtol=1e-5)
  assert set(visualize.layer_names(model, variables, x)) >= {"Dense_0", "Dense_1", "Dense_2", "hidden_0"}
  with pytest.raises(ValueError, match=r"layer: expected one of the model's layers \(.*Dense_0.*\), got 'conv9'"):
    visualize.layer_objective(model, variables, "conv9", example=x)


@pytest.mark.parametrize("call, message", [
    (lambda: visualize.maximise_input(linear, X, steps=0), "steps: expected an int >= 1, got 0"),
    (lambda: visualize.maximise_input(linear, X, tv=-1.0), "tv: expected a finite number >= 0"),
    (lambda: visualize.maximise_input(linear, X, clip=(1, 0)), "clip: expected None or a"),
    (lambda: visualize.maximise_input(linear, X, tv=0.5), "tv, blur_sigma and jitter apply to images"),
    (lambda: visualize.maximise_input(linear, X, l2=[1.0, 2.0, 3.0]), "l2: expected a number or one per example"),
    (lambda: visualize.class_objective(linear, [0], "softmax"), "objective: expected one of log_prob"),
    (lambda: visualize.smoothgrad(linear, X, samples=0), "samples: expected an int >= 1"),
    (lambda: visualize.integrated_gradients(linear, X, steps=-2), "steps: expected an int >= 1"),
])
def test_bad_arguments_are_named(call, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(")):
    call()


# --- diagnostics --------------------------------------------------------------------------------------------------


def _probe(n=32, d=12, classes=3, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": jnp.asarray(rng.normal(size=(n, d)), jnp.float32),
          "label": jnp.asarray(rng.integers(0, classes, n), jnp.int32)}


def _xent(outputs, batch):
  return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["label"])


def test_measure_equals_hand_computation():
  model = MLP(num_classes=3, hidden=(6,) * 11)  # Dense_10 and Dense_11: the order must not be the sorted one
  batch = _probe()
  variables = model.init(jax.random.key(1), batch["image"])
  params = variables["params"]
  kernel = params["Dense_0"]["kernel"]
  params["Dense_0"]["kernel"] = kernel.at[:, 0].set(0.0)  # unit 0 of hidden_0: no input ...
  params["Dense_0"]["bias"] = params["Dense_0"]["bias"].at[0].set(-1.0)  # ... and a negative bias: dead
  tx = optax.sgd(0.1)
  order = diagnostics.layer_order(model.apply, {"params": params}, batch["image"])
  stats = diagnostics.measure(model.apply, _xent, tx, params, {}, tx.init(params), batch, "image",
                              jax.random.key(0), order)
  grads = jax.grad(lambda p: jnp.mean(_xent(model.apply({"params": p}, batch["image"]), batch)))(params)
  layers = [f"Dense_{i}" for i in range(12)]
  assert [k for k in stats if k.startswith("diag_grad_norm/")] == [f"diag_grad_norm/{n}" for n in layers]
  for name in layers:
    g = np.linalg.norm(np.asarray(grads[name]["kernel"]))
    assert float(stats[f"diag_grad_norm/{name}"]) == pytest.approx(g, rel=1e-5)
    w = np.linalg.norm(np.asarray(params[name]["kernel"]))
    assert float(stats[f"diag_update_ratio/{name}"]) == pytest.approx(0.1 * g / w, rel=1e-5)
  h0 = np.maximum(np.asarray(batch["image"] @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"][None]), 0)
  assert float(stats["diag_act_mean/hidden_0"]) == pytest.approx(h0.mean(), rel=1e-5)
  assert float(stats["diag_act_std/hidden_0"]) == pytest.approx(h0.std(), rel=1e-5)
  assert float(stats["diag_dead/hidden_0"]) == pytest.approx(np.mean(np.all(h0 <= 0, axis=0)))
  assert float(stats["diag_dead/hidden_0"]) >= 1 / 6
  assert [k for k in stats if k.startswith("diag_dead/")][-2:] == ["diag_dead/hidden_9", "diag_dead/hidden_10"]


def test_deep_sigmoid_gradients_vanish_and_batch_norm_keeps_them():
  batch = _probe(n=64, d=20, classes=10)

  def first_over_last(model):
    variables = model.init(jax.random.key(0), batch["image"])
    params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}
    tx = optax.sgd(0.1)
    order = diagnostics.layer_order(model.apply, variables, batch["image"])
    stats = diagnostics.measure(model.apply, _xent, tx, params, state, tx.init(params), batch, "image",
                                jax.random.key(0), order)
    _, g = diagnostics.by_layer({k: float(v) for k, v in stats.items()}, "grad_norm")
    return g[0] / g[-1]

  sigmoid = first_over_last(MLP(num_classes=10, hidden=(64,) * 9, activation="sigmoid", kernel_init="normal"))
  he_bn = first_over_last(MLP(num_classes=10, hidden=(64,) * 9, kernel_init="he_normal", batch_norm=True))
  assert sigmoid < 1e-6 and he_bn > 1e-2


def test_batch_norm_mlp_trains_and_keeps_its_default_parameters():
  plain = MLP(num_classes=3, hidden=(4,)).init(jax.random.key(0), jnp.ones((2, 5)))
  assert set(plain) == {"params"} and set(plain["params"]["Dense_0"]) == {"kernel", "bias"}
  bn = MLP(num_classes=3, hidden=(4,), batch_norm=True).init(jax.random.key(0), jnp.ones((2, 5)))
  assert set(bn) == {"params", "batch_stats"} and set(bn["params"]["Dense_0"]) == {"kernel"}


# --- end to end: jdl train with diagnostics, jdl visualize -------------------------------------------------------

SMALL = ["--config.data.batch_size=64", "--config.data.eval_batch_size=100", "--config.progress=false",
         "--config.plot=false", "--config.checkpoint.every_seconds=0"]


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory, tiny_dirs):
  with pytest.MonkeyPatch.context() as mp:
    use_tiny_data(tiny_dirs, mp)
    run = tmp_path_factory.mktemp("runs") / "cnn"
    code = cli.main(["train", "cnn_fashion_mnist", "--workdir", str(run), *SMALL, "--config.epochs=2",
                     "--config.model.options.features=(4,8)", "--config.micro_batches=1",
                     "--config.diagnostics.enabled=true", "--config.diagnostics.examples=32",
                     "--config.optimizer.schedule.warmup_steps=2"])
    assert code == 0
    yield run, mp


def test_diagnostics_are_logged_every_epoch_in_layer_order(cnn_run):
  run, _ = cnn_run
  lines = [json.loads(t) for t in (run / "metrics.jsonl").read_text().splitlines()]
  assert len(lines) == 2
  for line in lines:
    assert [k for k in line if k.startswith("diag_grad_norm/")] == [
        "diag_grad_norm/conv_0", "diag_grad_norm/conv_1", "diag_grad_norm/fc"]
    assert [k for k in line if k.startswith("diag_dead/")] == ["diag_dead/conv_0_act", "diag_dead/conv_1_act"]
    assert all(np.isfinite(v) for k, v in line.items() if k.startswith("diag_"))
  assert diagnostics.read_diagnostics(run)[1]["epoch"] == 2


def test_visualize_writes_every_figure_and_the_confusion_matrix_is_the_predictions(cnn_run):
  run, mp = cnn_run
  code = cli.main(["visualize", str(run), "--what", "all", "--steps", "8", "--count", "4"])
  assert code == 0
  for name in ("ideal", "saliency", "filters", "confusion", "errors"):
    assert (run / f"{name}.png").stat().st_size > 1000, name
  record = json.loads((run / "visualize.json").read_text())
  summary = json.loads((run / "summary.json").read_text())
  matrix = np.array(record["confusion"]["matrix"])
  assert matrix.sum() == summary["test_examples"] if "test_examples" in summary else matrix.sum() > 0
  assert record["confusion"]["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)
  assert record["errors"]["errors"] == int(matrix.sum() - np.trace(matrix))
  conf = record["errors"]["confidence"]
  assert conf == sorted(conf, reverse=True) and len(conf) <= 4
  assert record["filters"]["shape"] == [3, 3, 1, 4]
  assert record["ideal"]["classes"][0] == "T-shirt/top" and len(record["ideal"]["probability_tv"]) == 10
  assert cli.main(["visualize", str(run), str(run), "--what", "diagnostics"]) == 0
  assert (run / "diagnostics.png").stat().st_size > 1000


@pytest.mark.parametrize("argv, message", [
    (["--what", "ideal", "--class", "Spaceship"], "class: expected a class of the run's dataset (T-shirt/top,"),
    (["--what", "pictures"], "what: expected one or more of ideal, saliency"),
    (["--what", "ideal", "--steps", "0"], "steps: expected an int >= 1, got 0"),
    (["--what", "ideal", "--tv", "-1"], "tv: expected a number >= 0, got -1.0"),
    (["--what", "ideal", "--learning-rate", "0"], "learning_rate: expected a number >= 0 (and > 0), got 0.0"),
    (["--what", "filters", "--epoch", "7"], "epoch: expected one of the run's checkpoints [1, 2] or 'best', got 7"),
    (["--what", "errors", "--split", "valid"], "split: expected train, eval or test, got 'valid'"),
    (["RUN2", "--what", "ideal"], "only --what diagnostics compares several runs"),
])
def test_bad_visualize_arguments_fail_before_compiling(cnn_run, argv, message, capsys, monkeypatch):
  run, _ = cnn_run

  def no_compiling(*args, **kwargs):
    raise AssertionError("compiled before the error")

  monkeypatch.setattr(jax.stages.Lowered, "compile", no_compiling)
  argv = [str(run) if a == "RUN2" else a for a in argv]
  assert cli.main(["visualize", str(run), *argv]) == 2
  assert message in capsys.readouterr().err


def test_visualize_names_a_run_without_checkpoint_or_diagnostics(tmp_path, capsys, cnn_run):
  run, _ = cnn_run
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "config.json").write_text((run / "config.json").read_text())
  assert cli.main(["visualize", str(empty), "--what", "filters"]) == 2
  assert "has no checkpoint" in capsys.readouterr().err
  (empty / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 1.0}\n')
  assert cli.main(["visualize", str(empty), "--what", "diagnostics"]) == 2
  assert "logged none; train it with --config.diagnostics.enabled=true" in capsys.readouterr().err
