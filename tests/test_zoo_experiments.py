"""The model-zoo experiments: their configs load, their models build, MNIST-1D's CNN learns.

Full runs and their results are in docs/results.md; here only what takes seconds.
"""

import jax
import jax.numpy as jnp
import optax
import pytest

import jdl
from jdl import config as config_lib
from jdl.train import experiment

# experiment -> (dataset, model, parameters)
EXPERIMENTS = {
    "cnn_fashion_mnist": ("fashion_mnist", "cnn_small", 34_258),
    "cnn_fashion_mnist_adversarial": ("fashion_mnist", "cnn_small", 34_258),
    "mlp_deep_diagnostics": ("fashion_mnist", "mlp", 729_866),
    "mnist1d_logreg": ("mnist1d", "logreg", 410),
    "mnist1d_mlp": ("mnist1d", "mlp", 15_210),
    "mnist1d_cnn": ("mnist1d", "cnn1d", 5_210),
    "mnist1d_gru": ("mnist1d", "bigru", 430),
}


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_config_loads_and_model_builds(name):
  dataset, model_name, num_params = EXPERIMENTS[name]
  config = config_lib.load_experiment(name)
  assert config.name == name
  assert config.data.name == dataset
  assert config.model.name == model_name
  assert config.data.test_split == "test"
  meta = jdl.data.info(dataset)
  model = jdl.models.create(model_name, num_classes=meta.num_classes, **config.model.options.to_dict())
  x = jnp.zeros((2, *meta.input_shape), jnp.float32)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  assert sum(p.size for p in jax.tree.leaves(variables["params"])) == num_params
  logits = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  assert logits.shape == (2, meta.num_classes) and logits.dtype == jnp.float32
  # The optimizer and its schedule build for the run's length.
  tx = jdl.optim.from_config(config.optimizer.to_dict(), total_steps=1000)
  assert isinstance(tx, optax.GradientTransformation)
  params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), variables["params"])
  grads, opt_state = jax.tree.map(jnp.ones_like, params), tx.init(params)
  for _ in range(2):  # a warmup may start from a learning rate of 0
    updates, opt_state = tx.update(grads, opt_state, params)
  assert jax.tree.structure(updates) == jax.tree.structure(params)
  assert all(bool(jnp.any(u != 0)) for u in jax.tree.leaves(updates))  # every parameter moves


def test_mnist1d_cnn_learns_in_two_epochs(tmp_path, monkeypatch):
  monkeypatch.setenv("JDL_TFDS_DIR", str(tmp_path / "tfds"))  # MNIST-1D is generated there (~5 s)
  config = config_lib.load_experiment("mnist1d_cnn")
  for key, value in (("epochs", "2"), ("progress", "false"), ("strategy", "single"), ("plot", "False"),
                     ("checkpoint.enabled", "False")):
    config_lib.apply_override(config, key, value)
  summary = experiment.train_and_evaluate(config, tmp_path / "run")
  assert summary["epochs_completed"] == 2
  assert summary["test_accuracy"] > 0.3  # chance is 0.1; 2 epochs (80 steps) reach about 0.5
