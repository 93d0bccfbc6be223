"""A ``.npy`` cache of decoded splits, kept next to the TFDS split files.

Reading a 60,000-example split back through TFDS's ``ArrayRecordDataSource`` takes
seconds; ``np.load`` of the decoded arrays takes milliseconds. After the first full
read of a split, jdl writes, in the dataset's TFDS directory
(``<tfds dir>/<builder>/<config>/<version>/``):

* ``<builder>-<split>.jdl-cache.<key>.npy``: one array per feature (``image``, ``label``...);
* ``<builder>-<split>.jdl-cache.json``: the manifest, written last.

The array_record files stay the source of truth. A cache entry is used only when its
manifest names the same builder, config, version and number of examples as the
prepared dataset's ``dataset_info.json``, and the same sizes of the split's
array_record files; each array is then checked for its recorded dtype and shape.
Anything else is a miss: the split is read from the array_record files again and
the cache rewritten. Every file is written to a temporary name in the same
directory and renamed (``os.replace``) when complete, so a crash never leaves a
half-written file under a name the cache reads. Deleting the cache files is always
safe.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jdl.data import _atomic

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


def _manifest_path(variant_dir: Path, builder_name: str, split: str) -> Path:
  return variant_dir / f"{builder_name}-{split}.jdl-cache.json"


def _array_path(variant_dir: Path, builder_name: str, split: str, key: str) -> Path:
  return variant_dir / f"{builder_name}-{split}.jdl-cache.{key}.npy"


def read_dataset_info(variant_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
  """The prepared dataset's ``dataset_info.json``, or None if it is not prepared (or unreadable)."""
  variant_dir = Path(os.fspath(variant_dir))
  info_path = variant_dir / "dataset_info.json"
  if not (info_path.is_file() and (variant_dir / "features.json").is_file()):
    return None
  try:
    with open(info_path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def split_fingerprint(variant_dir: str | os.PathLike[str], dataset_info: Mapping[str, Any], split: str) -> dict[str, Any] | None:
  """What identifies one prepared split: version, example count, and its array_record files' sizes.

  Returns None when the split is not in ``dataset_info`` or a shard file is missing.
  """
  variant_dir = Path(os.fspath(variant_dir))
  splits = {s.get("name"): s for s in dataset_info.get("splits", [])}
  if split not in splits:
    return None
  shard_lengths = [int(n) for n in splits[split].get("shardLengths", [])]
  builder_name = dataset_info.get("name")
  file_format = dataset_info.get("fileFormat", "array_record")
  template = splits[split].get("filepathTemplate", "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}")
  num_shards = len(shard_lengths)
  files = {}
  for i in range(num_shards):
    name = (
        template.replace("{DATASET}", str(builder_name))
        .replace("{SPLIT}", split)
        .replace("{FILEFORMAT}", str(file_format))
        .replace("{SHARD_X_OF_Y}", f"{i:05d}-of-{num_shards:05d}")
    )
    if "{" in name or "/" in name:
      return None
    try:
      files[name] = (variant_dir / name).stat().st_size
    except OSError:
      return None
  return {
      "builder": builder_name,
      "config": dataset_info.get("configName"),
      "version": dataset_info.get("version"),
      "split": split,
      "num_examples": sum(shard_lengths),
      "files": files,
  }


def read(variant_dir: str | os.PathLike[str], split: str) -> dict[str, np.ndarray] | None:
  """The cached arrays of ``split``, or None when the cache is missing or stale."""
  variant_dir = Path(os.fspath(variant_dir))
  dataset_info = read_dataset_info(variant_dir)
  if dataset_info is None:
    return None
  fingerprint = split_fingerprint(variant_dir, dataset_info, split)
  if fingerprint is None:
    return None
  manifest_path = _manifest_path(variant_dir, fingerprint["builder"], split)
  try:
    with open(manifest_path) as f:
      manifest = json.load(f)
  except (OSError, ValueError):
    return None
  if manifest.get("format") != CACHE_FORMAT or manifest.get("fingerprint") != fingerprint:
    return None
  arrays = {}
  for key, meta in manifest.get("arrays", {}).items():
    path = _array_path(variant_dir, fingerprint["builder"], split, key)
    try:
      array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
      log.warning("jdl.data: ignoring unreadable cache file %s (%s)", path, e)
      return None
    if str(array.dtype) != meta.get("dtype") or list(array.shape) != meta.get("shape") or array.shape[:1] != (fingerprint["num_examples"],):
      log.warning("jdl.data: ignoring cache file %s: dtype/shape %s%s disagree with its manifest", path, array.dtype, array.shape)
      return None
    arrays[key] = array
  return arrays or None


def write(variant_dir: str | os.PathLike[str], split: str, arrays: Mapping[str, np.ndarray]) -> bool:
  """Caches ``arrays`` (the whole ``split``); returns whether the cache was written.

  Failures to write (read-only directory, full disk) are logged, not raised: the
  cache is an optimization.
  """
  variant_dir = Path(os.fspath(variant_dir))
  dataset_info = read_dataset_info(variant_dir)
  fingerprint = None if dataset_info is None else split_fingerprint(variant_dir, dataset_info, split)
  if fingerprint is None:
    log.warning("jdl.data: not caching split %r: %s is not a prepared dataset", split, variant_dir)
    return False
  for key, array in arrays.items():
    if array.shape[:1] != (fingerprint["num_examples"],):
      raise ValueError(f"cache.write: array {key!r} has shape {array.shape}, expected {fingerprint['num_examples']} examples")
  manifest = {
      "format": CACHE_FORMAT,
      "fingerprint": fingerprint,
      "arrays": {key: {"dtype": str(a.dtype), "shape": list(a.shape)} for key, a in arrays.items()},
  }
  try:
    for key, array in arrays.items():
      with _atomic.atomic_file(_array_path(variant_dir, fingerprint["builder"], split, key)) as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)
    with _atomic.atomic_file(_manifest_path(variant_dir, fingerprint["builder"], split)) as f:
      f.write(json.dumps(manifest, indent=1).encode())
  except OSError as e:
    log.warning("jdl.data: could not write the cache for split %r in %s (%s); loads will read the array_record files", split, variant_dir, e)
    return False
  return True
