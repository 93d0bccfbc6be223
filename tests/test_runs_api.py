"""A trained run back in Python and from the shell: evaluate, predict, a user's model without its file."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from jdl import cli
from jdl.train import runs

USER_EXPERIMENT = '''
import flax.linen as nn
import jdl
from jdl.config import base_config


@jdl.models.register("user_tiny_net", overwrite=True)
class UserTinyNet(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, x, train=False):
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_classes)(nn.tanh(nn.Dense(12)(x)))


def get_config():
  config = base_config()
  config.name = "user_experiment"
  config.data.name = "fashion_mnist"
  config.data.batch_size = 64
  config.data.eval_batch_size = 100
  config.model.name = "user_tiny_net"
  config.metrics = ("f1:macro",)
  config.epochs = 2
  config.progress = "false"
  config.plot = False
  config.checkpoint.every_seconds = 0.0
  return config
'''


@pytest.fixture
def user_run(tiny_data, tmp_path):
  source = tmp_path / "src" / "user_experiment.py"
  source.parent.mkdir()
  source.write_text(USER_EXPERIMENT)
  run = tmp_path / "run"
  assert cli.main(["train", str(source), "--workdir", str(run)]) == 0
  assert (run / "experiment.py").read_text() == USER_EXPERIMENT
  source.unlink()  # the user's file is gone: the run must stand on its own
  return run


def test_evaluate_reproduces_the_summary_exactly(user_run, capsys):
  summary = json.loads((user_run / "summary.json").read_text())
  run = runs.load_run(user_run)
  out = run.evaluate("test")
  for key in ("test_loss", "test_accuracy", "test_f1_macro"):
    assert out[key] == summary[key], key
  assert cli.main(["eval", str(user_run), "--metrics", "accuracy,f1:macro"]) == 0
  assert f"test_accuracy={summary['test_accuracy']:.6f}" in capsys.readouterr().out
  assert set(run.evaluate("train", metrics=["f1:weighted"])) == {"train_loss", "train_accuracy", "train_f1_weighted"}


def test_predict_in_a_fresh_process_without_the_users_file(user_run, tmp_path):
  run = runs.load_run(user_run)
  images = np.asarray(run.split("test")["image"][:300])
  expected = np.asarray(run.logits(run.inputs({"image": images})))
  out = run.predict(images, batch_size=128)  # 300 = 2 full batches and a padded one
  np.testing.assert_allclose(out["outputs"], expected, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(out["labels"], np.argmax(expected, axis=-1))
  np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
  assert out["classes"][0] == run.class_names[out["labels"][0]]
  np.save(tmp_path / "images.npy", images)
  script = textwrap.dedent(f"""
      import numpy as np
      import jdl.models
      from jdl.train import runs
      assert "user_tiny_net" not in jdl.models.list_models()
      run = runs.load_run({str(user_run)!r})
      np.save({str(tmp_path / 'fresh.npy')!r}, run.predict(np.load({str(tmp_path / 'images.npy')!r}))["outputs"])
  """)
  subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=dict(os.environ))
  np.testing.assert_allclose(np.load(tmp_path / "fresh.npy"), expected, rtol=1e-6, atol=1e-6)


def test_jdl_predict_reads_images_and_arrays(user_run, tmp_path, capsys):
  run = runs.load_run(user_run)
  images = np.asarray(run.split("test")["image"][:2])
  np.save(tmp_path / "two.npy", images)
  Image.fromarray(images[0][..., 0]).save(tmp_path / "first.png")
  assert cli.main(["predict", str(user_run), str(tmp_path / "two.npy"), str(tmp_path / "first.png"), "--json"]) == 0
  rows = json.loads(capsys.readouterr().out)
  assert [r["file"] for r in rows] == ["two.npy[0]", "two.npy[1]", "first.png"]
  assert rows[0]["class"] == rows[2]["class"] and rows[0]["probability"] == pytest.approx(rows[2]["probability"])
  (tmp_path / "bad.png").write_text("not an image")
  assert cli.main(["predict", str(user_run), str(tmp_path / "bad.png")]) == 2
  assert "bad.png is not an image Pillow can read" in capsys.readouterr().err
  assert cli.main(["predict", str(user_run), str(tmp_path / "missing.png")]) == 2
  assert "missing.png is not a file" in capsys.readouterr().err
  assert cli.main(["eval", str(user_run), "--metrics", "accuracy,f9"]) == 2
  assert "f9" in capsys.readouterr().err
