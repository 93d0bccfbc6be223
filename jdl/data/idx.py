"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in C order,
big-endian. The files are usually gzipped (``*-ubyte.gz``). Every malformed file
(bad gzip stream, wrong magic number, a length that disagrees with the header)
raises ``ValueError`` naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from typing import NamedTuple

import numpy as np

# IDX type code -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxContents(NamedTuple):
  """An IDX file read into memory, with the checksums jdl verifies.

  Attributes:
    array: the values, in native byte order.
    file_sha256: SHA-256 of the file as stored (the ``.gz`` file when gzipped).
    content_sha256: SHA-256 of the uncompressed IDX bytes.
  """

  array: np.ndarray
  file_sha256: str
  content_sha256: str


def _read_bytes(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
  """Returns (raw file bytes, uncompressed bytes); gzip is detected by its magic bytes."""
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except FileNotFoundError:
    raise FileNotFoundError(f"IDX file {path} does not exist") from None
  if raw[:2] != b"\x1f\x8b":
    if path.endswith(".gz"):
      raise ValueError(f"IDX file {path}: expected a gzip file (magic bytes 1f 8b), found {raw[:2].hex(' ') or 'an empty file'}")
    return raw, raw
  try:
    return raw, gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as e:
    raise ValueError(f"IDX file {path}: corrupt or truncated gzip data ({type(e).__name__}: {e})") from e


def parse_idx(data: bytes, *, source: str = "<bytes>", ndim: int | None = None) -> np.ndarray:
  """Parses uncompressed IDX bytes into an array (native byte order).

  Args:
    data: the IDX bytes.
    source: how to name the data in error messages (a file path).
    ndim: when given, the number of dimensions the header must announce.

  Returns:
    The array, shaped as the header says.

  Raises:
    ValueError: the magic number, the type code or the length is wrong.
  """
  if len(data) < 4:
    raise ValueError(f"IDX file {source}: expected at least a 4-byte header, found {len(data)} bytes")
  expected_ndim = ndim
  zero0, zero1, type_code, ndim = data[:4]
  if zero0 != 0 or zero1 != 0 or type_code not in _IDX_DTYPES or ndim == 0:
    raise ValueError(
        f"IDX file {source}: wrong magic number {data[:4].hex()}; expected 0000TTNN with a type code TT in "
        f"{{{', '.join(f'{c:02x}' for c in _IDX_DTYPES)}}} and NN >= 1 dimensions (08 03 for images, 08 01 for labels)"
    )
  if expected_ndim is not None and ndim != expected_ndim:
    kind = {1: "a label file (magic 00000801)", 3: "an image file (magic 00000803)"}.get(
        expected_ndim, f"a {expected_ndim}-dimensional file")
    raise ValueError(f"IDX file {source}: its magic number {data[:4].hex()} announces {ndim} dimensions; expected "
                     f"{kind}: is this the right file?")
  header_len = 4 + 4 * ndim
  if len(data) < header_len:
    raise ValueError(f"IDX file {source}: header announces {ndim} dimensions ({header_len} header bytes), but the file has {len(data)} bytes")
  shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
  dtype = _IDX_DTYPES[type_code]
  expected = header_len + math.prod(shape) * dtype.itemsize
  if len(data) != expected:
    shown = f"shape {shape}" if len(str(shape)) <= 80 else f"{ndim} dimensions"
    needs = f"{expected} bytes" if expected < 10 * len(data) + 1024 else "far more bytes"
    raise ValueError(
        f"IDX file {source}: header says {shown} of {dtype.name}, which needs {needs}, "
        f"but the (uncompressed) file has {len(data)} bytes{' (truncated)' if len(data) < expected else ''}"
    )
  array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
  return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx_with_checksums(path: str | os.PathLike[str], *, ndim: int | None = None) -> IdxContents:
  """Reads an IDX file (gzipped or not) and returns it with its SHA-256 checksums.

  Args:
    path: the file.
    ndim: when given, the number of dimensions the file must have.

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: the file is not a valid IDX file, or has the wrong number of dimensions.
  """
  raw, data = _read_bytes(path)
  array = parse_idx(data, source=os.fspath(path), ndim=ndim)  # checks the dimensions against ndim
  content_sha = hashlib.sha256(data).hexdigest()
  file_sha = content_sha if raw is data else hashlib.sha256(raw).hexdigest()
  return IdxContents(array, file_sha, content_sha)


def read_idx(path: str | os.PathLike[str], *, ndim: int | None = None) -> np.ndarray:
  """Reads an IDX file (gzipped or not) into a numpy array.

  Args:
    path: the file, e.g. ``train-images-idx3-ubyte.gz``.
    ndim: when given, the number of dimensions the file must have (3 for images, 1 for labels).

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: the file is not a valid IDX file, or has the wrong number of dimensions.
  """
  return read_idx_with_checksums(path, ndim=ndim).array


def encode_idx(array: np.ndarray) -> bytes:
  """Returns the uncompressed IDX encoding of ``array``."""
  array = np.asarray(array)
  codes = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}
  native = array.dtype.newbyteorder("=")
  if native not in codes:
    raise TypeError(f"encode_idx: array dtype {array.dtype} has no IDX type; expected one of {sorted(str(d) for d in codes)}")
  if array.ndim == 0 or array.ndim > 255:
    raise ValueError(f"encode_idx: array must have 1 to 255 dimensions, found {array.ndim}")
  code = codes[native]
  header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
  return header + np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
  """Writes ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``."""
  data = encode_idx(array)
  if os.fspath(path).endswith(".gz"):
    data = gzip.compress(data, mtime=0)
  with open(path, "wb") as f:
    f.write(data)
