"""Extending jdl from your own files: one registry pattern, --import on the command line, your own data."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import jdl.data
import jdl.losses
import jdl.metrics
import jdl.models
import jdl.optim
import jdl.registry
from jdl import cli
from jdl import config as config_lib
from jdl.registry import Registry
from jdl.train import callbacks, parallel

USER_FILE = textwrap.dedent('''
    import numpy as np
    import optax
    import jdl
    from jdl.train import callbacks

    @jdl.optim.register("signsgd_user")
    def signsgd(learning_rate, *, weight_decay: float = 0.0):
      return optax.chain(optax.scale_by_sign(), optax.add_decayed_weights(weight_decay),
                         optax.scale_by_learning_rate(learning_rate))

    rng = np.random.default_rng(0)
    t = rng.uniform(0, np.pi, 300)
    upper = np.stack([np.cos(t[:150]), np.sin(t[:150])], 1)
    lower = np.stack([1 - np.cos(t[150:]), 0.5 - np.sin(t[150:])], 1)
    x = np.concatenate([upper, lower]) + rng.normal(0, 0.1, (300, 2))
    y = np.array([0] * 150 + [1] * 150)
    order = rng.permutation(300)
    x, y = x[order], y[order]
    jdl.data.register("two_moons_user", {"train": (x[:240], y[:240]), "test": (x[240:], y[240:])},
                      class_names=("upper", "lower"))

    @callbacks.register("count_epochs_user")
    class CountEpochs(callbacks.Callback):
      def __init__(self, scale=1):
        self.scale, self.seen = scale, 0

      def epoch_metrics(self, run, epoch):
        self.seen += 1
        return {"seen_epochs": self.seen * self.scale}
''')

# The rest of a researcher's extensions: an epsilon-decaying Adam, expected calibration error, balanced accuracy,
# a squeeze-and-excitation model and a step-level (chunk) callback.
USER_FILE += textwrap.dedent('''
    import flax.linen as nn
    import flax.struct
    import jax
    import jax.numpy as jnp

    @jdl.optim.register("adam_eps_decay_user")
    def adam_eps_decay(learning_rate, *, eps_start: float = 1e-3, eps_end: float = 1e-8, decay_steps: int = 100):
      def eps(count):
        return eps_start * (eps_end / eps_start) ** jnp.minimum(count / decay_steps, 1.0)
      return optax.chain(optax.inject_hyperparams(optax.scale_by_adam)(eps=eps),
                         optax.scale_by_learning_rate(learning_rate))

    @flax.struct.dataclass
    class ExpectedCalibrationError(jdl.metrics.Metric):
      count: jax.Array
      confidence: jax.Array
      correct: jax.Array
      num_bins: int = flax.struct.field(pytree_node=False, default=15)

      @classmethod
      def empty(cls, *, num_bins: int = 15):
        zeros = jnp.zeros((num_bins,), jnp.float32)
        return cls(zeros, zeros, zeros, num_bins=num_bins)

      def update(self, outputs, labels, mask=None):
        probs = jax.nn.softmax(outputs, axis=-1)
        top, hit = probs.max(axis=-1), (probs.argmax(axis=-1) == labels).astype(jnp.float32)
        valid = jnp.ones_like(top) if mask is None else jnp.asarray(mask, jnp.float32)
        bins = jnp.clip((top * self.num_bins).astype(jnp.int32), 0, self.num_bins - 1)
        per_bin = lambda v: jnp.zeros((self.num_bins,), jnp.float32).at[bins].add(v * valid)
        return self.replace(count=self.count + per_bin(jnp.ones_like(top)),
                            confidence=self.confidence + per_bin(top), correct=self.correct + per_bin(hit))

      def compute(self):
        seen = jnp.maximum(self.count, 1.0)
        weights = self.count / jnp.maximum(self.count.sum(), 1.0)
        return jnp.sum(weights * jnp.abs(self.correct / seen - self.confidence / seen))

    jdl.metrics.register("ece_user", ExpectedCalibrationError.empty)

    @jdl.metrics.register("balanced_accuracy_user")
    def balanced_accuracy(*, num_classes: int = 2):
      return jdl.metrics.Recall.empty(num_classes=num_classes, average="macro")

    @jdl.models.register("se_mlp_user", input_shape=(2,))
    class SqueezeExcitationMLP(nn.Module):
      num_classes: int
      hidden: int = 16
      reduction: int = 4

      @nn.compact
      def __call__(self, x, train: bool = False):
        h = nn.relu(nn.Dense(self.hidden)(x.reshape((x.shape[0], -1))))
        gate = nn.sigmoid(nn.Dense(self.hidden)(nn.relu(nn.Dense(self.hidden // self.reduction)(h))))
        return nn.Dense(self.num_classes)(h * gate).astype(jnp.float32)

    @callbacks.register("chunks_user")
    class Chunks(callbacks.Callback):
      def __init__(self):
        self.steps = []

      def on_chunk_end(self, run, step, logs):
        assert set(logs) >= {"epoch", "step", "train_loss", "learning_rate"}, logs
        self.steps.append(step)

      def epoch_metrics(self, run, epoch):
        return {"chunk_steps": list(self.steps)}
''')


@pytest.fixture
def user_file(tmp_path):
  path = tmp_path / "my_parts.py"
  path.write_text(USER_FILE)
  return path


def test_registry_pattern_is_one_for_every_kind():
  kinds = [jdl.models._registry.MODELS, jdl.losses.LOSSES, jdl.metrics.METRICS, jdl.optim.OPTIMIZERS,
           jdl.optim.SCHEDULES, jdl.data.catalog.CATALOG, callbacks.CALLBACKS, parallel.STRATEGIES]
  assert all(isinstance(r, Registry) for r in kinds)
  reg = Registry("widget")

  def make():
    return 1

  assert reg.register("w", make) is make
  reg.register("w", make)  # the identical object again: a no-op
  with pytest.raises(ValueError, match="a widget named 'w' is already registered.*overwrite=True"):
    reg.register("w", lambda: 2)
  reg.register("w", lambda: 2, overwrite=True)
  assert reg["w"]() == 2

  @reg.register("v")
  def v():
    return 3

  assert reg["v"] is v
  with pytest.raises(ValueError, match=r"unknown widget 'x'; known widgets: v, w"):
    reg.entry("x")


def test_builtin_names_need_overwrite_and_are_told_apart_from_the_users():
  with jdl.metrics.METRICS.scoped():
    with pytest.raises(ValueError, match="a metric named 'accuracy' is already registered"):
      jdl.metrics.register("accuracy", jdl.metrics.Accuracy.empty.__func__.__get__(jdl.metrics.TopKAccuracy))
    jdl.metrics.register("accuracy", jdl.metrics.METRICS["accuracy"])  # the same object: fine
    jdl.metrics.register("my_acc", jdl.metrics.Accuracy.empty)
    assert jdl.metrics.METRICS.user_names() == ["my_acc"]
  assert "my_acc" not in jdl.metrics.METRICS  # scoped: restored


def test_metric_log_keys_carry_non_default_options():
  assert jdl.metrics.parse_spec("accuracy").key == "accuracy"
  assert jdl.metrics.parse_spec("accuracy:threshold=0.0").key == "accuracy"  # the default: same key
  assert jdl.metrics.parse_spec("accuracy:threshold=0.5").key == "accuracy_threshold_0.5"
  assert jdl.metrics.parse_spec("f1:macro").key == "f1_macro"
  jdl.metrics.parse_specs(["accuracy", "accuracy:threshold=0.5"])  # no collision


def test_registered_arrays_load_with_their_own_splits_and_bad_ones_are_refused():
  with jdl.data.catalog.CATALOG.scoped():
    x = np.arange(20, dtype=np.float64).reshape(10, 2)
    y = np.array([0, 1] * 5)
    info = jdl.data.register("pairs_t", {"train": (x[:8], y[:8]), "validation": (x[8:], y[8:])})
    assert (info.input_key, info.num_classes, dict(info.splits)) == ("inputs", 2, {"train": 8, "validation": 2})
    half = jdl.data.load("pairs_t", "train[:50%]")
    np.testing.assert_array_equal(half["inputs"], x[:4].astype(np.float32))
    assert half["label"].dtype == np.int32
    with pytest.raises(ValueError, match="no label key 'label'; its keys: features"):
      jdl.data.register("bad_t", {"train": {"features": x}})
    with pytest.raises(ValueError, match="a dataset named 'pairs_t' is already registered"):
      jdl.data.register("pairs_t", {"train": (x, 1 - y)})
    with pytest.raises(ValueError, match="unknown dataset 'pair_t'.*pairs_t \\(yours\\)"):
      jdl.data.info("pair_t")


def test_npz_file_is_a_dataset_by_path(tmp_path):
  path = tmp_path / "digits.npz"
  rng = np.random.default_rng(0)
  np.savez(path, x_train=rng.integers(0, 255, (12, 4, 4), dtype=np.uint8), y_train=np.arange(12) % 3,
           x_test=rng.integers(0, 255, (6, 4, 4), dtype=np.uint8), y_test=np.arange(6) % 3)
  info = jdl.data.info(f"npz:{path}")
  assert (info.input_key, info.input_shape, info.num_classes, dict(info.splits)) == (
      "image", (4, 4, 1), 3, {"train": 12, "test": 6})
  bad = tmp_path / "bad.npz"
  np.savez(bad, images=np.zeros((2, 2)))
  with pytest.raises(ValueError, match="'images' is not named x_SPLIT or y_SPLIT"):
    jdl.data.info(f"npz:{bad}")
  with pytest.raises(FileNotFoundError, match="no such file"):
    jdl.data.info(f"npz:{tmp_path / 'none.npz'}")


def test_missing_input_key_names_the_batch_keys():
  from jdl.train import step
  with pytest.raises(KeyError, match="no key 'image'; its keys are 'inputs', 'label'"):
    step.scale_images({"inputs": np.zeros(2), "label": np.zeros(2)})


def test_user_file_trains_through_jdl_train_with_import(user_file, tmp_path, capsys, monkeypatch):
  monkeypatch.delenv(config_lib.IMPORTS_ENV, raising=False)
  run = tmp_path / "run"
  status = cli.main(["train", "mlp_fashion_mnist", "--import", str(user_file), "--workdir", str(run),
                     "--config.data.name=two_moons_user", "--config.optimizer.name=signsgd_user",
                     "--config.optimizer.learning_rate=0.01", "--config.model.options.hidden=(16,)",
                     "--config.epochs=2", "--config.data.batch_size=24",
                     "--config.callbacks=('count_epochs_user:scale=10',)", "--config.progress=false"])
  assert status == 0, capsys.readouterr().err
  logs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
  assert [entry["seen_epochs"] for entry in logs] == [10, 20]
  stored = json.loads((run / "config.json").read_text())
  # The experiment's cosine schedule over 2 epochs of 9 steps: the rate at each epoch's last step.
  rate = jdl.optim.learning_rate_fn({**stored["optimizer"], "schedule": stored["optimizer"]["schedule"] or None,
                                     "clip_global_norm": None}, total_steps=18)
  assert [entry["learning_rate"] for entry in logs] == pytest.approx([rate(8), rate(17)])
  assert logs[0]["learning_rate"] < 0.01 and rate(0) == pytest.approx(0.01, rel=0.05)
  assert stored["imports"] == [str(user_file.resolve())]
  # The run reopens with the user's file re-imported from its record: no --import needed.
  assert cli.main(["eval", str(run)]) == 0
  assert cli.main(["list", "optimizers"]) == 0
  assert "signsgd_user  (yours)" in capsys.readouterr().out


def test_six_extensions_from_a_users_file_train_from_the_shell(user_file, tmp_path, monkeypatch):
  monkeypatch.delenv(config_lib.IMPORTS_ENV, raising=False)
  run = tmp_path / "run"
  command = [sys.executable, "-m", "jdl.cli", "train", "mlp_fashion_mnist", "--import", str(user_file),
             "--workdir", str(run), "--config.data.name=two_moons_user", "--config.model.name=se_mlp_user",
             "--config.model.options={}", "--config.optimizer.name=adam_eps_decay_user",
             "--config.optimizer.learning_rate=0.01", "--config.optimizer.schedule={}", "--config.epochs=2",
             "--config.data.batch_size=24", "--config.chunks_per_epoch=3",
             "--config.metrics=('accuracy', 'ece_user:num_bins=10', 'balanced_accuracy_user')",
             "--config.callbacks=('count_epochs_user', 'chunks_user')", "--config.progress=false",
             "--config.tensorboard=false", "--config.plot=false"]
  done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 0, done.stderr
  logs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
  # 216 training examples (train[:90%]) in batches of 24: 9 steps an epoch, 3 chunks of 3.
  assert logs[-1]["chunk_steps"] == [3, 6, 9, 12, 15, 18] and [e["seen_epochs"] for e in logs] == [1, 2]
  assert {"eval_ece_user_num_bins_10", "eval_balanced_accuracy_user_macro"} <= set(logs[-1])  # Recall: _macro
  summary = json.loads((run / "summary.json").read_text())
  # The streamed metrics equal one-shot computations on the run's own test predictions.
  from jdl.train import runs  # pylint: disable=g-import-not-at-top

  trained = runs.load_run(run)  # re-imports the user's file from the run's record
  test = trained.split("test")
  probs = np.asarray(trained.predict(test["inputs"])["probabilities"])
  top, predicted, labels = probs.max(1), probs.argmax(1), test["label"]
  bins = np.minimum((top * 10).astype(int), 9)
  ece = sum((bins == b).mean() * abs((predicted == labels)[bins == b].mean() - top[bins == b].mean())
            for b in range(10) if (bins == b).any())
  assert summary["test_ece_user_num_bins_10"] == pytest.approx(ece, abs=1e-5)
  recalls = [np.mean(predicted[labels == c] == c) for c in (0, 1)]
  assert summary["test_balanced_accuracy_user_macro"] == pytest.approx(np.mean(recalls), abs=1e-6)
  assert summary["test_accuracy"] > 0.8


def test_a_file_imported_as_a_module_and_by_path_registers_once(user_file, monkeypatch):
  monkeypatch.syspath_prepend(str(user_file.parent))
  with jdl.registry.scoped_all():
    import my_parts  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    config_lib.import_all([str(user_file)])  # the same file again, under another module name: a no-op
    assert "se_mlp_user" in jdl.models.list_models()
  sys.modules.pop("my_parts", None)


def test_an_optimizer_whose_state_repeats_one_array_trains(tmp_path, tiny_data, capsys):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  def init(params):
    zeros = jax.tree.map(jnp.zeros_like, params)
    return (zeros, zeros)  # one array in two slots: the compiled step donates each buffer once

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda g: -0.01 * g, updates), state

  with jdl.registry.scoped_all():
    jdl.optim.register("repeats_user", lambda learning_rate: optax.GradientTransformation(init, update))
    assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(tmp_path / "r"), "--config.epochs=1",
                     "--config.optimizer.name=repeats_user", "--config.optimizer.schedule={}",
                     "--config.model.options.hidden=(8,)", "--config.progress=false"]) == 0, capsys.readouterr().err


def test_bad_imports_and_names_are_clear_errors_before_training(tmp_path, capsys, monkeypatch):
  monkeypatch.delenv(config_lib.IMPORTS_ENV, raising=False)
  broken = tmp_path / "broken_parts.py"
  broken.write_text("import jdl\n\ndef helper():\n  return 1 / 0\n\nhelper()\n")
  assert cli.main(["list", "models", "--import", str(broken)]) == 2
  err = capsys.readouterr().err
  assert "import" in err and "broken_parts.py" in err and "line 4, in helper" in err and "ZeroDivisionError" in err
  assert "jdl/config.py" not in err  # the user's traceback, not jdl's
  run = tmp_path / "run"
  assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(run), "--config.callbacks=('nope',)"]) == 2
  assert "unknown callback 'nope'; known callbacks:" in capsys.readouterr().err
  assert not run.exists()  # refused before anything was written or compiled
  assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(run), "--config.optimizer.name=signsgd_x"]) == 2
  assert "--import FILE" in capsys.readouterr().err


def test_summary_of_an_experiment_file(capsys):
  assert cli.main(["summary", "mnist1d_mlp"]) == 0
  out = capsys.readouterr().out
  assert "Total" in out or "params" in out.lower()


def _png(pixels):
  import io  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, "PNG")
  return buffer.getvalue()


def _tiny_shapes_builder():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  class JdlTestTinyShapes(tfds.core.GeneratorBasedBuilder):
    """Dark and light 8x8 images; the generator yields PNG bytes (TFDS encodes arrays with TensorFlow)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "picture": tfds.features.Image(shape=(8, 8, 3)),
          "kind": tfds.features.ClassLabel(names=["dark", "light"])}), supervised_keys=("picture", "kind"))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(20, 0), "test": self._generate_examples(6, 1)}

    def _generate_examples(self, n, seed):
      rng = np.random.default_rng(seed)
      for i in range(n):
        yield i, {"picture": _png((rng.integers(0, 100, (8, 8, 3)) + 150 * (i % 2)).astype(np.uint8)),
                  "kind": i % 2}

  return JdlTestTinyShapes


