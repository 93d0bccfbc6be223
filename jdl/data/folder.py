"""Your own images: a folder of class folders as a TFDS dataset (array_record), decoded with Pillow.

Two layouts, as Keras' ``image_dataset_from_directory`` and torchvision's
``ImageFolder`` read them::

    root/train/cat/001.jpg        root/cat/001.jpg
    root/train/dog/002.png        root/dog/002.png
    root/test/cat/003.jpg         (one folder: split into train and test
    (optionally root/val/...)      by test_fraction, per class)

    jdl.data.register_folder("pets", "~/data/cats_vs_dogs", image_size=160)
    # or, with no Python, in a config or on the command line:
    #   --config.data.name='folder:~/data/cats_vs_dogs?size=160'

Every image is decoded once, converted to RGB (or grayscale with
``channels=1``), center-cropped to the target's aspect ratio and resized
(bilinear), and stored, in an order shuffled with ``seed`` (so that slices
such as the validation split ``train[90%:]`` hold every class), as uint8 arrays in array_record files under the TFDS data
directory (``$JDL_TFDS_DIR``), in a directory named after a hash of the
folder's listing (names, sizes, modification times) and the options: a changed
folder is prepared again, an unchanged one is read back from its cache. Class
names are the folder names, sorted. Files that cannot be decoded (corrupt, not
images) are skipped, with their count and the first names in a note; a folder
with no readable image, or a class without one, is an error. A preparation cut
short leaves TFDS's ``incomplete.*`` directory, never a dataset taken for a
complete one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import sys
import urllib.parse
from collections.abc import Sequence
from typing import Any

import numpy as np

from jdl.data import catalog
from jdl.data.catalog import DatasetInfo

FOLDER_PREFIX = "folder:"
VERSION = "1.0.0"
BUILDER = "jdl_image_folder"
_SPLIT_DIRS = {"train": "train", "test": "test", "val": "validation", "validation": "validation"}
ALL = "*"  # the one-folder layout's listing, split into train and test once its images are decoded
_PENDING: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}  # config name -> decoded splits, while preparing


@dataclasses.dataclass(frozen=True)
class FolderOptions:
  """How a folder's images become arrays."""

  image_size: tuple[int, int] = (224, 224)
  channels: int = 3
  test_fraction: float = 0.2
  resize: str = "crop"  # "crop": center-crop to the aspect ratio, then resize; "stretch": resize only
  seed: int = 0  # the stored order, and the per-class draw of the test images in the one-folder layout


