"""Extending jdl from your own files: one registry pattern, --import on the command line, your own data."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jdl.data
import jdl.losses
import jdl.metrics
import jdl.models
import jdl.optim
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
