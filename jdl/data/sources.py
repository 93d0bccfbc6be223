"""Where jdl finds raw data: directories, environment variables, checksums, downloads.

Environment variables (all optional):

* ``JDL_DATA_DIR``: a directory with raw data files; for an IDX dataset ``name`` jdl
  looks in ``$JDL_DATA_DIR/<name>`` (and the dashed spelling, ``fashion-mnist``),
  then in ``$JDL_DATA_DIR`` itself.
* ``JDL_TFDS_DIR``, else ``TFDS_DATA_DIR``: where prepared datasets live (default
  ``~/tensorflow_datasets``).
* ``JDL_DATA_DOWNLOAD=0``: never download; only local files are used.
* ``JDL_DATA_VERIFY=0``: accept local IDX files whose checksums jdl does not know
  (their structure is still checked). Downloads are always verified.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from jdl.data import _atomic, idx

log = logging.getLogger(__name__)

ENV_DATA_DIR = "JDL_DATA_DIR"
ENV_TFDS_DIR = "JDL_TFDS_DIR"
ENV_DOWNLOAD = "JDL_DATA_DOWNLOAD"
ENV_VERIFY = "JDL_DATA_VERIFY"

DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


def tfds_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
  """The directory that holds prepared (TFDS) datasets.

  ``data_dir`` when given, else ``$JDL_TFDS_DIR``, else ``$TFDS_DATA_DIR``, else
  ``~/tensorflow_datasets``.
  """
  if data_dir is None:
    data_dir = os.environ.get(ENV_TFDS_DIR) or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
  return Path(data_dir).expanduser()


def _env_flag(name: str, default: bool) -> bool:
  value = os.environ.get(name)
  if value is None or value == "":
    return default
  lowered = value.strip().lower()
  if lowered in ("1", "true", "yes", "on"):
    return True
  if lowered in ("0", "false", "no", "off"):
    return False
  raise ValueError(f"environment variable {name}={value!r}: expected 1/0 (or true/false, yes/no, on/off)")


def downloads_enabled() -> bool:
  """Whether jdl may download raw data (``$JDL_DATA_DOWNLOAD``, default yes)."""
  return _env_flag(ENV_DOWNLOAD, True)


def verification_enabled() -> bool:
  """Whether local IDX files must match known checksums (``$JDL_DATA_VERIFY``, default yes)."""
  return _env_flag(ENV_VERIFY, True)


@dataclasses.dataclass(frozen=True)
class IdxFile:
  """One of the four IDX files of a dataset.

  Attributes:
    filename: the canonical (gzipped) file name, e.g. ``train-images-idx3-ubyte.gz``.
    sha256: SHA-256 of the canonical ``.gz`` file at the download URL.
    content_sha256: SHA-256 of the uncompressed IDX bytes, when known; it lets jdl
      accept re-compressed copies (Debian's files carry no name in their gzip header,
      so their ``.gz`` checksums differ from the upstream ones).
  """

  filename: str
  sha256: str
  content_sha256: str | None = None

  @property
  def uncompressed_name(self) -> str:
    return self.filename.removesuffix(".gz")

  def matches(self, contents: idx.IdxContents) -> bool:
    """Whether ``contents`` has one of this file's known checksums."""
    return contents.file_sha256 == self.sha256 or contents.content_sha256 in (self.content_sha256, self.sha256)


@dataclasses.dataclass(frozen=True)
class IdxSource:
  """Where the four IDX files of a MNIST-format dataset can be found.

  Attributes:
    name: the jdl dataset name (``fashion_mnist``).
    train_images, train_labels, test_images, test_labels: the files.
    base_url: the canonical download location (the file names are appended).
    system_dirs: directories a system package installs the files into.
    dir_names: sub-directory names tried under ``$JDL_DATA_DIR``.
    install_hint: how to get the files with a package manager, if possible.
  """

  name: str
  train_images: IdxFile
  train_labels: IdxFile
  test_images: IdxFile
  test_labels: IdxFile
  base_url: str
  system_dirs: tuple[str, ...] = ()
  dir_names: tuple[str, ...] = ()
  install_hint: str | None = None

  @property
  def files(self) -> tuple[IdxFile, ...]:
    return (self.train_images, self.train_labels, self.test_images, self.test_labels)

  def url(self, f: IdxFile) -> str:
    return self.base_url.rstrip("/") + "/" + f.filename


