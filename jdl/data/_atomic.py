"""Atomic file creation: write to a temporary name in the target directory, then rename."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_file(path: Path, *, fsync: bool = True) -> Iterator[BinaryIO]:
  """Yields a binary file that replaces ``path`` only if the block completes.

  The data goes to ``.<name>.<random>.tmp`` in ``path``'s directory (created with
  mode 0o666 less the umask, like ``open``) and is renamed with ``os.replace``,
  which is atomic on POSIX: readers see the old file or the whole new one, never a
  part. On any exception the temporary file is removed and ``path`` is untouched.
  """
  tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
  try:
    with os.fdopen(fd, "wb") as f:
      yield f
      f.flush()
      if fsync:
        os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()
