"""Pretrained weights: PyTorch (torchvision's names) and Keras files give the source frameworks' logits.

No download: each test builds the source network with random weights (and
BatchNorm statistics away from their defaults), saves it as its framework does,
loads the file with jdl and compares logits on the same random batch.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jdl.models
from jdl.models import pretrained
from jdl.nn.preprocessing import preprocess_images

# Keras 3 turns its variables into numpy arrays without numpy 2's copy keyword.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

torch = pytest.importorskip("torch")
layouts = pytest.importorskip("_torchvision_layouts")  # tests/ is on the path (conftest)


def _images(n, size, seed=0):
  return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype(np.float32)


def _torch_logits(model, x_nhwc, mode="torchvision"):
  x = np.asarray(preprocess_images(x_nhwc, mode))
  with torch.no_grad():
    return model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()


def _logits(module, variables, x):
  return jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, x)


def _close(actual, expected):
  actual, expected = np.asarray(actual), np.asarray(expected)
  scale = np.abs(expected).max()
  np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-4 * max(scale, 1e-3))


@pytest.mark.parametrize("name, build, size, kwargs", [
    ("resnet18", lambda: layouts.resnet18(num_classes=7), 64, {}),
    ("resnet50", lambda: layouts.resnet50(num_classes=5), 64, {}),
    ("mobilenet_v2", lambda: layouts.MobileNetV2(num_classes=6), 32, {}),
    ("vgg16", lambda: layouts.VGG(num_classes=4, hidden=32), 64, {}),
    ("vgg16_bn", lambda: layouts.VGG(batch_norm=True, num_classes=4, hidden=16), 32, {}),
    ("alexnet", lambda: layouts.AlexNet(num_classes=3, hidden=24), 96, {}),
])
def test_torchvision_layout_files_give_pytorchs_logits(tmp_path, name, build, size, kwargs):
  torch.manual_seed(0)
  model = layouts.randomize_batch_norm(build())
  path = tmp_path / f"{name}.pth"
  torch.save(model.state_dict(), path)
  module, variables = jdl.models.from_torchvision(name, path, **kwargs)
  x = _images(2, size)
  _close(_logits(module, variables, x), _torch_logits(model, x))
  # Every parameter and statistic came from the file: as many values as PyTorch holds.
  n_torch = sum(v.numel() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked"))
  assert sum(v.size for v in jax.tree.leaves(variables)) == n_torch


def test_safetensors_and_wrapped_checkpoints_load_the_same(tmp_path):
  safetensors_torch = pytest.importorskip("safetensors.torch")
  torch.manual_seed(1)
  model = layouts.randomize_batch_norm(layouts.resnet18(num_classes=3), seed=1)
  safetensors_torch.save_file(model.state_dict(), str(tmp_path / "r.safetensors"))
  # A training checkpoint wrapping its weights, with DataParallel's "module." prefix.
  torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3},
             tmp_path / "ckpt.pt")
  x = _images(2, 32, seed=1)
  expected = _torch_logits(model, x)
  for file in ("r.safetensors", "ckpt.pt"):
    module, variables = jdl.models.from_torchvision("resnet18", tmp_path / file)
    _close(_logits(module, variables, x), expected)


def test_a_new_head_replaces_the_files_and_keeps_the_features(tmp_path, capsys):
  torch.manual_seed(2)
  model = layouts.randomize_batch_norm(layouts.resnet18(num_classes=1000), seed=2)
  torch.save(model.state_dict(), tmp_path / "r.pth")
  module, variables = jdl.models.from_torchvision("resnet18", tmp_path / "r.pth", num_classes=5, seed=3)
  assert "replaced by a freshly initialised one with 5" in capsys.readouterr().err
  assert variables["params"]["fc"]["kernel"].shape == (512, 5)
  np.testing.assert_array_equal(variables["params"]["layer4_1"]["conv2"]["kernel"],
                                model.layer4[1].conv2.weight.detach().numpy().transpose(2, 3, 1, 0))
  assert _logits(module, variables, _images(2, 32)).shape == (2, 5)


def test_files_of_another_architecture_and_bad_files_are_clear_errors(tmp_path):
  torch.manual_seed(0)
  torch.save(layouts.resnet18(num_classes=10).state_dict(), tmp_path / "r18.pth")
  with pytest.raises(ValueError, match=r"from_torchvision: .*r18.pth' does not fit the model; missing from the "
                                       r"file \(165\): .*layer1_0/conv3/kernel \(layer1.0.conv3\).*; wrongly shaped "
                                       r"\(24\): fc/kernel \(fc\): the model has \(2048, 10\), the file \(512, 10\)"):
    jdl.models.from_torchvision("resnet50", tmp_path / "r18.pth")
  data = (tmp_path / "r18.pth").read_bytes()
  (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match=r"cut.pth' is not a readable PyTorch weights file \(truncated"):
    jdl.models.from_torchvision("resnet18", tmp_path / "cut.pth")
  with pytest.raises(FileNotFoundError, match=r"no such file .*nowhere.pth"):
    jdl.models.from_torchvision("resnet18", tmp_path / "nowhere.pth")
  with pytest.raises(ValueError, match=r"no weight mapping for model 'lenet5'; supported: alexnet, mobilenet_v2"):
    jdl.models.from_torchvision("lenet5", tmp_path / "r18.pth")
  with pytest.raises(ValueError, match="num_classes must be a positive int or None"):
    jdl.models.from_torchvision("resnet18", tmp_path / "r18.pth", num_classes=0)


class _Pickled:  # not a tensor: weights_only=True refuses to build it
  pass


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
  torch.save({"conv1.weight": torch.zeros(1), "payload": _Pickled()}, tmp_path / "evil.pth")
  with pytest.raises(ValueError, match=r"evil.pth' is not a readable PyTorch weights file .*weights_only"):
    jdl.models.from_torchvision("resnet18", tmp_path / "evil.pth")


# --------------------------------------------------------------------------- #
# Keras.
# --------------------------------------------------------------------------- #


@pytest.fixture
def keras():
  # Keras' numpy backend builds and runs its applications in a fraction of a second (its JAX backend compiles
  # every layer's initialiser on its own): the same layers, the same files.
  os.environ.setdefault("KERAS_BACKEND", "numpy")
  module = pytest.importorskip("keras")
  with jax.numpy_rank_promotion("allow"):  # Keras' own layers broadcast biases implicitly
    yield module


def _randomize_keras_batch_norm(model, seed=0):
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if layer.__class__.__name__ == "BatchNormalization":
      n = layer.gamma.shape[0]
      for variable, values in ((layer.gamma, rng.uniform(0.5, 1.5, n)), (layer.beta, rng.normal(0, 0.1, n)),
                               (layer.moving_mean, rng.normal(0, 0.1, n)),
                               (layer.moving_variance, rng.uniform(0.5, 1.5, n))):
        variable.assign(values.astype(np.float32))
  return model


def _legacy_h5(model, path):
  from keras.src.legacy.saving import legacy_h5_format  # the format of the ImageNet downloads
  import h5py

  with h5py.File(path, "w") as f:
    legacy_h5_format.save_weights_to_hdf5_group(f, model)


@pytest.mark.parametrize("name, app, size, fmt", [
    ("vgg16", "VGG16", 32, "legacy"),
    ("resnet50", "ResNet50", 32, "weights.h5"),
    ("mobilenet_v2", "MobileNetV2", 48, "keras"),
])
def test_keras_application_files_give_keras_logits(keras, tmp_path, name, app, size, fmt):
  keras.utils.set_random_seed(0)
  model = _randomize_keras_batch_norm(getattr(keras.applications, app)(
      weights=None, input_shape=(size, size, 3), classes=6, classifier_activation=None))
  path = tmp_path / {"legacy": "w.h5", "weights.h5": "w.weights.h5", "keras": "m.keras"}[fmt]
  if fmt == "legacy":
    _legacy_h5(model, path)
  elif fmt == "weights.h5":
    model.save_weights(path)
  else:
    model.save(path)
  module, variables = jdl.models.from_keras(name, path)
  x = _images(2, size)
  preprocess = getattr(keras.applications, {"vgg16": "vgg16", "resnet50": "resnet50",
                                            "mobilenet_v2": "mobilenet_v2"}[name]).preprocess_input
  expected = np.asarray(model.predict(preprocess(x * 255.0), verbose=0))  # compiled: op by op takes seconds
  _close(_logits(module, variables, x), expected)
  assert sum(v.size for v in jax.tree.leaves(variables)) == model.count_params()


def test_keras_architectures_the_zoo_lacks_are_named(keras, tmp_path):
  with pytest.raises(ValueError, match="from_keras: 'ResNet50V2' cannot be loaded: .*pre-activation"):
    jdl.models.from_keras("ResNet50V2", tmp_path / "x.h5")
  (tmp_path / "bad.h5").write_bytes(b"not hdf5")
  with pytest.raises(ValueError, match=r"bad.h5' is not a readable Keras weights file"):
    jdl.models.from_keras("vgg16", tmp_path / "bad.h5")
  keras.utils.set_random_seed(0)
  headless = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
  headless.save_weights(tmp_path / "headless.weights.h5")
  with pytest.raises(ValueError, match="does not fit the model: its layers by class"):
    jdl.models.from_keras("vgg16", tmp_path / "headless.weights.h5")


def test_preprocessing_matches_the_sources():
  x = _images(1, 4)
  np.testing.assert_allclose(preprocess_images(x, "torchvision"),
                             (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]), atol=1e-5)
  np.testing.assert_allclose(preprocess_images(x, "caffe"),
                             x[..., ::-1] * 255 - np.array([103.939, 116.779, 123.68]), rtol=0, atol=1e-4)
  np.testing.assert_allclose(preprocess_images(x, "tf"), x * 2 - 1, rtol=1e-6)
  with pytest.raises(ValueError, match="preprocess: expected one of torchvision, caffe, tf, none, got 'imagenet'"):
    preprocess_images(x, "imagenet")
  assert jnp.asarray(preprocess_images(x, None)).dtype == jnp.float32