@pytest.fixture(scope="module")
def tiny_shapes():
  return _tiny_shapes_builder()  # TFDS registers a builder class by its name once per process


def test_a_tfds_builder_and_tfds_names_are_datasets_read_without_tensorflow(tiny_shapes, tmp_path, monkeypatch):
  monkeypatch.setenv("JDL_TFDS_DIR", str(tmp_path))
  info = jdl.data.register("shapes_user", tiny_shapes(data_dir=str(tmp_path), file_format="array_record"))
  assert info.input_key == "image" and info.class_names == ("dark", "light") and dict(info.splits) == {
      "train": 20, "test": 6}
  train = jdl.data.load("shapes_user", "train")
  assert train["image"].shape == (20, 8, 8, 3) and train["image"].dtype == np.uint8
  light = train["image"][train["label"] == 1].mean()
  assert light > 150 > train["image"][train["label"] == 0].mean()  # the labels belong to their images
  small = jdl.data.load("tfds:jdl_test_tiny_shapes?size=4", "test")  # TFDS's registry, prepared already
  assert small["image"].shape == (6, 4, 4, 3)
  with pytest.raises(ValueError, match="TFDS has no dataset 'no_such_dataset'"):
    jdl.data.info("tfds:no_such_dataset")
  with pytest.raises(ValueError, match="image_size applies to a TFDS builder's images"):
    jdl.data.register("arrays_user", {"train": (np.zeros((4, 2)), np.zeros(4, int))}, image_size=8)
