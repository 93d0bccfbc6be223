"""TFDS-style split strings (``"train"``, ``"train[:90%]"``, ``"train[-1000:]+test"``) on arrays.

The semantics are TFDS's (``tfds.core.ReadInstruction`` with the default
``"closest"`` rounding): a percent boundary ``p`` of a split of ``n`` examples is
``round(p * n / 100)`` (Python's round, halves to even); negative boundaries count
from the end; slices are contiguous ranges of the split in its stored order, so
``"train[:90%]"`` and ``"train[90%:]"`` are disjoint and together cover ``"train"``.
Parsing here avoids importing TFDS for datasets that are already cached. Shard
slices (``"train[:2shard]"``) are not supported.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import numpy as np

_SUB_RE = re.compile(r"^(?P<name>[\w-]+)(\[(?P<selector>[^\]]*)\])?$")
_BOUND_RE = re.compile(r"^(?P<val>-?\d+(\.\d+)?)(?P<pct>%)?$")


@dataclasses.dataclass(frozen=True)
class SplitSlice:
  """One ``name[from:to]`` term; ``from_``/``to`` are None when omitted."""

  split: str
  from_: float | None = None
  to: float | None = None
  percent: bool = False

  def bounds(self, num_examples: int) -> tuple[int, int]:
    """The absolute ``[start, stop)`` range in a split of ``num_examples``."""

    def absolute(value: float | None, default: int) -> int:
      if value is None:
        return default
      v = int(round(value * num_examples / 100.0)) if self.percent else int(value)
      if abs(v) > num_examples:
        raise ValueError(
            f"split {self.spec!r}: boundary {value:g}{'%' if self.percent else ''} is outside a split of {num_examples} examples"
        )
      return v + num_examples if v < 0 else v

    return absolute(self.from_, 0), absolute(self.to, num_examples)

  @property
  def spec(self) -> str:
    if self.from_ is None and self.to is None:
      return self.split
    unit = "%" if self.percent else ""
    fmt = lambda v: "" if v is None else f"{v:g}{unit}"  # noqa: E731
    return f"{self.split}[{fmt(self.from_)}:{fmt(self.to)}]"


def parse(spec: str) -> list[SplitSlice]:
  """Parses a split string into its ``+``-separated terms.

  Raises:
    TypeError: ``spec`` is not a string.
    ValueError: ``spec`` is malformed; the message shows the accepted forms.
  """
  if not isinstance(spec, str):
    raise TypeError(f"split: expected a string like 'train' or 'train[:90%]', found {type(spec).__name__} {spec!r}")
  hint = "expected 'NAME', 'NAME[FROM:TO]' with integers or percents (e.g. 'train[:90%]', 'train[-1000:]'), or terms joined by '+'"
  terms = [t.strip() for t in spec.split("+")]
  slices = []
  for term in terms:
    m = _SUB_RE.match(term)
    if not m:
      raise ValueError(f"split {spec!r}: cannot parse {term!r}; {hint}")
    selector = m.group("selector")
    if selector is None:
      slices.append(SplitSlice(m.group("name")))
      continue
    parts = [p.strip() for p in selector.split(":")]
    if len(parts) != 2 or not any(parts):
      raise ValueError(f"split {spec!r}: cannot parse the slice [{selector}]; {hint}")
    bounds, units = [], []
    for part in parts:
      if not part:
        bounds.append(None)
        continue
      b = _BOUND_RE.match(part)
      if not b:
        raise ValueError(f"split {spec!r}: cannot parse the boundary {part!r}; {hint}")
      if b.group("pct") is None and "." in b.group("val"):
        raise ValueError(f"split {spec!r}: absolute boundary {part!r} must be an integer")
      bounds.append(float(b.group("val")) if b.group("pct") else int(b.group("val")))
      units.append(b.group("pct") is not None)
    if len(set(units)) > 1:
      raise ValueError(f"split {spec!r}: the boundaries of [{selector}] mix percents and absolute counts")
    slices.append(SplitSlice(m.group("name"), bounds[0], bounds[1], percent=bool(units and units[0])))
  return slices


def apply(spec: str, arrays_by_split: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Selects ``spec`` from whole splits: ``{split: {key: array}}`` -> ``{key: array}``.

  A single term returns views of the given arrays (callers pass arrays they own).

  Raises:
    ValueError: ``spec`` is malformed, names an unknown split, is out of range
      or selects no example.
  """
  parts: list[dict[str, np.ndarray]] = []
  for s in parse(spec):
    if s.split not in arrays_by_split:
      raise ValueError(f"split {spec!r}: unknown split {s.split!r}; available: {', '.join(arrays_by_split)}")
    arrays = arrays_by_split[s.split]
    n = len(next(iter(arrays.values())))
    start, stop = s.bounds(n)
    if stop <= start:
      raise ValueError(f"split {spec!r}: {s.spec} selects no example of the {n} in {s.split!r} "
                       f"(examples {start} to {stop}); expected a non-empty range")
    parts.append({k: v[start:stop] for k, v in arrays.items()})
  if len(parts) == 1:
    return parts[0]
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def needed_splits(spec: str) -> list[str]:
  """The whole splits that ``spec`` reads from, in order, without repeats."""
  names: list[str] = []
  for s in parse(spec):
    if s.split not in names:
      names.append(s.split)
  return names


def overlap(a: str, b: str, sizes: Mapping[str, int]) -> int:
  """How many examples the split strings ``a`` and ``b`` both select, for whole splits of ``sizes``
  (``{"train": 60000, ...}``); splits missing from ``sizes`` count as disjoint."""
  def ranges(spec: str) -> list[tuple[str, int, int]]:
    return [(s.split, *s.bounds(sizes[s.split])) for s in parse(spec) if s.split in sizes]

  shared = 0
  for name_a, start_a, stop_a in ranges(a):
    for name_b, start_b, stop_b in ranges(b):
      if name_a == name_b:
        shared += max(0, min(stop_a, stop_b) - max(start_a, start_b))
  return shared

