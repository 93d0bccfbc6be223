"""Tests for jdl.data: IDX files, sources, the TFDS builders, the .npy cache, splits, tabular sets.

Everything runs on tiny IDX files written here, in tmp_path; nothing is downloaded
from the internet (the download path is exercised against a loopback HTTP server).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import hashlib
import http.server
import json
import os
import random
import subprocess
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from jdl import data
from jdl.data import cache, catalog, core, idx, sources, splits, tabular

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
FILENAMES = dict(zip(ROLES, ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")))
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
REAL_SOURCES = dict(sources.SOURCES)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
  """Every test: prepared data under tmp_path, no system files, no downloads."""
  monkeypatch.setenv("JDL_TFDS_DIR", str(tmp_path / "tfds"))
  monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
  monkeypatch.delenv("JDL_DATA_DIR", raising=False)
  monkeypatch.delenv("JDL_DATA_VERIFY", raising=False)
  monkeypatch.setenv("JDL_DATA_DOWNLOAD", "0")
  for name, src in REAL_SOURCES.items():
    # Port 9 on loopback: refused at once, should anything try to download.
    monkeypatch.setitem(sources.SOURCES, name, dataclasses.replace(src, system_dirs=(), base_url="http://127.0.0.1:9/"))


def tfds_dir(tmp_path: Path) -> Path:
  return tmp_path / "tfds"


def variant_dir(tmp_path: Path, name: str = "fashion_mnist") -> Path:
  return catalog.TFDS_LOCATIONS[name].variant_dir(tfds_dir(tmp_path))


def make_arrays(n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {
      "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
      "train_labels": rng.integers(0, 10, n_train).astype(np.uint8),
      "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
      "test_labels": rng.integers(0, 10, n_test).astype(np.uint8),
  }


def write_files(directory: Path, arrays: dict[str, np.ndarray]) -> None:
  directory.mkdir(parents=True, exist_ok=True)
  for role in ROLES:
    idx.write_idx(directory / FILENAMES[role], arrays[role])


def trust_files(monkeypatch, name: str, directory: Path, **changes) -> None:
  """Makes the files in ``directory`` the known-good (checksummed) files of ``name``."""
  src = sources.SOURCES[name]
  files = {}
  for role in ROLES:
    raw = (directory / FILENAMES[role]).read_bytes()
    files[role] = sources.IdxFile(FILENAMES[role], hashlib.sha256(raw).hexdigest(), hashlib.sha256(gzip.decompress(raw)).hexdigest())
  monkeypatch.setitem(sources.SOURCES, name, dataclasses.replace(src, **files, **changes))


@pytest.fixture
def tiny_fashion(tmp_path, monkeypatch) -> dict[str, np.ndarray]:
  """Tiny Fashion-MNIST-format files in $JDL_DATA_DIR/fashion_mnist, with matching checksums."""
  arrays = make_arrays()
  write_files(tmp_path / "raw" / "fashion_mnist", arrays)
  monkeypatch.setenv("JDL_DATA_DIR", str(tmp_path / "raw"))
  trust_files(monkeypatch, "fashion_mnist", tmp_path / "raw" / "fashion_mnist")
  return arrays


def assert_matches_files(got: dict[str, np.ndarray], arrays: dict[str, np.ndarray], split: str) -> None:
  assert set(got) == {"image", "label"}
  assert got["image"].dtype == np.uint8 and got["label"].dtype == np.int32
  np.testing.assert_array_equal(got["image"], arrays[f"{split}_images"][..., None])
  np.testing.assert_array_equal(got["label"], arrays[f"{split}_labels"].astype(np.int32))


def leftovers(directory: Path) -> list[str]:
  """Temporary or incomplete files anywhere under ``directory``."""
  return [str(p) for p in directory.rglob("*") if p.name.endswith((".tmp", ".part")) or "incomplete" in p.name]


# --- IDX files ---------------------------------------------------------------------------


@pytest.mark.parametrize("filename", ["a-idx3-ubyte.gz", "a-idx3-ubyte"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_roundtrip(tmp_path, filename, dtype):
  array = (np.arange(2 * 3 * 4) - 7).astype(dtype).reshape(2, 3, 4)
  path = tmp_path / filename
  idx.write_idx(path, array)
  assert (path.read_bytes()[:2] == b"\x1f\x8b") == filename.endswith(".gz")
  back = data.read_idx(path, ndim=3)
  assert back.dtype == np.dtype(dtype) and back.dtype.isnative
  np.testing.assert_array_equal(back, array)


def test_idx_header_layout():
  encoded = idx.encode_idx(np.zeros((2, 28, 28), np.uint8))
  assert encoded[:4] == b"\x00\x00\x08\x03"
  assert encoded[4:16] == (2).to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big")
  assert len(encoded) == 16 + 2 * 28 * 28


def _corrupt(kind: str) -> bytes:
  good = idx.encode_idx(np.arange(10, dtype=np.uint8))
  if kind == "magic":
    return gzip.compress(b"\x00\x00\x08\x03" + good[4:])  # says 3 dims, has 1
  if kind == "type":
    return gzip.compress(b"\x00\x00\x07\x01" + good[4:])
  if kind == "short":
    return gzip.compress(good[:-3])
  if kind == "long":
    return gzip.compress(good + b"\x00")
  if kind == "empty":
    return gzip.compress(b"")
  if kind == "truncated_gzip":
    return gzip.compress(good * 50)[:-30]
  if kind == "not_gzip":
    return b"this is not gzip data"
  if kind == "bad_crc":
    blob = bytearray(gzip.compress(good))
    blob[-8] ^= 0xFF
    return bytes(blob)
  raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["magic", "type", "short", "long", "empty", "truncated_gzip", "not_gzip", "bad_crc"])
def test_idx_corrupt_files_raise_value_error_naming_the_file(tmp_path, kind):
  path = tmp_path / f"broken-{kind}-idx1-ubyte.gz"
  path.write_bytes(_corrupt(kind))
  with pytest.raises(ValueError, match=f"broken-{kind}-idx1-ubyte.gz"):
    data.read_idx(path)


def test_idx_wrong_ndim_and_missing_file(tmp_path):
  path = tmp_path / "labels.gz"
  idx.write_idx(path, np.zeros(3, np.uint8))
  with pytest.raises(ValueError, match=r"labels.gz: its magic number 00000801 announces 1 dimensions; expected an image file"):
    data.read_idx(path, ndim=3)
  with pytest.raises(FileNotFoundError, match="nothere.gz"):
    data.read_idx(tmp_path / "nothere.gz")
  with pytest.raises(TypeError, match="complex128"):
    idx.encode_idx(np.zeros(2, np.complex128))


# --- Finding raw files -----------------------------------------------------------------


def test_missing_files_error_names_every_place_and_how_to_get_them(tmp_path, monkeypatch):
  (tmp_path / "mine").mkdir()  # exists, but holds no files
  monkeypatch.setenv("JDL_DATA_DIR", str(tmp_path / "mine"))
  src = sources.SOURCES["fashion_mnist"]
  monkeypatch.setitem(sources.SOURCES, "fashion_mnist", dataclasses.replace(src, system_dirs=(str(tmp_path / "system"),)))
  with pytest.raises(FileNotFoundError) as err:
    data.load("fashion_mnist")
  message = str(err.value)
  for place in [tmp_path / "mine" / "fashion_mnist", tmp_path / "mine" / "fashion-mnist", tmp_path / "mine", tmp_path / "system"]:
    assert str(place) in message
  assert str(sources.download_dir("fashion_mnist", tfds_dir(tmp_path))) in message
  assert "apt-get install dataset-fashion-mnist" in message
  assert "JDL_DATA_DIR" in message and "JDL_DATA_DOWNLOAD" in message
  assert "http://127.0.0.1:9/train-images-idx3-ubyte.gz" in message
  # Nothing that a later run could take for a prepared dataset.
  assert not variant_dir(tmp_path).exists()
  assert leftovers(tmp_path) == []


def test_failed_download_is_reported_in_the_missing_files_error(tmp_path, monkeypatch):
  monkeypatch.setenv("JDL_DATA_DOWNLOAD", "1")
  with pytest.raises(FileNotFoundError, match=r"download: http://127\.0\.0\.1:9/train-images-idx3-ubyte\.gz: "):
    data.prepare("mnist")
  assert leftovers(tmp_path) == []


def test_partial_directory_is_skipped_and_reported(tmp_path, monkeypatch):
  write_files(tmp_path / "raw", make_arrays())
  (tmp_path / "raw" / FILENAMES["test_labels"]).unlink()
  monkeypatch.setenv("JDL_DATA_DIR", str(tmp_path / "raw"))
  with pytest.raises(FileNotFoundError, match=r"raw \(has only train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images"):
    data.load("mnist")


def test_search_order_prefers_the_named_subdirectory(tmp_path, monkeypatch):
  write_files(tmp_path / "raw", make_arrays(seed=1))
  write_files(tmp_path / "raw" / "fashion-mnist", make_arrays(seed=2))
  monkeypatch.setenv("JDL_DATA_DIR", str(tmp_path / "raw"))
  found = sources.locate(sources.SOURCES["fashion_mnist"], tfds_dir(tmp_path))
  assert found["train_images"] == tmp_path / "raw" / "fashion-mnist" / FILENAMES["train_images"]
  found = sources.locate(sources.SOURCES["mnist"], tfds_dir(tmp_path))  # no mnist/ subdirectory: the root
  assert found["test_labels"] == tmp_path / "raw" / FILENAMES["test_labels"]


def test_uncompressed_files_are_found(tmp_path, monkeypatch):
  arrays = make_arrays()
  (tmp_path / "raw").mkdir()
  for role in ROLES:
    idx.write_idx(tmp_path / "raw" / FILENAMES[role].removesuffix(".gz"), arrays[role])
  monkeypatch.setenv("JDL_DATA_DIR", str(tmp_path / "raw"))
  monkeypatch.setenv("JDL_DATA_VERIFY", "0")
  assert_matches_files(data.load("mnist", "test"), arrays, "test")


def test_env_flag_values_are_checked(monkeypatch):
  monkeypatch.setenv("JDL_DATA_DOWNLOAD", "maybe")
  with pytest.raises(ValueError, match="JDL_DATA_DOWNLOAD='maybe'"):
    sources.downloads_enabled()


def test_tfds_dir_resolution(tmp_path, monkeypatch):
  assert data.tfds_data_dir(tmp_path / "x") == tmp_path / "x"
  assert data.tfds_data_dir() == tfds_dir(tmp_path)
  monkeypatch.delenv("JDL_TFDS_DIR")
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "t"))
  assert data.tfds_data_dir() == tmp_path / "t"
  monkeypatch.delenv("TFDS_DATA_DIR")
  assert data.tfds_data_dir() == Path("~/tensorflow_datasets").expanduser()


# --- Validation of the files' contents --------------------------------------------------


def test_unknown_checksums_are_rejected_unless_verification_is_off(tmp_path, monkeypatch):
  arrays = make_arrays()
  write_files(tmp_path / "raw", arrays)
  monkeypatch.setenv("JDL_DATA_DIR", str(tmp_path / "raw"))
  with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz does not match the known checksums.*JDL_DATA_VERIFY=0"):
    data.load("fashion_mnist")
  assert not variant_dir(tmp_path).exists()
  monkeypatch.setenv("JDL_DATA_VERIFY", "0")
  assert_matches_files(data.load("fashion_mnist"), arrays, "train")


def test_recompressed_copies_are_accepted_by_their_content_checksum(tmp_path, monkeypatch, tiny_fashion):
  # Same IDX bytes, other gzip header (as Debian's files): accepted via content_sha256.
  directory = tmp_path / "raw" / "fashion_mnist"
  for role in ROLES:
    path = directory / FILENAMES[role]
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), mtime=12345, compresslevel=1))
  assert_matches_files(data.load("fashion_mnist", "test"), tiny_fashion, "test")


@pytest.mark.parametrize(
    "change, pattern",
    [
        ("count", r"t10k-images-idx3-ubyte.gz has 5 images but .*t10k-labels-idx1-ubyte.gz has 4 labels"),
        ("label", r"t10k-labels-idx1-ubyte.gz: expected labels in \[0, 10\), found values in \[0, 10\]"),
        ("shape", r"t10k-images-idx3-ubyte.gz: expected uint8 images of shape \(N, 28, 28\), found uint8 of shape \(5, 28, 27\)"),
    ],
)
def test_inconsistent_files_raise_value_error(tmp_path, monkeypatch, change, pattern):
  arrays = make_arrays()
  if change == "count":
    arrays["test_labels"] = arrays["test_labels"][:4]
  elif change == "label":
    arrays["test_labels"][0] = 10
  else:
    arrays["test_images"] = arrays["test_images"][:, :, :27]
  write_files(tmp_path / "raw", arrays)
  monkeypatch.setenv("JDL_DATA_DIR", str(tmp_path / "raw"))
  monkeypatch.setenv("JDL_DATA_VERIFY", "0")
  with pytest.raises(ValueError, match=pattern):
    data.load("mnist")
  assert not variant_dir(tmp_path, "mnist").exists()


def test_corrupt_local_file_raises_value_error_naming_it(tmp_path, monkeypatch):
  write_files(tmp_path / "raw", make_arrays())
  path = tmp_path / "raw" / FILENAMES["train_labels"]
  path.write_bytes(path.read_bytes()[:-10])
  monkeypatch.setenv("JDL_DATA_DIR", str(tmp_path / "raw"))
  monkeypatch.setenv("JDL_DATA_VERIFY", "0")
  with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.gz: corrupt or truncated gzip"):
    data.load("mnist")


@pytest.mark.skipif(not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").exists(), reason="needs Debian's dataset-fashion-mnist")
def test_debian_fashion_mnist_files_verify():
  """The real files (read and checksummed, not prepared): the recorded checksums are right."""
  src = dataclasses.replace(REAL_SOURCES["fashion_mnist"], system_dirs=(str(DEBIAN_FASHION),))
  found = sources.locate(src, Path("/nonexistent-tfds-dir"), download=False)
  assert found["train_images"].parent == DEBIAN_FASHION
  counts = {}
  for split, n in (("train", 60000), ("test", 10000)):
    images, labels = sources.read_split(
        src, found[f"{split}_images"], found[f"{split}_labels"], getattr(src, f"{split}_images"), getattr(src, f"{split}_labels"),
        num_classes=10, image_shape=(28, 28), verify=True,
    )  # fmt: skip
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    counts[split] = np.bincount(labels, minlength=10)
  np.testing.assert_array_equal(counts["train"], np.full(10, 6000))
  np.testing.assert_array_equal(counts["test"], np.full(10, 1000))


# --- Preparing, caching, reusing ---------------------------------------------------------


def test_load_prepares_once_then_reads_the_cache(tmp_path, monkeypatch, tiny_fashion):
  train = data.load("fashion_mnist", "train")
  assert_matches_files(train, tiny_fashion, "train")
  assert_matches_files(data.load("fashion_mnist", "test"), tiny_fashion, "test")
  vdir = variant_dir(tmp_path)
  assert (vdir / "dataset_info.json").is_file()
  assert sorted(p.name for p in vdir.glob("*.jdl-cache.*")) == [
      f"jdl_idx_images-{s}.jdl-cache.{k}" for s in ("test", "train") for k in ("image.npy", "json", "label.npy")
  ]
  assert leftovers(tmp_path) == []
  # The arrays belong to the caller.
  train["image"][:] = 0
  assert_matches_files(data.load("fashion_mnist", "train"), tiny_fashion, "train")

  # A cache hit needs neither TFDS nor the raw files.
  def no_builder(*args, **kwargs):
    raise AssertionError("the cache should have been used")

  monkeypatch.setattr(core, "_make_builder", no_builder)
  monkeypatch.setenv("JDL_DATA_DIR", str(tmp_path / "gone"))
  assert_matches_files(data.load("fashion_mnist", "train"), tiny_fashion, "train")
  assert data.prepare("fashion_mnist") == vdir


def test_second_load_does_not_prepare_again(tmp_path, monkeypatch, tiny_fashion):
  from jdl.data import builders

  data.prepare("fashion_mnist")
  vdir = variant_dir(tmp_path)
  record_files = {p: p.stat().st_mtime_ns for p in vdir.glob("*.array_record-*")}
  assert len(record_files) == 2

  def no_generation(self, *args, **kwargs):
    raise AssertionError("the dataset was prepared again")

  monkeypatch.setattr(builders.JdlIdxImages, "_split_generators", no_generation)
  for p in vdir.glob("*.jdl-cache.*"):
    p.unlink()  # Force reading the array_record files.
  assert_matches_files(data.load("fashion_mnist", "train"), tiny_fashion, "train")
  assert {p: p.stat().st_mtime_ns for p in vdir.glob("*.array_record-*")} == record_files
  assert (vdir / "jdl_idx_images-train.jdl-cache.json").is_file()  # rewritten


def test_interrupted_preparation_leaves_nothing_that_looks_prepared(tmp_path, monkeypatch, tiny_fashion):
  from jdl.data import builders

  original = builders.JdlIdxImages._generate_examples

  def failing(self, *args, **kwargs):
    for i, example in enumerate(original(self, *args, **kwargs)):
      if i == 3:
        raise RuntimeError("interrupted")
      yield example

  monkeypatch.setattr(builders.JdlIdxImages, "_generate_examples", failing)
  with pytest.raises(RuntimeError, match="interrupted"):
    data.load("fashion_mnist")
  vdir = variant_dir(tmp_path)
  assert not vdir.exists()
  assert cache.read_dataset_info(vdir) is None
  assert leftovers(tmp_path) == []

  monkeypatch.setattr(builders.JdlIdxImages, "_generate_examples", original)
  assert_matches_files(data.load("fashion_mnist", "test"), tiny_fashion, "test")
  assert_matches_files(data.load("fashion_mnist", "train"), tiny_fashion, "train")


def test_killed_preparation_is_cleaned_up(tmp_path, tiny_fashion):
  # What a killed process leaves: TFDS's incomplete.* directory, even with info files in it.
  vdir = variant_dir(tmp_path)
  stale = vdir.parent / f"incomplete.ABC123_{vdir.name}"
  stale.mkdir(parents=True)
  (stale / "dataset_info.json").write_text("{}")
  (stale / "features.json").write_text("{}")
  assert_matches_files(data.load("fashion_mnist"), tiny_fashion, "train")
  assert not stale.exists()


def test_cache_is_never_half_written(tmp_path, monkeypatch, tiny_fashion):
  real_save = np.save

  def save_half_then_fail(f, array, **kwargs):
    f.write(array.tobytes()[: array.nbytes // 2])
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(np, "save", save_half_then_fail)
  # The cache is an optimization: the load still succeeds from the array_record files.
  assert_matches_files(data.load("fashion_mnist"), tiny_fashion, "train")
  vdir = variant_dir(tmp_path)
  assert list(vdir.glob("*jdl-cache*")) == []
  assert leftovers(tmp_path) == []

  monkeypatch.setattr(np, "save", real_save)
  assert_matches_files(data.load("fashion_mnist"), tiny_fashion, "train")
  assert cache.read(vdir, "train") is not None


def test_cache_without_manifest_is_ignored(tmp_path, monkeypatch, tiny_fashion):
  # A crash after the arrays but before the manifest: the arrays are not trusted.
  real_dumps = json.dumps

  def fail_on_manifest(*args, **kwargs):
    raise OSError(5, "I/O error")

  data.load("fashion_mnist", "test")  # Prepared (TFDS writes JSON too); only the train cache is left.
  monkeypatch.setattr(json, "dumps", fail_on_manifest)
  data.load("fashion_mnist", "train")
  monkeypatch.setattr(json, "dumps", real_dumps)
  vdir = variant_dir(tmp_path)
  assert (vdir / "jdl_idx_images-train.jdl-cache.image.npy").exists()
  assert not (vdir / "jdl_idx_images-train.jdl-cache.json").exists()
  assert cache.read(vdir, "train") is None


@pytest.mark.parametrize("damage", ["truncate_npy", "wrong_shape_npy", "manifest_count", "manifest_version", "record_file_size"])
def test_stale_or_damaged_cache_is_a_miss(tmp_path, tiny_fashion, damage):
  data.prepare("fashion_mnist")
  vdir = variant_dir(tmp_path)
  npy = vdir / "jdl_idx_images-train.jdl-cache.image.npy"
  manifest_path = vdir / "jdl_idx_images-train.jdl-cache.json"
  if damage == "truncate_npy":
    npy.write_bytes(npy.read_bytes()[:200])
  elif damage == "wrong_shape_npy":
    np.save(npy, np.zeros((12, 28, 28), np.uint8))
  else:
    manifest = json.loads(manifest_path.read_text())
    fingerprint = manifest["fingerprint"]
    if damage == "manifest_count":
      fingerprint["num_examples"] += 1
    elif damage == "manifest_version":
      fingerprint["version"] = "0.0.1"
    else:  # Cached from array_record files of another size: not the current source of truth.
      fingerprint["files"] = {name: size + 1 for name, size in fingerprint["files"].items()}
    manifest_path.write_text(json.dumps(manifest))
  assert cache.read(vdir, "train") is None
  assert_matches_files(data.load("fashion_mnist"), tiny_fashion, "train")
  assert cache.read(vdir, "train") is not None  # rebuilt


def test_fast_and_generic_decoding_agree(tmp_path, monkeypatch, tiny_fashion):
  builder = core._prepared_builder("fashion_mnist", tfds_dir(tmp_path))
  for split in ("train", "test[1:4]"):
    fast = core._decode_split_fast("fashion_mnist", builder, split)
    generic = core._decode_split_generic("fashion_mnist", builder, split)
    assert fast is not None and fast.keys() == generic.keys()
    for key in fast:
      assert fast[key].dtype == generic[key].dtype
      np.testing.assert_array_equal(fast[key], generic[key])
  # Without the fast path, load() gives the same arrays.
  monkeypatch.setattr(core, "_decode_split_fast", lambda *args: None)
  assert_matches_files(data.load("fashion_mnist", "test"), tiny_fashion, "test")


def test_read_only_data_dir_still_loads(tmp_path, monkeypatch, tiny_fashion):
  data.load("fashion_mnist", "test")  # Prepared, test cached; train not cached.

  def read_only(*args, **kwargs):
    raise PermissionError(13, "Permission denied")

  monkeypatch.setattr(cache._atomic, "atomic_file", read_only)
  assert_matches_files(data.load("fashion_mnist", "train"), tiny_fashion, "train")


def test_download_from_a_loopback_server(tmp_path, monkeypatch):
  arrays = make_arrays(seed=3)
  served = tmp_path / "served"
  write_files(served, arrays)
  with serve(served) as base_url:
    trust_files(monkeypatch, "mnist", served, base_url=base_url)
    monkeypatch.setenv("JDL_DATA_DOWNLOAD", "1")
    assert_matches_files(data.load("mnist", "train"), arrays, "train")
  downloaded = sources.download_dir("mnist", tfds_dir(tmp_path))
  assert sorted(p.name for p in downloaded.iterdir()) == sorted(FILENAMES.values())
  assert leftovers(tmp_path) == []


def test_download_with_a_wrong_checksum_is_discarded(tmp_path, monkeypatch):
  served = tmp_path / "served"
  write_files(served, make_arrays())
  with serve(served) as base_url:
    trust_files(monkeypatch, "mnist", served, base_url=base_url)
    (served / FILENAMES["train_labels"]).write_bytes(gzip.compress(idx.encode_idx(np.ones(12, np.uint8))))  # tampered
    monkeypatch.setenv("JDL_DATA_DOWNLOAD", "1")
    with pytest.raises(ValueError, match=r"download http://127\.0\.0\.1:\d+/train-labels-idx1-ubyte\.gz: SHA-256 mismatch"):
      data.load("mnist")
  downloaded = sources.download_dir("mnist", tfds_dir(tmp_path))
  assert sorted(p.name for p in downloaded.iterdir()) == [FILENAMES["train_images"]]  # verified ones are kept
  assert leftovers(tmp_path) == []
  assert not variant_dir(tmp_path, "mnist").exists()


@contextlib.contextmanager
def serve(directory: Path):
  """A loopback HTTP server for ``directory``, stopped on exit."""

  class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
      pass

  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
  thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{server.server_address[1]}/"
  finally:
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_data_source_random_access(tmp_path, tiny_fashion):
  source = data.data_source("fashion_mnist", "train[:50%]")
  assert len(source) == 6
  example = source[5]
  np.testing.assert_array_equal(example["image"], tiny_fashion["train_images"][5][..., None])
  assert int(example["label"]) == tiny_fashion["train_labels"][5]
  with pytest.raises(ValueError, match="in-memory dataset without array_record files"):
    data.data_source("iris")


def test_progress_bar_setting_is_restored(tiny_fashion):
  from tensorflow_datasets.core.utils import tqdm_utils

  assert tqdm_utils._active
  data.load("fashion_mnist")
  assert tqdm_utils._active


def test_builder_locations_match_catalog(tmp_path):
  for name in ("fashion_mnist", "mnist", "mnist1d"):
    builder = core._make_builder(name, tfds_dir(tmp_path))
    assert Path(builder.data_dir) == variant_dir(tmp_path, name)
    assert builder.info.features[catalog.CATALOG[name].input_key].shape == catalog.CATALOG[name].input_shape
  assert not tfds_dir(tmp_path).exists() or not any(tfds_dir(tmp_path).rglob("dataset_info.json"))


# --- MNIST-1D ------------------------------------------------------------------------------


def test_mnist1d_is_generated_deterministically_without_side_effects(tmp_path):
  from mnist1d.data import get_dataset_args, make_dataset

  random.seed(11)
  np.random.seed(11)
  py_state, np_state = random.getstate(), np.random.get_state()[1].copy()
  train = data.load("mnist1d", "train")
  test = data.load("mnist1d", "test")
  assert random.getstate() == py_state
  np.testing.assert_array_equal(np.random.get_state()[1], np_state)
  assert train["inputs"].shape == (4000, 40) and train["inputs"].dtype == np.float32
  assert test["inputs"].shape == (1000, 40) and test["label"].dtype == np.int32
  reference = make_dataset(get_dataset_args())  # the package's defaults (seed 42)
  np.testing.assert_array_equal(train["inputs"], reference["x"].astype(np.float32))
  np.testing.assert_array_equal(train["label"], reference["y"])
  np.testing.assert_array_equal(test["inputs"], reference["x_test"].astype(np.float32))
  np.testing.assert_array_equal(test["label"], reference["y_test"])
  assert not list(Path.cwd().glob("mnist1d_data*.pkl"))  # get_dataset's download/cache was not used


# --- Tabular -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "diabetes", "iris", "wine"])
def test_tabular_sets(name):
  from sklearn import datasets as skd

  meta = data.info(name)
  train, test = data.load(name, "train"), data.load(name, "test")
  x, y = getattr(skd, f"load_{name}")(return_X_y=True)
  assert train["inputs"].shape == (meta.splits["train"], *meta.input_shape)
  assert test["inputs"].shape == (meta.splits["test"], *meta.input_shape)
  assert meta.splits["train"] + meta.splits["test"] == len(y)
  assert train["inputs"].dtype == np.float32
  varying = x.std(axis=0) > 0
  np.testing.assert_allclose(train["inputs"].mean(axis=0), 0, atol=1e-5)
  train_std = train["inputs"].std(axis=0)
  assert np.all(np.abs(train_std[train_std > 0] - 1) < 1e-4) and np.all(train_std[~varying] == 0)
  assert abs(float(test["inputs"].mean())) < 0.5  # test uses train statistics: near, not exactly, 0
  np.testing.assert_array_equal(data.load(name, "train")["inputs"], train["inputs"])  # deterministic
  if meta.task == "classification":
    assert train["label"].dtype == np.int32
    np.testing.assert_array_equal(np.sort(np.concatenate([train["label"], test["label"]])), np.sort(y))
    # Stratified: each class's share of test is 20% of it, rounded.
    np.testing.assert_array_equal(np.bincount(test["label"], minlength=meta.num_classes), np.round(0.2 * np.bincount(y)).astype(int))
  else:
    assert train["label"].dtype == np.float32 and meta.num_classes is None
    mean, std = data.target_stats(name)
    np.testing.assert_allclose(train["label"].mean(), 0, atol=1e-5)
    restored = np.concatenate([train["label"], test["label"]]) * std + mean
    np.testing.assert_allclose(np.sort(restored), np.sort(y), rtol=1e-5)


def test_tabular_split_indices_are_disjoint_and_cover():
  y = np.repeat(np.arange(3), [10, 20, 7])
  train, test = tabular.split_indices(y, stratify=True)
  assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(y)))
  np.testing.assert_array_equal(np.bincount(y[test]), [2, 4, 1])
  train2, _ = tabular.split_indices(y, stratify=True)
  np.testing.assert_array_equal(train, train2)
  with pytest.raises(ValueError, match="not a tabular regression dataset"):
    data.target_stats("iris")


# --- Splits --------------------------------------------------------------------------------

SPECS = [
    "train", "train[:90%]", "train[90%:]", "train[33%:67%]", "train[:-5%]", "train[-5%:]", "train[12.5%:]",
    "train[2:5]", "train[-3:]", "train[:0]", "train[5:2]", "train[:50%]+train[50%:]", "train[1:2] + test[-1:]",
]  # fmt: skip


@pytest.mark.parametrize("n", [1, 7, 99, 101, 60000])
def test_split_slicing_agrees_with_tfds(n):
  import tensorflow_datasets as tfds

  infos = {s: types.SimpleNamespace(num_examples=k, shard_lengths=[k]) for s, k in (("train", n), ("test", 10))}
  for spec in SPECS:
    try:
      expected = [(a.splitname, a.from_ or 0, infos[a.splitname].num_examples if a.to is None else a.to)
                  for a in tfds.core.ReadInstruction.from_spec(spec).to_absolute(infos)]  # fmt: skip
    except ValueError:
      with pytest.raises(ValueError):
        [s.bounds(infos[s.split].num_examples) for s in splits.parse(spec)]
      continue
    got = [(s.split, *s.bounds(infos[s.split].num_examples)) for s in splits.parse(spec)]
    assert got == expected, spec


def test_validation_slices_partition_train(tiny_fashion):
  full = data.load("fashion_mnist", "train")
  head, tail = data.load("fashion_mnist", "train[:75%]"), data.load("fashion_mnist", "train[75%:]")
  assert len(head["label"]) == 9 and len(tail["label"]) == 3
  np.testing.assert_array_equal(np.concatenate([head["image"], tail["image"]]), full["image"])
  both = data.load("fashion_mnist", "train[-2:]+test")
  np.testing.assert_array_equal(both["label"], np.concatenate([full["label"][-2:], tiny_fashion["test_labels"]]))


@pytest.mark.parametrize(
    "spec, error, pattern",
    [
        ("validation", ValueError, r"has no split 'validation'; available: train, test"),
        ("train[", ValueError, r"cannot parse 'train\['"),
        ("train[1:2:3]", ValueError, r"cannot parse the slice \[1:2:3\]"),
        ("train[x:]", ValueError, r"cannot parse the boundary 'x'"),
        ("train[1%:5]", ValueError, r"mix percents and absolute counts"),
        ("train[1.5:]", ValueError, r"must be an integer"),
        ("train[:1000]", ValueError, r"boundary 1000 is outside a split of 120 examples"),
        (3, TypeError, r"split: expected a string"),
    ],
)
def test_bad_split_strings(spec, error, pattern):
  with pytest.raises(error, match=pattern):
    data.load("iris", spec)


# --- Catalog -------------------------------------------------------------------------------


def test_info_and_list_datasets():
  assert data.list_datasets() == ["breast_cancer", "diabetes", "digits", "fashion_mnist", "iris", "mnist", "mnist1d", "wine"]
  fm = data.info("fashion_mnist")
  assert (fm.input_key, fm.input_shape, fm.num_classes, fm.task) == ("image", (28, 28, 1), 10, "classification")
  assert dict(fm.splits) == {"train": 60000, "test": 10000} and fm.num_examples == 70000
  assert fm.class_names[0] == "T-shirt/top" and fm.class_names[9] == "Ankle boot" and len(fm.class_names) == 10
  assert data.info("diabetes").task == "regression" and data.info("diabetes").num_classes is None
  assert data.info("mnist1d").input_shape == (40,)
  with pytest.raises(dataclasses.FrozenInstanceError):
    fm.name = "x"
  with pytest.raises(TypeError):
    fm.splits["train"] = 1
  assert hash(fm) == hash(data.info("fashion_mnist")) and fm == data.info("fashion_mnist") and fm != data.info("mnist")


@pytest.mark.parametrize("call", [data.load, data.info, data.prepare, data.data_source])
def test_unknown_dataset_names(call):
  with pytest.raises(ValueError, match=r"unknown dataset 'cifar10'; known datasets: breast_cancer, diabetes, digits, fashion_mnist"):
    call("cifar10")
  with pytest.raises(TypeError, match=r"dataset: expected a dataset name \(a string\), got NoneType None"):
    call(None)


def test_importing_jdl_data_is_light():
  code = "import sys, jdl.data; print(sorted(m for m in ('tensorflow_datasets', 'sklearn', 'mnist1d') if m in sys.modules))"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "PYTHONWARNINGS": "error"})
  assert out.stdout.strip() == "[]"


def test_command_line(tmp_path, capsys, tiny_fashion):
  from jdl.data.__main__ import main

  assert main(["list"]) == 0
  assert capsys.readouterr().out.split() == data.list_datasets()
  assert main(["info", "fashion_mnist"]) == 0
  assert "class_names: ('T-shirt/top'," in capsys.readouterr().out
  assert main(["prepare", "fashion_mnist", "iris"]) == 0
  out = capsys.readouterr().out
  assert f"fashion_mnist: ready in {variant_dir(tmp_path)}" in out and "iris: in memory" in out
  assert cache.read(variant_dir(tmp_path), "train") is not None and cache.read(variant_dir(tmp_path), "test") is not None
  assert main(["prepare", "mnist", "--no-download"]) == 1
  assert "error: mnist: could not find the IDX files" in capsys.readouterr().err
  assert main(["info", "cifar10"]) == 1


def test_files_of_another_dataset_are_recognized(tmp_path, monkeypatch, tiny_fashion):
  monkeypatch.setenv("JDL_DATA_DIR", str(tmp_path / "raw" / "fashion_mnist"))  # mnist would take these from the root
  with pytest.raises(ValueError, match=r"mnist: .*train-images-idx3-ubyte.gz does not match .* it is a file of fashion_mnist"):
    data.load("mnist")


def test_overlap_counts_the_examples_two_split_strings_share():
  sizes = {"train": 60000, "test": 10000}
  assert splits.overlap("train[:90%]", "train[90%:]", sizes) == 0  # jdl's default: disjoint
  assert splits.overlap("train", "train[90%:]", sizes) == 6000
  assert splits.overlap("train[:3000]", "train[90%:]", sizes) == 0
  assert splits.overlap("train[-100:]+test[:10]", "test+train[59950:]", sizes) == 60
  assert splits.overlap("train", "test", sizes) == 0


def test_a_validation_split_inside_the_training_data_is_noted(monkeypatch, tmp_path, capsys):
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top
  from jdl.train import experiment  # pylint: disable=g-import-not-at-top

  config = config_lib.load_experiment("breast_cancer_bce")
  config.data.train_split = "train"
  experiment.load_splits(config)
  assert ("data.eval_split='train[90%:]' shares 46 examples with data.train_split='train': its eval_* figures "
          "include examples the network trains on") in capsys.readouterr().err
  config.data.train_split = "train[:90%]"
  experiment.load_splits(config)
  assert "shares" not in capsys.readouterr().err