# Checksums. The ``.gz`` SHA-256s are those of the files at the canonical URLs (the
# same values TFDS publishes in its url_checksums). Fashion-MNIST's uncompressed
# SHA-256s were computed from Debian's dataset-fashion-mnist, whose files decompress
# to the upstream bytes. MNIST's uncompressed checksums are not recorded: local MNIST
# files must be the canonical .gz files (or JDL_DATA_VERIFY=0).
SOURCES: dict[str, IdxSource] = {
    "fashion_mnist": IdxSource(
        name="fashion_mnist",
        train_images=IdxFile(
            "train-images-idx3-ubyte.gz",
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        ),
        train_labels=IdxFile(
            "train-labels-idx1-ubyte.gz",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        ),
        test_images=IdxFile(
            "t10k-images-idx3-ubyte.gz",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        ),
        test_labels=IdxFile(
            "t10k-labels-idx1-ubyte.gz",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
        base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        dir_names=("fashion_mnist", "fashion-mnist"),
        install_hint="apt-get install dataset-fashion-mnist",
    ),
    "mnist": IdxSource(
        name="mnist",
        train_images=IdxFile("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        train_labels=IdxFile("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        test_images=IdxFile("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        test_labels=IdxFile("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        base_url="https://storage.googleapis.com/cvdf-datasets/mnist/",
        system_dirs=("/usr/share/datasets/mnist",),
        dir_names=("mnist",),
    ),
}


def download_dir(name: str, tfds_dir: Path) -> Path:
  """Where downloaded raw files of dataset ``name`` are kept: ``<tfds dir>/downloads/jdl/<name>``."""
  return tfds_dir / "downloads" / "jdl" / name


def candidate_dirs(source: IdxSource, tfds_dir: Path) -> list[Path]:
  """The directories searched for ``source``'s files, in order."""
  dirs: list[Path] = []
  env_dir = os.environ.get(ENV_DATA_DIR)
  if env_dir is not None:
    # Set on purpose: a typo must not silently fall back to other files.
    if not env_dir.strip():
      raise ValueError(f"{ENV_DATA_DIR} is set but empty; point it at the directory holding the {source.name} "
                       "files, or unset it to use the system and download locations")
    root = Path(env_dir).expanduser()
    if not root.is_dir():
      raise FileNotFoundError(f"{ENV_DATA_DIR}={env_dir!r} is not a directory; point it at the directory holding "
                              f"the {source.name} files ({', '.join(f.filename for f in source.files)}), or "
                              "unset it")
    dirs += [root / n for n in source.dir_names] + [root]
  dirs += [Path(d) for d in source.system_dirs]
  dirs.append(download_dir(source.name, tfds_dir))
  unique: list[Path] = []
  for d in dirs:
    if d not in unique:
      unique.append(d)
  return unique


def _find_in_dir(directory: Path, f: IdxFile) -> Path | None:
  for name in (f.filename, f.uncompressed_name):
    path = directory / name
    if path.is_file():
      return path
  return None


def _how_to_get(source: IdxSource, tfds_dir: Path) -> str:
  hints = []
  if source.install_hint:
    hints.append(f"install the system package ({source.install_hint})")
  hints.append(f"put the four files ({', '.join(f.filename for f in source.files)}) in $JDL_DATA_DIR or $JDL_DATA_DIR/{source.name}")
  hints.append(
      f"or let jdl download them (needs network access and {ENV_DOWNLOAD} unset or 1) from "
      + ", ".join(source.url(f) for f in source.files)
      + f" into {download_dir(source.name, tfds_dir)}"
  )
  return "To get the data: " + "; ".join(hints) + "."


def _download(url: str, dest: Path, f: IdxFile) -> None:
  """Downloads ``url`` to ``dest`` through a temporary file, renamed only once its SHA-256 matches."""
  dest.parent.mkdir(parents=True, exist_ok=True)
  with _atomic.atomic_file(dest) as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
    digest = hashlib.sha256()
    while chunk := response.read(_CHUNK):
      digest.update(chunk)
      out.write(chunk)
    if digest.hexdigest() != f.sha256:
      raise ValueError(f"download {url}: SHA-256 mismatch, expected {f.sha256}, found {digest.hexdigest()}; the file was discarded")


def locate(source: IdxSource, tfds_dir: Path, *, download: bool | None = None) -> dict[str, Path]:
  """Finds (or downloads) the four files of ``source``.

  A directory is used when it holds all four files (gzipped or not). Without such a
  directory, the missing files are downloaded into ``download_dir`` when allowed.

  Returns:
    ``{"train_images": path, "train_labels": ..., "test_images": ..., "test_labels": ...}``.

  Raises:
    FileNotFoundError: no directory has the files and they could not be downloaded;
      the message names every place tried and how to get the data.
    ValueError: a download did not match its checksum.
  """
  roles = ("train_images", "train_labels", "test_images", "test_labels")
  tried: list[str] = []
  for directory in candidate_dirs(source, tfds_dir):
    found = [_find_in_dir(directory, f) for f in source.files]
    if all(found):
      return dict(zip(roles, found))  # type: ignore[arg-type]
    present = [p.name for p in found if p is not None]
    tried.append(f"{directory} ({'has only ' + ', '.join(present) if present else 'no files' if directory.is_dir() else 'does not exist'})")

  if download is None:
    download = downloads_enabled()
  if download:
    target = download_dir(source.name, tfds_dir)
    errors = []
    for f in source.files:
      if _find_in_dir(target, f) is None:
        url = source.url(f)
        log.info("jdl.data: downloading %s", url)
        try:
          _download(url, target / f.filename, f)
        except (urllib.error.URLError, OSError) as e:  # network errors; HTTPError is a URLError
          errors.append(f"{url}: {e}")
    if not errors:
      return {role: _find_in_dir(target, f) for role, f in zip(roles, source.files)}  # type: ignore[misc]
    tried.append("download: " + "; ".join(errors))
  else:
    tried.append(f"download: disabled ({ENV_DOWNLOAD}=0 or download=False)")
  raise FileNotFoundError(
      f"{source.name}: could not find the IDX files {', '.join(f.filename for f in source.files)}. Tried: "
      + "; ".join(tried)
      + ". "
      + _how_to_get(source, tfds_dir)
  )


def read_split(
    source: IdxSource,
    images_path: Path,
    labels_path: Path,
    images_spec: IdxFile,
    labels_spec: IdxFile,
    *,
    num_classes: int,
    image_shape: Sequence[int],
    verify: bool | None = None,
    reader: Callable[..., idx.IdxContents] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Reads and validates one split's images and labels.

  Returns:
    ``(images uint8 (N, H, W), labels int64 (N,))``.

  Raises:
    ValueError: a file is malformed, does not match its checksum (when verifying),
      or the two files disagree; the message names the file(s).
  """
  if verify is None:
    verify = verification_enabled()
  reader = reader or idx.read_idx_with_checksums
  images = reader(images_path, ndim=3)
  labels = reader(labels_path, ndim=1)
  if verify:
    for path, contents, spec in ((images_path, images, images_spec), (labels_path, labels, labels_spec)):
      if not spec.matches(contents):
        known = [spec.sha256] + ([spec.content_sha256] if spec.content_sha256 else [])
        others = [other.name for other in SOURCES.values() if other.name != source.name and any(f.matches(contents) for f in other.files)]
        raise ValueError(
            f"{source.name}: {path} does not match the known checksums of {spec.filename} "
            f"(expected SHA-256 {' or '.join(known)}; found {contents.file_sha256} for the file, {contents.content_sha256} "
            f"uncompressed){' - it is a file of ' + others[0] if others else ''}. Replace it with the canonical file "
            f"({source.url(spec)}) or put the right files in $JDL_DATA_DIR/{source.name}, or set {ENV_VERIFY}=0 to use it anyway."
        )
  if images.array.dtype != np.uint8 or tuple(images.array.shape[1:]) != tuple(image_shape):
    raise ValueError(
        f"{source.name}: {images_path}: expected uint8 images of shape (N, {', '.join(map(str, image_shape))}), "
        f"found {images.array.dtype} of shape {images.array.shape}"
    )
  if images.array.shape[0] != labels.array.shape[0]:
    raise ValueError(
        f"{source.name}: {images_path} has {images.array.shape[0]} images but {labels_path} has {labels.array.shape[0]} labels"
    )
  label_values = labels.array.astype(np.int64)
  if label_values.size and (label_values.min() < 0 or label_values.max() >= num_classes):
    raise ValueError(
        f"{source.name}: {labels_path}: expected labels in [0, {num_classes}), found values in "
        f"[{label_values.min()}, {label_values.max()}]"
    )
  return images.array, label_values
