"""Strict test settings: rank promotion raises, warnings are errors (pyproject)."""

import os

# Tests see 8 simulated CPU devices; the single-device code paths still run on device 0.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# jdl train's persistent compilation cache: one per test process, never the user's.
os.environ.setdefault("JDL_CACHE_DIR", os.path.join(__import__("tempfile").mkdtemp(prefix="jdl-xla-"), "xla"))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jdl.data import write_idx  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(autouse=True)
def _registrations_stay_in_their_test():
  """What a test registers (a user's file imported by cli.main, a docs page) is undone after it."""
  from jdl.registry import scoped_all  # pylint: disable=g-import-not-at-top

  with scoped_all():
    yield


@pytest.fixture
def rng():
  return jax.random.key(0)


def _tiny_images(n, seed):
  """Class k lights up rows 2k and 2k+1: a learnable, 28×28×1 MNIST-format set."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, n).astype(np.uint8)
  images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
  for k in range(10):
    images[labels == k, 2 * k:2 * k + 2, :] = 250
  return images, labels


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
  """IDX files of 640 train and 230 test tiny images, and an empty TFDS data dir (prepared once per session)."""
  raw = tmp_path_factory.mktemp("raw")
  for prefix, n, seed in (("train", 640, 0), ("t10k", 230, 1)):
    images, labels = _tiny_images(n, seed)
    write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels)
  return raw, tmp_path_factory.mktemp("tfds")


def use_tiny_data(tiny_dirs, monkeypatch):
  """Points jdl's fashion_mnist at the tiny IDX files (a module-scoped fixture passes a MonkeyPatch of its own)."""
  raw, tfds_dir = tiny_dirs
  monkeypatch.setenv("JDL_DATA_DIR", str(raw))
  monkeypatch.setenv("JDL_TFDS_DIR", str(tfds_dir))
  monkeypatch.setenv("JDL_DATA_VERIFY", "0")  # tiny files have no canonical checksum
  return raw


@pytest.fixture
def tiny_data(tiny_dirs, monkeypatch):
  """Points jdl's fashion_mnist at the tiny IDX files; returns their directory."""
  return use_tiny_data(tiny_dirs, monkeypatch)
