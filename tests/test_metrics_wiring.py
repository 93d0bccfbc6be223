"""Metrics named in a config: streamed over eval/test, logged, equal to scikit-learn, on every strategy.

Runs on the bundled scikit-learn tables (no download): breast cancer with one
logit, and the course experiments' derived targets (digits attributes, wine
with two heads). The test sets are evaluated in batches whose last one is
padded, so the mask is exercised everywhere.
"""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

import jdl
from jdl import config as config_lib
from jdl import metrics as M
from jdl.train import experiment, loop, parallel, step
from jdl.train.state import create_train_state


def _config(name, **overrides):
  config = config_lib.load_experiment(name)
  settings = {"epochs": "2", "progress": "false", "plot": "False", "strategy": "single", "data.eval_split": "test"}
  for key, value in {**settings, **overrides}.items():
    config_lib.apply_override(config, key, value)
  return config


def _final_params(workdir):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  from jdl.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top

  ckpt = Checkpointer(workdir / "checkpoints")
  epoch = ckpt.latest_epoch()
  ckpt.close()
  with ocp.StandardCheckpointer() as restorer:
    return restorer.restore(workdir / "checkpoints" / str(epoch) / "state")["params"]


def _predict(config, params, inputs):
  options = {"num_classes": jdl.data.info(config.data.name).num_classes, **config.model.options.to_dict()}
  model = jdl.models.create(config.model.name, **options)
  return jax.device_get(model.apply({"params": params}, jnp.asarray(inputs), train=False))


def _sklearn_binary(labels, logits):
  pred = (logits[:, 0] > 0).astype(int)
  return {"accuracy": skm.accuracy_score(labels, pred),
          "precision_binary": skm.precision_score(labels, pred),
          "recall_binary": skm.recall_score(labels, pred),
          "f1_binary": skm.f1_score(labels, pred),
          "auroc": skm.roc_auc_score(labels, logits[:, 0])}


@pytest.mark.parametrize("strategy", ["single", "data_parallel"])
def test_jdl_train_logs_named_metrics_equal_to_sklearn(tmp_path, strategy):
  # 113 test examples in batches of 50 (56 under 8 devices): the last batch is padded and masked.
  config = _config("breast_cancer_bce", strategy=strategy)
  summary = experiment.train_and_evaluate(config, tmp_path / "run")
  test = jdl.data.load("breast_cancer", "test")
  expected = _sklearn_binary(test["label"], _predict(config, _final_params(tmp_path / "run"), test["inputs"]))
  on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
  lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert [line["epoch"] for line in lines] == [1, 2]
  for key, value in expected.items():
    assert summary[f"test_{key}"] == pytest.approx(value, abs=1e-6), key
    assert on_disk[f"test_{key}"] == pytest.approx(value, abs=1e-6), key
    assert lines[-1][f"eval_{key}"] == pytest.approx(value, abs=1e-6), key  # eval split is test here
    assert f"eval_{key}" in lines[0]
  # One logit: the per-step training metric is the thresholded accuracy, not an argmax over one column.
  assert 0.5 < lines[-1]["train_accuracy"] <= 1.0


def _breast_cancer_state():
  config = _config("breast_cancer_bce")
  model = jdl.models.create("mlp", num_classes=1, hidden=(8,))
  test = jdl.data.load("breast_cancer", "test")
  state = create_train_state(model, jdl.optim.create("sgd", learning_rate=0.1), jnp.zeros((1, 30)), seed=3)
  return config, model, state, test