def _check_options(where: str, image_size: Any, channels: Any, test_fraction: Any, resize: Any,
                   seed: Any) -> FolderOptions:
  size = (image_size, image_size) if isinstance(image_size, int) and not isinstance(image_size, bool) else image_size
  if not (isinstance(size, (tuple, list)) and len(size) == 2
          and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)):
    raise ValueError(f"{where}: image_size must be a positive int or (height, width), got {image_size!r}")
  if channels not in (1, 3):
    raise ValueError(f"{where}: channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
  if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
    raise ValueError(f"{where}: test_fraction must be in (0, 1), got {test_fraction!r}")
  if resize not in ("crop", "stretch"):
    raise ValueError(f"{where}: resize must be 'crop' or 'stretch', got {resize!r}")
  if isinstance(seed, bool) or not isinstance(seed, int):
    raise ValueError(f"{where}: seed must be an int, got {seed!r}")
  return FolderOptions((int(size[0]), int(size[1])), int(channels), float(test_fraction), resize, int(seed))


def _files(directory: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


def _class_dirs(directory: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan(root: pathlib.Path, options: FolderOptions, where: str) -> tuple[tuple[str, ...], dict[str, list[tuple[pathlib.Path, int]]]]:
  """``(class names, {split: [(file, label)]})`` of a folder, in either layout.

  The one-folder layout's files are listed under ``ALL``: they are split into
  train and test once decoded, so that unreadable files do not count.

  Raises:
    FileNotFoundError: ``root`` is not a directory.
    ValueError: no class folders; a split's class that train lacks.
  """
  if not root.is_dir():
    raise FileNotFoundError(f"{where}: no such directory {str(root)!r}")
  split_dirs = {p.name: p for p in _class_dirs(root) if p.name in _SPLIT_DIRS}
  if "train" in split_dirs:  # root/{train,test,val}/CLASS/*
    by_split = {_SPLIT_DIRS[name]: {c.name: _files(c) for c in _class_dirs(d)} for name, d in split_dirs.items()}
    classes = tuple(sorted(by_split["train"]))
    if not classes:
      raise ValueError(f"{where}: {str(root / 'train')!r} has no class folders (expected train/CLASS/IMAGE files)")
    for split, found in by_split.items():
      extra = sorted(set(found) - set(classes))
      if extra:
        raise ValueError(f"{where}: {split} has classes that train lacks: {', '.join(extra)}")
    listing = {split: [(f, classes.index(c)) for c in sorted(found) for f in found[c]]
               for split, found in by_split.items()}
    return classes, listing
  class_dirs = _class_dirs(root)
  if not class_dirs:
    raise ValueError(f"{where}: {str(root)!r} has no class folders (expected ROOT/CLASS/IMAGE files, or "
                     "ROOT/train/CLASS/IMAGE and ROOT/test/CLASS/IMAGE)")
  classes = tuple(d.name for d in class_dirs)
  return classes, {ALL: [(f, label) for label, d in enumerate(class_dirs) for f in _files(d)]}


def decode(path: pathlib.Path, options: FolderOptions) -> np.ndarray | None:
  """One image as uint8 ``(height, width, channels)``, or None when Pillow cannot read it."""
  from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top

  try:
    with Image.open(path) as image:
      image = image.convert("RGB" if options.channels == 3 else "L")
      height, width = options.image_size
      if options.resize == "crop":  # the largest centered box of the target's aspect ratio
        w, h = image.size
        scale = min(w / width, h / height)
        cw, ch = width * scale, height * scale
        left, top = (w - cw) / 2, (h - ch) / 2
        image = image.resize((width, height), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))
      else:
        image = image.resize((width, height), Image.Resampling.BILINEAR)
      array = np.asarray(image, dtype=np.uint8)
  except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
    return None
  return array[..., None] if array.ndim == 2 else array


def _fingerprint(root: pathlib.Path, listing: dict[str, list[tuple[pathlib.Path, int]]], options: FolderOptions) -> str:
  digest = hashlib.sha256()
  digest.update(json.dumps([str(root.resolve()), dataclasses.asdict(options)], sort_keys=True).encode())
  for split in sorted(listing):
    for path, label in listing[split]:
      stat = path.stat()
      digest.update(f"{split}\0{path.relative_to(root)}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
  return digest.hexdigest()[:16]


def _config_name(root: pathlib.Path, fingerprint: str) -> str:
  slug = "".join(c if c.isalnum() else "_" for c in root.resolve().name.lower())[:40] or "root"
  return f"{slug}_{fingerprint}"


def _note(message: str) -> None:
  print(f"jdl: {message}", file=sys.stderr, flush=True)


def register_folder(name: str, root: str | os.PathLike[str], *, image_size: int | Sequence[int] = 224,
                    channels: int = 3, test_fraction: float = 0.2, resize: str = "crop", seed: int = 0,
                    data_dir: str | os.PathLike[str] | None = None, overwrite: bool = False) -> DatasetInfo:
  """Registers the images under ``root`` as dataset ``name``, preparing them on first use.

  Args:
    name: the name ``config.data.name`` and ``jdl.data.load`` take.
    root: ``root/{train,test[,val]}/CLASS/*`` or ``root/CLASS/*``.
    image_size: the images' side, or ``(height, width)``.
    channels: 3 (RGB) or 1 (grayscale).
    test_fraction: the one-folder layout's share of each class kept for test.
    resize: ``"crop"`` (keep the aspect ratio: center crop, then resize) or
      ``"stretch"``.
    seed: the order the images are stored in, and the one-folder layout's
      draw of test images.
    data_dir: where prepared datasets live (default ``$JDL_TFDS_DIR``...).
    overwrite: replace a dataset registered under ``name``.

  Returns:
    its ``DatasetInfo``: input ``image`` uint8 ``(height, width, channels)``,
    the classes' names, the splits and their sizes.

  Raises:
    FileNotFoundError: ``root`` is not a directory.
    ValueError: no readable image, a class without one, a class of one image
      in the one-folder layout, bad options.
  """
  from jdl.data import builders, core, sources  # pylint: disable=g-import-not-at-top

  where = f"register_folder({name!r})"
  options = _check_options(where, image_size, channels, test_fraction, resize, seed)
  root = pathlib.Path(os.path.expanduser(os.fspath(root)))
  classes, listing = scan(root, options, where)
  config_name = _config_name(root, _fingerprint(root, listing, options))
  tfds_dir = sources.tfds_data_dir(data_dir)
  location = catalog.TfdsLocation(BUILDER, config_name, VERSION)
  variant_dir = location.variant_dir(tfds_dir)
  from jdl.data import cache  # pylint: disable=g-import-not-at-top

  prepared = cache.read_dataset_info(variant_dir)
  skipped: list[str] = []
  if prepared is not None and (variant_dir / "jdl_skipped.json").is_file():
    try:
      left_out = json.loads((variant_dir / "jdl_skipped.json").read_text())
    except (OSError, ValueError):
      left_out = []
    if left_out:
      _note(f"{where}: {len(left_out)} file(s) Pillow could not read were left out when it was prepared "
            f"({variant_dir / 'jdl_skipped.json'})")
  if prepared is None:
    decoded, skipped = _decode_all(root, listing, options, classes, where)
    _PENDING[config_name] = decoded
  try:
    description = (f"images of {root} ({len(classes)} classes), {options.image_size[0]}x{options.image_size[1]}x"
                   f"{options.channels}, resized with {options.resize}")
    sizes = ({s: len(labels) for s, (_, labels) in _PENDING[config_name].items() if len(labels)} if prepared is None else
             {s["name"]: sum(int(n) for n in s.get("shardLengths", [])) for s in prepared.get("splits", [])})
    info = DatasetInfo(name=name, input_key="image", input_shape=(*options.image_size, options.channels),
                       num_classes=len(classes), task="classification", splits=sizes, class_names=classes,
                       description=description)
    catalog._register("tfds", info, overwrite=overwrite)  # pylint: disable=protected-access
    catalog.TFDS_LOCATIONS[name] = location
    builders.BUILDERS[name] = (builders.image_folder_builder(), builders.image_folder_config(config_name, info))
    if prepared is None:
      core.prepare(name, data_dir=data_dir)
      if skipped:  # beside the prepared files: what was left out, for whoever looks later
        from jdl.data._atomic import atomic_file  # pylint: disable=g-import-not-at-top

        with atomic_file(variant_dir / "jdl_skipped.json") as f:
          f.write(json.dumps(skipped).encode())
  finally:
    _PENDING.pop(config_name, None)
  return info


def _decode_all(root: pathlib.Path, listing: dict[str, list[tuple[pathlib.Path, int]]], options: FolderOptions,
                classes: Sequence[str], where: str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
  """Every split decoded (the one-folder layout split per class by ``test_fraction``), and the files left out."""
  decoded: dict[str, tuple[list[np.ndarray], list[int]]] = {}
  skipped: list[str] = []
  for split, items in listing.items():
    images, labels = decoded.setdefault(split, ([], []))
    for path, label in items:
      array = decode(path, options)
      if array is None:
        skipped.append(str(path.relative_to(root)))
        continue
      images.append(array)
      labels.append(label)
  if skipped:
    _note(f"{where}: skipped {len(skipped)} file(s) Pillow could not read as images: "
          f"{', '.join(skipped[:5])}{' …' if len(skipped) > 5 else ''}")
  train = ALL if ALL in decoded else "train"
  tried = sum(len(items) for split, items in listing.items() if split == train)
  if not decoded[train][0]:
    raise ValueError(f"{where}: no readable image under {str(root)!r} for the train split ({tried} files tried; "
                     "Pillow could not decode any)")
  counts = np.bincount(np.asarray(decoded[train][1], np.int64), minlength=len(classes))
  empty = [classes[c] for c in range(len(classes)) if counts[c] == 0]
  if empty:
    raise ValueError(f"{where}: class(es) {', '.join(empty)} have no readable training image")
  if ALL in decoded:
    few = [f"{classes[c]!r} ({counts[c]})" for c in range(len(classes)) if counts[c] < 2]
    if few:
      raise ValueError(f"{where}: class {', '.join(few)} has fewer than 2 readable images; splitting one folder "
                       f"into train and test (test_fraction={options.test_fraction}) needs at least 2 per class")
    images, labels = decoded.pop(ALL)
    labels_a = np.asarray(labels)
    rng = np.random.default_rng(options.seed)
    in_test = np.zeros(len(labels_a), bool)
    for c in range(len(classes)):
      members = np.flatnonzero(labels_a == c)
      n_test = min(len(members) - 1, max(1, int(round(options.test_fraction * len(members)))))
      in_test[rng.choice(members, size=n_test, replace=False)] = True
    decoded = {"train": ([images[i] for i in np.flatnonzero(~in_test)], labels_a[~in_test].tolist()),
               "test": ([images[i] for i in np.flatnonzero(in_test)], labels_a[in_test].tolist())}
  shape = (0, *options.image_size, options.channels)
  out = {}
  for split, (images, labels) in decoded.items():
    # Stored shuffled (with the seed): a slice such as the default validation split train[90%:] holds every class.
    order = np.random.default_rng([options.seed, len(split)]).permutation(len(labels))
    out[split] = (np.stack([images[i] for i in order]) if images else np.zeros(shape, np.uint8),
                  np.asarray(labels, np.int64)[order])
  return out, skipped


def pending(config_name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """The decoded splits the builder writes (set by ``register_folder`` while it prepares)."""
  if config_name not in _PENDING:
    raise RuntimeError(f"{BUILDER}: {config_name} is prepared by jdl.data.register_folder, not on its own")
  return _PENDING[config_name]


def parse_name(name: str) -> tuple[str, dict[str, Any]]:
  """``folder:PATH?size=64&channels=1&test_fraction=0.1&resize=stretch`` -> ``(PATH, options)``."""
  body = name[len(FOLDER_PREFIX):]
  path, _, query = body.partition("?")
  options: dict[str, Any] = {}
  for key, values in urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=bool(query)).items():
    value = values[-1]
    if key in ("size", "image_size"):
      parts = value.replace("x", ",").split(",")
      try:
        size = tuple(int(p) for p in parts)
      except ValueError:
        raise ValueError(f"data.name={name!r}: size must be N or HxW, got {value!r}") from None
      options["image_size"] = size[0] if len(size) == 1 else size
    elif key in ("channels", "seed"):
      try:
        options[key] = int(value)
      except ValueError:
        raise ValueError(f"data.name={name!r}: {key} must be an integer, got {value!r}") from None
    elif key == "test_fraction":
      try:
        options[key] = float(value)
      except ValueError:
        raise ValueError(f"data.name={name!r}: test_fraction must be a number, got {value!r}") from None
    elif key == "resize":
      options[key] = value
    else:
      raise ValueError(f"data.name={name!r}: unknown option {key!r}; known: size, channels, test_fraction, "
                       "resize, seed")
  return path, options


def ensure_folder(name: str) -> None:
  """Registers ``folder:PATH[?options]`` the first time it is named."""
  if name in catalog.CATALOG:
    return
  path, options = parse_name(name)
  if not path:
    raise ValueError(f"data.name={name!r}: expected folder:PATH")
  register_folder(name, path, **options)
