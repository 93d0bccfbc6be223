"""Transfer learning in jdl train: init_from, frozen BatchNorm, cached features, parameter groups, class subsets,
your own image folders."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jdl.data
import jdl.models
from jdl import cli
from jdl.data import subsets
from jdl.train import runs, transfer

# One worker runs this module, so that its module-scoped run is set up once (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("transfer")

CNN = ["--config.model.name=cnn_small", "--config.model.options={'features': (4, 8)}", "--config.model.options.dropout=0.0",
       "--config.data.batch_size=32", "--config.data.eval_batch_size=100", "--config.progress=false",
       "--config.checkpoint.every_seconds=0", "--config.tensorboard=false", "--config.plot=false",
       "--config.optimizer.name=adam", "--config.strategy=single"]
BACKBONE = "--config.optimizer.freeze=('conv_0','bn_0','conv_1','bn_1')"


def _train(workdir, *overrides):
  assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(workdir), *CNN, *overrides]) == 0
  return json.loads((pathlib.Path(workdir) / "summary.json").read_text())


@pytest.fixture(scope="module")
def source_run(tiny_dirs, tmp_path_factory):
  """A small CNN trained on classes 0-4 of the tiny Fashion-MNIST."""
  from conftest import use_tiny_data  # pylint: disable=g-import-not-at-top

  with pytest.MonkeyPatch.context() as patch:
    use_tiny_data(tiny_dirs, patch)
    workdir = tmp_path_factory.mktemp("source") / "run"
    _train(workdir, "--config.data.classes=(0,1,2,3,4)", "--config.epochs=2")
  return workdir


def _leaves(variables):
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(variables)}


def test_feature_extraction_takes_the_backbone_keeps_it_bitwise_and_trains_the_head_on_cached_features(
    source_run, tiny_data, tmp_path, capsys):
  target = ["--config.data.classes=(5,6,7,8,9)", "--config.data.train_per_class=10", f"--config.init_from={source_run}",
            "--config.init_from_skip=('fc',)", BACKBONE, "--config.epochs=3"]
  cached = _train(tmp_path / "cached", *target, "--config.cache_features=true")
  err = capsys.readouterr().err
  assert "init_from: took 10 of 12 arrays (948 of 2,913 values)" in err
  assert "kept the fresh initialisation of fc/bias, fc/kernel (init_from_skip)" in err
  assert cached["init_from"]["kept"] == ["fc/bias", "fc/kernel"]
  features = cached["engine"]["cached_features"]
  assert features["head"] == "fc" and features["dim"] == 7 * 7 * 8 and features["examples"]["train"] == 50
  whole = _train(tmp_path / "whole", *target)  # the same run computing the frozen backbone at every step
  assert "cached_features" not in whole["engine"]
  source, a, b = (_leaves(runs.load_run(d).variables) for d in (source_run, tmp_path / "cached", tmp_path / "whole"))
  for key, value in source.items():
    if "'fc'" not in key:  # the frozen backbone, BatchNorm statistics included: the source's, bit for bit
      np.testing.assert_array_equal(a[key], value)
      np.testing.assert_array_equal(b[key], value)
  for key in ("['params']['fc']['kernel']", "['params']['fc']['bias']"):  # the same head either way
    np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6)
  assert cached["test_accuracy"] == pytest.approx(whole["test_accuracy"], abs=1e-6)
  # The checkpoint is the whole network: evaluating it on images reproduces the test figures of the features.
  assert cli.main(["eval", str(tmp_path / "cached")]) == 0
  assert f"test_accuracy={cached['test_accuracy']:.6f}" in capsys.readouterr().out


def test_frozen_batch_norm_runs_in_inference_mode_and_keeps_its_statistics():
  model = jdl.models.create("cnn_small", num_classes=3, features=(4,), dropout=0.0)
  x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 1)), jnp.float32)
  variables = model.init(jax.random.key(0), x)
  variables = {**variables, "batch_stats": jax.tree.map(lambda v: v + 0.3, variables["batch_stats"])}
  frozen = transfer.frozen_batch_norm(model.apply, ("conv_0", "bn_0"))
  out, state = frozen(variables, x, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(out, model.apply(variables, x, train=False), rtol=1e-6)
  jax.tree.map(np.testing.assert_array_equal, state["batch_stats"], variables["batch_stats"])
  # Not frozen (only the convolution is): BatchNorm normalises with the batch and updates its statistics.
  out2, state2 = transfer.frozen_batch_norm(model.apply, ("conv_0",))(variables, x, train=True,
                                                                      mutable=["batch_stats"])
  assert not np.allclose(out2, out)
  assert not np.allclose(state2["batch_stats"]["bn_0"]["mean"], variables["batch_stats"]["bn_0"]["mean"])


def test_parameter_groups_scale_the_rate_and_start_late():
  params = {"head": jnp.ones(2), "body": jnp.ones(2), "stem": jnp.ones(2)}
  tx = jdl.optim.param_groups(optax.sgd(1.0), {"body": {"params": ("body",), "learning_rate_scale": 0.1},
                                               "stem": {"params": ("stem",), "start_epoch": 2}}, updates_per_epoch=3)
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  seen = []
  for _ in range(7):
    updates, state = tx.update(grads, state, params)
    seen.append({k: float(v[0]) for k, v in updates.items()})
  assert [u["head"] for u in seen] == [-1.0] * 7
  assert [u["body"] for u in seen] == pytest.approx([-0.1] * 7)
  assert [u["stem"] for u in seen] == [0.0] * 6 + [-1.0]  # epochs 0 and 1 (3 updates each) frozen
  with pytest.raises(ValueError, match=r"group 'body' has unknown keys \['lr'\]"):
    jdl.optim.param_groups(optax.sgd(1.0), {"body": {"params": ("body",), "lr": 0.1}})
  with pytest.raises(ValueError, match="pattern 'nowhere' matches no parameter"):
    jdl.optim.param_groups(optax.sgd(1.0), {"g": {"params": ("nowhere",)}}).init(params)


def test_class_subsets_and_few_labels_per_class():
  arrays = {"image": np.arange(12), "label": np.array([0, 1, 2, 3] * 3)}
  picked = subsets.select_classes(arrays, (3, 1))
  assert picked["label"].tolist() == [1, 0, 1, 0, 1, 0] and picked["image"].tolist() == [1, 3, 5, 7, 9, 11]
  few = subsets.per_class(arrays, 2, seed=0)
  assert np.bincount(few["label"]).tolist() == [2, 2, 2, 2] and list(few["image"]) == sorted(few["image"])
  assert subsets.per_class(arrays, 2, seed=0)["image"].tolist() == few["image"].tolist()
  with pytest.raises(ValueError, match="class 0 has 3 training examples, fewer than 5"):
    subsets.per_class(arrays, 5, seed=0)
  info = jdl.data.info("fashion_mnist")
  assert subsets.subset_info(info, subsets.check_classes(("Sandal", 9), info)).class_names == ("Sandal", "Ankle boot")
  with pytest.raises(ValueError, match=r"data.classes: expected class ids in \[0, 10\) or class names"):
    subsets.check_classes((10,), info)
  with pytest.raises(ValueError, match="each class once"):
    subsets.check_classes((1, 1), info)


@pytest.mark.parametrize("overrides, error", [
    (["--config.init_from=nowhere/run"], "init_from: no such run directory or weights file"),
    (["--config.init_from_skip=('fc',)"], r"init_from_skip: \('fc',\) given without init_from"),
    (["--config.cache_features=true", "--config.augment=flip"],
     "cache_features: .* cannot be combined with augment='flip'"),
    (["--config.cache_features=true", "--config.optimizer.freeze=('conv_0',)"],
     "cache_features: the trainable parameters must be one top-level layer .* trainable now: bn_0, bn_1, conv_1, fc"),
    (["--config.optimizer.freeze=('conv*', 'bn')"], "optimizer.freeze: pattern 'bn' matches no parameter"),
    ([BACKBONE, "--config.optimizer.groups={'body': {'params': ('conv_*',)}}"],
     r"optimizer.groups \(among the parameters optimizer.freeze=.* leaves trainable\) group 'body': pattern "
     r"'conv_\*' matches no parameter; parameter paths: fc/bias, fc/kernel"),
])
def test_bad_transfer_settings_fail_before_training(tiny_data, tmp_path, capsys, overrides, error):
  assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(tmp_path / "r"), *CNN, *overrides]) == 2
  assert __import__("re").search(error, capsys.readouterr().err)
  assert not (tmp_path / "r" / "checkpoints").exists()


def test_a_keras_file_needs_the_options_its_network_differs_by(tiny_data, tmp_path, capsys):
  (tmp_path / "mobilenet_v2.h5").write_bytes(b"")  # checked before it is read
  common = ["train", "mlp_fashion_mnist", "--workdir", str(tmp_path / "r"), "--config.model.name=mobilenet_v2",
            f"--config.init_from={tmp_path / 'mobilenet_v2.h5'}", "--config.progress=false"]
  assert cli.main([*common, "--config.model.options={}"]) == 2
  assert "normalised as 'tf'; set model.options.preprocess='tf'" in capsys.readouterr().err
  assert cli.main([*common, "--config.model.options={'preprocess': 'tf'}"]) == 2
  assert ("the Keras network in" in (err := capsys.readouterr().err)
          and "set model.options.padding='same', model.options.bn_epsilon=0.001 so that it computes" in err)


def test_init_from_a_run_of_another_shape_names_the_arrays_and_the_skip_that_fits(source_run, tiny_data, tmp_path,
                                                                                   capsys):
  code = cli.main(["train", "mlp_fashion_mnist", "--workdir", str(tmp_path / "r"), *CNN,
                   f"--config.init_from={source_run}", "--config.epochs=1"])
  assert code == 2
  err = capsys.readouterr().err
  assert "does not fit model 'cnn_small'; wrongly shaped (2): " in err
  assert "fc/bias: the model has (10,), the source (5,)" in err and "fc/kernel: the model has (392, 10)" in err
  assert "add it to init_from_skip, e.g. init_from_skip=('fc',)" in err


# --------------------------------------------------------------------------- #
# Image folders.
# --------------------------------------------------------------------------- #


def _write_images(root, classes, per_class, size=(20, 24), seed=0):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(seed)
  for k, name in enumerate(classes):
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(per_class):
      color = np.array([200 if k == 0 else 40, 80, 40 if k == 0 else 200])
      pixels = np.clip(rng.normal(color, 20, (*size, 3)), 0, 255).astype(np.uint8)
      Image.fromarray(pixels).save(folder / f"{i:03d}.{'png' if i % 2 else 'jpg'}")


def test_one_folder_splits_per_class_skips_unreadable_files_and_prepares_once(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv("JDL_TFDS_DIR", str(tmp_path / "tfds"))
  _write_images(tmp_path / "pets", ("cat", "dog"), 10)
  (tmp_path / "pets" / "cat" / "notes.txt").write_text("not an image")
  (tmp_path / "pets" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 10)
  info = jdl.data.register_folder("pets_test", tmp_path / "pets", image_size=(8, 12), test_fraction=0.25)
  assert "skipped 2 file(s) Pillow could not read as images: cat/notes.txt, dog/broken.jpg" in capsys.readouterr().err
  assert info.class_names == ("cat", "dog") and info.input_shape == (8, 12, 3)
  train, test = jdl.data.load("pets_test", "train"), jdl.data.load("pets_test", "test")
  assert train["image"].dtype == np.uint8 and train["image"].shape[1:] == (8, 12, 3)
  assert np.bincount(train["label"]).tolist() == [8, 8] and np.bincount(test["label"]).tolist() == [2, 2]
  assert train["image"][train["label"] == 0][..., 0].mean() > 150 > train["image"][train["label"] == 1][..., 0].mean()
  assert set(train["label"][-2:].tolist()) == {0, 1}  # stored shuffled: the last slice holds both classes
  variant = next((tmp_path / "tfds" / "jdl_image_folder").iterdir()) / "1.0.0"
  assert json.loads((variant / "jdl_skipped.json").read_text()) == ["cat/notes.txt", "dog/broken.jpg"]
  # Registered again (another process, the same folder): read back, nothing decoded.
  monkeypatch.setattr(jdl.data.folder, "decode", lambda *a: pytest.fail("decoded again"))
  assert jdl.data.register_folder("pets_test", tmp_path / "pets", image_size=(8, 12), test_fraction=0.25) == info
  # A changed folder is another dataset.
  monkeypatch.undo()
  monkeypatch.setenv("JDL_TFDS_DIR", str(tmp_path / "tfds"))
  _write_images(tmp_path / "pets", ("cat",), 11)
  jdl.data.register_folder("pets_test", tmp_path / "pets", image_size=(8, 12), test_fraction=0.25, overwrite=True)
  assert len(list((tmp_path / "tfds" / "jdl_image_folder").iterdir())) == 2


def test_bad_folders_are_clear_errors_and_leave_nothing_prepared(tmp_path, monkeypatch):
  monkeypatch.setenv("JDL_TFDS_DIR", str(tmp_path / "tfds"))
  with pytest.raises(FileNotFoundError, match="no such directory"):
    jdl.data.register_folder("x", tmp_path / "missing")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="has no class folders"):
    jdl.data.register_folder("x", tmp_path / "empty")
  _write_images(tmp_path / "one", ("cat", "dog"), 3)
  (tmp_path / "one" / "bird").mkdir()
  _write_images(tmp_path / "one", ("bird",), 1)
  with pytest.raises(ValueError, match="class 'bird' \\(1\\) has fewer than 2 readable images.*needs at least 2 per"):
    jdl.data.register_folder("x", tmp_path / "one")
  for name in ("a", "b", "c"):
    (tmp_path / "junk" / "c1" / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "junk" / "c1" / name).write_text("text")
  with pytest.raises(ValueError, match="no readable image under .* for the train split"):
    jdl.data.register_folder("x", tmp_path / "junk")
  _write_images(tmp_path / "split" / "train", ("cat",), 2)
  _write_images(tmp_path / "split" / "test", ("cat", "dog"), 2)
  with pytest.raises(ValueError, match="test has classes that train lacks: dog"):
    jdl.data.register_folder("x", tmp_path / "split")
  assert not (tmp_path / "tfds").exists() or not any((tmp_path / "tfds").rglob("dataset_info.json"))
  with pytest.raises(ValueError, match="image_size must be a positive int or"):
    jdl.data.register_folder("x", tmp_path / "split", image_size=0)


def test_torchvision_weights_on_your_own_folder_through_jdl_train(tmp_path, monkeypatch, capsys):
  torch = pytest.importorskip("torch")
  layouts = pytest.importorskip("_torchvision_layouts")
  monkeypatch.setenv("JDL_TFDS_DIR", str(tmp_path / "tfds"))
  _write_images(tmp_path / "pets" / "train", ("cat", "dog"), 12)
  _write_images(tmp_path / "pets" / "test", ("cat", "dog"), 4, seed=1)
  torch.manual_seed(0)
  torch.save(layouts.randomize_batch_norm(layouts.resnet18(num_classes=1000)).state_dict(), tmp_path / "r18.pth")
  folder = f"folder:{tmp_path / 'pets'}?size=32"
  common = ["train", "mlp_fashion_mnist", "--workdir", str(tmp_path / "run"), f"--config.data.name={folder}",
            "--config.model.name=resnet18", "--config.model.options={}", "--config.data.batch_size=8",
            "--config.progress=false", "--config.tensorboard=false", "--config.plot=false", "--config.epochs=8",
            "--config.optimizer.name=adam", "--config.optimizer.learning_rate=0.1",
            "--config.data.eval_split=''", "--config.checkpoint.monitor=''", "--config.strategy=single",
            f"--config.init_from={tmp_path / 'r18.pth'}", "--config.init_from_skip=('fc',)",
            "--config.optimizer.freeze=('stem_*','layer*')", "--config.cache_features=true"]
  assert cli.main(common) == 2  # the weights expect torchvision's normalisation: say so
  assert "set model.options.preprocess='torchvision'" in capsys.readouterr().err
  assert cli.main([*common, "--config.model.options.preprocess=torchvision"]) == 0
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  assert summary["engine"]["cached_features"]["dim"] == 512
  assert summary["init_from"]["taken_arrays"] == summary["init_from"]["total_arrays"] - 2
  assert summary["test_accuracy"] == 1.0  # red cats, blue dogs