def test_every_strategy_streams_the_same_metrics_as_one_shot_sklearn():
  _, model, state, test = _breast_cancer_state()
  specs = ("accuracy", "precision:binary", "recall:binary", "f1:binary", "auroc", "confusion_matrix", "ap")
  logits = np.asarray(model.apply({"params": state.params}, jnp.asarray(test["inputs"])))
  expected = _sklearn_binary(test["label"], logits)
  expected["ap"] = skm.average_precision_score(test["label"], logits[:, 0])
  cm = skm.confusion_matrix(test["label"], (logits[:, 0] > 0).astype(int))
  results = {}
  for name in ("single", "data_parallel", "pmap"):
    strategy = parallel.get(name)
    eval_step = step.make_eval_step(apply_fn=model.apply, loss_fn=jdl.losses.get("binary_crossentropy"),
                                    input_key="inputs", example_metrics=step.no_metrics, metrics=specs,
                                    axis_name=strategy.axis_name)
    results[name] = loop.Evaluator(eval_step, 30, strategy)(strategy.place_state(state), test, prefix="test_")
    for key, value in expected.items():
      assert results[name][f"test_{key}"] == pytest.approx(value, abs=1e-6), (name, key)
    for i in range(2):
      for j in range(2):
        assert results[name][f"test_confusion_matrix_{i}_{j}"] == cm[i, j]
  for name in ("data_parallel", "pmap"):
    assert results[name].keys() == results["single"].keys()
    for key, value in results["single"].items():
      assert results[name][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (name, key)


class _Heads(nn.Module):
  """Two outputs from one input: 3 multi-label logits and one regression value."""

  @nn.compact
  def __call__(self, x, train=False):
    del train
    return {"tags": nn.Dense(3, name="tags")(x), "target": nn.Dense(1, name="target")(x)}


def test_regression_and_multilabel_metrics_stream_exactly_on_8_devices():
  rng = np.random.default_rng(0)
  n, f = 77, 5  # 77 = 2 batches of 32 + a padded one (40 per batch under 8 devices)
  arrays = {"inputs": rng.normal(size=(n, f)).astype(np.float32),
            "label": (rng.random((n, 3)) < 0.4).astype(np.float32),
            "target": rng.normal(size=n).astype(np.float32)}

  model = _Heads()
  params = model.init(jax.random.key(1), jnp.zeros((1, f)))["params"]
  state = create_train_state(model, jdl.optim.create("sgd", learning_rate=0.1), jnp.zeros((1, f)), seed=1)
  state = state.replace(params=params)
  outputs = jax.device_get(model.apply({"params": params}, jnp.asarray(arrays["inputs"])))
  y, scores = arrays["label"], outputs["tags"]
  pred = outputs["target"][:, 0]
  expected = {"tags/map": skm.average_precision_score(y, scores, average="macro"),
              "tags/auroc": skm.roc_auc_score(y, scores, average="macro"),
              "target/mae": skm.mean_absolute_error(arrays["target"], pred),
              "target/rmse": np.sqrt(skm.mean_squared_error(arrays["target"], pred)),
              "target/r2": skm.r2_score(arrays["target"], pred)}
  for i, ap in enumerate(skm.average_precision_score(y, scores, average=None)):
    expected[f"tags/ap_{i}"] = ap
  loss = jdl.losses.weighted({"tags": "multilabel_binary_crossentropy", "target": "mse"})
  batch = {"inputs": arrays["inputs"], "tags": arrays["label"], "target": arrays["target"]}  # flat: targets by name
  specs = ["tags/map", "tags/ap:none", "tags/auroc", "target/mae", "target/rmse", "target/r2"]
  for name in ("single", "data_parallel", "pmap"):
    strategy = parallel.get(name)
    eval_step = step.make_eval_step(apply_fn=model.apply, loss_fn=loss, input_key="inputs",
                                    example_metrics=step.no_metrics, axis_name=strategy.axis_name, metrics=specs)
    got = loop.Evaluator(eval_step, 32, strategy)(strategy.place_state(state), batch)
    for key, value in expected.items():
      assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-5), (name, key)


def test_unknown_metric_is_a_value_error_listing_the_known_ones_before_anything_runs(tmp_path):
  config = _config("breast_cancer_bce", metrics="('accuracy', 'f2:macro')")
  with pytest.raises(ValueError, match=r"unknown metric 'f2' in 'f2:macro'; known metrics: accuracy, ap, auroc"):
    experiment.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()  # raised before the workdir, the data or any compilation
  with pytest.raises(ValueError, match="metric 'accuracy' takes no option 'k'; it takes: threshold"):
    step.make_eval_step(apply_fn=None, loss_fn=None, metrics=["accuracy:k=3"])
  with pytest.raises(ValueError, match="capacity is set by the evaluation"):
    M.parse_spec("auroc:capacity=10")
  with pytest.raises(ValueError, match="'f1' and 'f1:macro' are both logged as 'f1_macro'"):
    M.parse_specs(["f1", "f1:macro"])


