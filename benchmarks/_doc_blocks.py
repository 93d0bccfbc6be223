"""The generated blocks of the documentation: text between marker comments that a benchmark script writes.

A page holds a block as

    <!-- NAME:begin (COMMAND) -->
    ... written by COMMAND from benchmarks/results/ ...
    <!-- NAME:end -->

The script that owns NAME renders the block from its recorded result file and, with ``--docs``, replaces
it (``replace``); ``tests/test_docs.py`` renders it again and compares (``read``), so a figure edited by
hand, or a result file regenerated without ``--docs``, fails the tests.
"""

from __future__ import annotations

import os
import pathlib
import platform
import re
import textwrap
from collections.abc import Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _pattern(name: str) -> re.Pattern[str]:
  return re.compile(rf"(<!-- {re.escape(name)}:begin[^>]*-->\n)(.*?)(<!-- {re.escape(name)}:end -->)", re.S)


def read(page: str | os.PathLike[str], name: str) -> str:
  """The text of the block ``name`` in ``page`` (a path relative to the repository, or absolute).

  Raises:
    ValueError: the page has no such block, or has it twice.
  """
  path = ROOT / page
  found = _pattern(name).findall(path.read_text())
  if len(found) != 1:
    raise ValueError(f"{path}: expected one <!-- {name}:begin ... --> ... <!-- {name}:end --> block, "
                     f"found {len(found)}")
  return found[0][1]


def replace(page: str | os.PathLike[str], name: str, text: str) -> pathlib.Path:
  """Replaces the block ``name`` of ``page`` by ``text`` (ending in a newline); returns the page's path."""
  read(page, name)  # exactly one block, or the error that says so
  path = ROOT / page
  body = _pattern(name).sub(lambda m: m.group(1) + text + m.group(3), path.read_text())
  path.write_text(body)
  return path


def publish(blocks: dict[tuple[str, str], str], docs: bool, record: pathlib.Path | None = None,
            title: str = "") -> None:
  """What every figure script does last: prints its blocks, writes ``record`` (a Markdown copy of the block under
  ``# title``, beside the result file) and, with ``docs``, replaces the blocks in their pages."""
  for (page, name), text in blocks.items():
    if record is not None:
      record.write_text(f"# {title}\n\n{text}")
    print(text, end="")
    if docs:
      print(f"rewrote {replace(page, name, text)}")


def machine() -> dict[str, Any]:
  """The machine a figure was measured on: CPU model, cores, OS, Python and (when imported) JAX."""
  import sys  # pylint: disable=g-import-not-at-top

  cpu = ""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
  except OSError:
    pass
  found = {"cpu": cpu or platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
           "machine": platform.machine(), "system": platform.system(), "python": platform.python_version()}
  if "jax" in sys.modules:
    found["jax"] = sys.modules["jax"].__version__
  return found


def describe(found: dict[str, Any]) -> str:
  """``machine()``'s record in words: ``2-core CPU (AMD EPYC), x86_64 Linux, Python 3.11.7, JAX 0.10.2``."""
  words = f"{found['cpu_count']}-core CPU ({found['cpu']}), {found['machine']} {found['system']}, Python {found['python']}"
  return words + (f", JAX {found['jax']}" if found.get("jax") else "")


def wrap(lines: Sequence[str], width: int = 100) -> str:
  """Lines of Markdown as a block: paragraphs wrapped at ``width``; table rows, blank lines and fenced code
  blocks as they are."""
  out, fenced = [], False
  for line in lines:
    if line.startswith("```"):
      fenced = not fenced
    keep = fenced or not line or line.startswith(("|", "```"))
    out.append(line if keep else textwrap.fill(line, width, break_long_words=False, break_on_hyphens=False))
  return "\n".join(out) + "\n"
