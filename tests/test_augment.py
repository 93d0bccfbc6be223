"""jdl.data.augment: each transform keeps what it must, on the device, and config.augment trains."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jdl import cli
from jdl.data import augment as A

KEY = jax.random.key(0)


def _images(b=4, h=7, w=7, c=1, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(size=(b, h, w, c)), jnp.float32)


def test_crop_is_a_shift_with_zeros_and_zero_padding_is_the_identity():
  x = _images()
  np.testing.assert_array_equal(A.random_crop(x, KEY, 0), x)
  y = np.asarray(A.random_crop(x, KEY, 2))
  assert y.shape == x.shape
  padded = np.pad(np.asarray(x), ((0, 0), (2, 2), (2, 2), (0, 0)))
  for i in range(len(x)):
    assert any(np.array_equal(y[i], padded[i, dy:dy + 7, dx:dx + 7]) for dy in range(5) for dx in range(5))
  np.testing.assert_array_equal(A.random_crop(x, KEY, 2), y)  # the same key, the same crops


def test_flip_mirrors_with_its_probability():
  x = _images()
  np.testing.assert_array_equal(A.horizontal_flip(x, KEY, 0.0), x)
  np.testing.assert_array_equal(A.horizontal_flip(x, KEY, 1.0), x[:, :, ::-1, :])
  y = np.asarray(A.horizontal_flip(_images(b=64), KEY, 0.5))
  flipped = [np.array_equal(y[i], np.asarray(_images(b=64))[i, :, ::-1]) for i in range(64)]
  assert 16 < sum(flipped) < 48


def test_rotation_keeps_the_centre_the_range_and_is_the_identity_at_zero():
  x = _images(b=8)
  np.testing.assert_array_equal(A.rotate(x, KEY, 0.0), x)
  y = np.asarray(A.rotate(x, KEY, 30.0))
  assert y.shape == x.shape and y.min() >= 0.0 and y.max() <= 1.0
  np.testing.assert_allclose(y[:, 3, 3], np.asarray(x)[:, 3, 3], rtol=1e-5)  # the centre pixel stays
  assert not np.allclose(y, x)
  flat = np.asarray(A.rotate(jnp.full((2, 9, 9, 1), 0.5), KEY, 20.0))
  np.testing.assert_allclose(flat[:, 2:7, 2:7], 0.5, rtol=1e-5)  # a constant image stays constant inside


def test_cutout_zeroes_one_square_at_most():
  x = jnp.ones((16, 10, 10, 3))
  np.testing.assert_array_equal(A.cutout(x, KEY, 0), x)
  y = np.asarray(A.cutout(x, KEY, 4))
  zeros = (y[..., 0] == 0).sum(axis=(1, 2))
  assert np.all(zeros >= 4) and np.all(zeros <= 16) and np.all((y == 0).all(-1) == (y[..., 0] == 0))


def test_mixup_mixes_images_and_labels_with_weights_that_sum_to_one():
  b = 6
  x = jnp.eye(b).reshape(b, b, 1, 1) * jnp.ones((1, 1, 1, 1))  # example i is the one-hot e_i
  batch = {"image": x, "label": jnp.arange(b) + 10}
  out = A.mixup(batch, KEY, 0.4, "image")
  mixed, lam = np.asarray(out["image"])[..., 0, 0], np.asarray(out[A.MIX_WEIGHT])
  assert np.all((lam >= 0) & (lam <= 1))
  np.testing.assert_allclose(mixed.sum(axis=1), 1.0, rtol=1e-6)
  for i in range(b):
    partner = int(out[A.MIX_LABEL][i]) - 10
    expected = np.zeros(b)
    expected[i] += lam[i]
    expected[partner] += 1 - lam[i]
    np.testing.assert_allclose(mixed[i], expected, atol=1e-6)


def test_cutmix_label_weight_is_the_area_kept():
  b = 5
  x = jnp.arange(1, b + 1, dtype=jnp.float32).reshape(b, 1, 1, 1) * jnp.ones((1, 8, 8, 1)) / 10
  out = A.cutmix({"image": x, "label": jnp.arange(b)}, KEY, 1.0, "image")
  mixed = np.asarray(out["image"])
  for i in range(b):
    own = np.isclose(mixed[i], (i + 1) / 10).mean()
    partner = int(out[A.MIX_LABEL][i])
    if partner != i:
      assert float(out[A.MIX_WEIGHT][i]) == pytest.approx(own, abs=1e-6)


def test_mixed_loss_mixes_the_two_labels_losses():
  def xent(outputs, batch):
    return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["label"])

  logits = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
  batch = {"label": jnp.array([0, 2]), A.MIX_LABEL: jnp.array([1, 1]), A.MIX_WEIGHT: jnp.array([0.7, 0.25])}
  expected = 0.7 * xent(logits, batch) + 0.3 * xent(logits, {"label": batch[A.MIX_LABEL]})
  got = A.mixed_loss(xent)(logits, batch)
  np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)
  np.testing.assert_allclose(got[1], 0.25 * xent(logits, batch)[1] + 0.75 * xent(logits, {"label": jnp.array([1, 1])})[1],
                             rtol=1e-6)
  np.testing.assert_allclose(A.mixed_loss(xent)(logits, {"label": batch["label"]}), xent(logits, batch), rtol=1e-6)


@pytest.mark.parametrize("spec, message", [
    ("zoom:2", "unknown augmentation 'zoom' in 'zoom:2'; known: crop, flip, rotate, cutout, mixup, cutmix"),
    ("crop", "'crop' needs a strength, e.g. crop:4"),
    ("crop:1.5", "crop takes a whole number of pixels"),
    ("rotate:-3", "expected a finite number >= 0"),
    ("flip:2", "expected a finite number >= 0 and <= 1"),
    ("mixup:0.2,cutmix:1", "names mixup and cutmix; a batch is mixed once"),
])
def test_bad_augment_specs_are_named(spec, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(")):
    A.parse(spec)


SMALL = ["--config.model.options.hidden=(8,)", "--config.data.batch_size=64", "--config.progress=false",
         "--config.plot=false", "--config.epochs=1", "--config.tensorboard=false"]


@pytest.mark.parametrize("spec", ["crop:2,flip,rotate:10,cutout:6", "mixup:0.2", "cutmix:1.0"])
def test_jdl_train_augments_inside_the_step(spec, tiny_data, tmp_path):
  assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(tmp_path / "run"), *SMALL,
                   f"--config.augment={spec}"]) == 0


def test_a_bad_augment_fails_before_anything_is_compiled(tiny_data, tmp_path, monkeypatch, capsys):
  def no_compiling(*args, **kwargs):
    raise AssertionError("compiled before the error")

  monkeypatch.setattr(jax.stages.Lowered, "compile", no_compiling)
  assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(tmp_path / "run"), *SMALL,
                   "--config.augment=crop:2,zoom:3"]) == 2
  assert "unknown augmentation 'zoom'" in capsys.readouterr().err
  assert not (tmp_path / "run").exists()