def test_metric_specs_parse_names_options_and_outputs():
  spec = M.parse_spec("alcohol/f1:average=weighted")
  assert (spec.name, spec.output, dict(spec.options), spec.key) == ("f1", "alcohol", {"average": "weighted"},
                                                                    "alcohol/f1_weighted")
  assert M.parse_spec("top5_accuracy").key == "top5_accuracy"
  assert M.parse_spec("ap:none").options == (("average", None),)
  assert M.parse_spec("accuracy:threshold=0.5").options == (("threshold", 0.5),)
  # Options the data determines are filled in from the outputs' shape.
  assert M.parse_spec("f1").create(jnp.zeros((4, 3)), 4).num_classes == 3
  assert M.parse_spec("f1:binary").create(jnp.zeros((4, 1)), 4).num_classes == 2
  assert M.parse_spec("auroc").create(jnp.zeros((4, 5)), 4).num_labels == 5
  assert M.parse_spec("auroc").create(jnp.zeros((4,)), 7).capacity == 7
  # --config.metrics=auroc: a bare string is a one-metric tuple.
  config = config_lib.base_config()
  config_lib.apply_override(config, "metrics", "auroc")
  assert config.metrics == ("auroc",)


def test_two_headed_model_trains_from_a_config_with_a_dict_of_losses(tmp_path):
  config = _config("wine_two_heads", epochs="3")
  summary = experiment.train_and_evaluate(config, tmp_path / "run")
  test = jdl.data.transforms.apply("wine_alcohol", jdl.data.load("wine", "test"))
  outputs = _predict(config, _final_params(tmp_path / "run"), test["inputs"])
  pred = outputs["alcohol"][:, 0]
  assert summary["test_cultivar/accuracy"] == pytest.approx(
      skm.accuracy_score(test["cultivar"], outputs["cultivar"].argmax(-1)), abs=1e-6)
  assert summary["test_cultivar/f1_macro"] == pytest.approx(
      skm.f1_score(test["cultivar"], outputs["cultivar"].argmax(-1), average="macro"), abs=1e-6)
  assert summary["test_alcohol/mae"] == pytest.approx(skm.mean_absolute_error(test["alcohol"], pred), rel=1e-5)
  assert summary["test_alcohol/r2"] == pytest.approx(skm.r2_score(test["alcohol"], pred), rel=1e-4, abs=1e-5)
  # The loss is Σ_k w_k · loss_k per example: cross-entropy + 0.5 × MSE.
  ce = skm.log_loss(test["cultivar"], jax.nn.softmax(outputs["cultivar"]), labels=[0, 1, 2])
  mse = np.mean((pred - test["alcohol"]) ** 2)
  assert summary["test_loss"] == pytest.approx(ce + 0.5 * mse, rel=1e-4)
  assert "train_accuracy" not in summary["history"][-1]  # a dict of outputs: training logs the loss only


def test_dict_of_losses_config_errors():
  config = _config("wine_two_heads", **{"loss_options.delta": "1.0"})
  with pytest.raises(ValueError, match=r"loss_options holds one group of options per output; got the key\(s\) delta"):
    experiment.build_loss(config)
  config = _config("wine_two_heads", **{"loss_weights.alcohl": "2.0"})
  with pytest.raises(ValueError, match="weights has head.*alcohl"):
    experiment.build_loss(config)


@pytest.mark.parametrize("name", ["diabetes_regression", "digits_attributes"])
def test_course_experiments_run_and_log_their_named_metrics(tmp_path, name):
  config = _config(name, epochs="1")
  summary = experiment.train_and_evaluate(config, tmp_path / name)
  logged = json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[-1])
  for spec in M.parse_specs(tuple(config.metrics)):
    # An array result (per-label AP) is logged one key per entry: <key>_0, <key>_1, ...
    keys = [k for k in summary if k == f"test_{spec.key}" or k.startswith(f"test_{spec.key}_")]
    assert keys, (spec.key, sorted(summary))
    for key in keys:
      assert np.isfinite(summary[key]), key
      assert "eval_" + key[len("test_"):] in logged, key
