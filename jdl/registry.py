"""One registry pattern for everything jdl finds by name.

Models, losses, metrics, optimizers, schedules, datasets, benchmark workloads,
callbacks and strategies each live in a :class:`Registry`. Every one of them
behaves the same way:

* ``register(name, obj)`` registers ``obj``; ``@register(name)`` is the
  decorator form of the same call;
* registering the identical object again (or the same definition again: a
  file imported twice, a notebook cell re-run) is a no-op;
* replacing a name with anything else, built-in or not, needs
  ``overwrite=True``;
* an unknown name is a ``ValueError`` listing the registered names, the ones
  your own code added marked as such.

A registry is a read-only mapping ``name -> object``; ``user_names()`` are the
names registered from outside jdl (``jdl list`` marks them).

    >>> from jdl.registry import Registry
    >>> colours = Registry("colour")
    >>> @colours.register("red")
    ... def red():
    ...   return "#f00"
    >>> colours["red"]()
    '#f00'
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_MISSING: Any = object()


@dataclasses.dataclass(frozen=True)
class Entry(Generic[T]):
  """A registration: the object, what it was registered with, and whether jdl itself registered it."""

  obj: T
  meta: Mapping[str, Any]
  builtin: bool


def _origin(obj: Any) -> tuple[Any, ...] | None:
  """Where ``obj`` was defined (qualified name, file and first line), or None when unknown.

  Two objects with the same origin are the same definition run twice (a file
  imported again, a cell re-run); partials compare by their function's origin
  and their arguments.
  """
  if isinstance(obj, functools.partial):
    inner = _origin(obj.func)
    if inner is None:
      return None
    try:
      return ("partial", inner, obj.args, tuple(sorted(obj.keywords.items())))
    except TypeError:
      return None
  target = getattr(obj, "__func__", obj)  # bound methods: the function
  owner = getattr(obj, "__self__", None)
  module, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
  if module is None or qualname is None:
    return None
  code = getattr(target, "__code__", None)
  # The file, not the module's name: a file imported as a module and again by path (--import my_parts.py)
  # runs under two names, and is still one definition.
  file = getattr(sys.modules.get(module), "__file__", None)
  where = (code.co_filename, code.co_firstlineno) if code is not None else (file,) if file else (module,)
  owned = _origin(owner) if isinstance(owner, type) else ()
  return (qualname, where, owned)


def same_definition(old: Any, new: Any) -> bool:
  """Whether ``new`` is ``old``, or the same definition run again (same module, qualified name and line)."""
  if old is new:
    return True
  origin = _origin(old)
  return origin is not None and origin == _origin(new)


_ALL: list[Registry[Any]] = []


def _article(word: str) -> str:
  return "an" if word[:1].lower() in "aeiou" else "a"


@contextlib.contextmanager
def scoped_all() -> Iterator[None]:
  """Within the block, registrations in every registry are temporary (for tests: nothing leaks between them)."""
  with contextlib.ExitStack() as stack:
    for registry in list(_ALL):
      stack.enter_context(registry.scoped())
    yield


class Registry(Mapping[str, T]):
  """Name → object, with one way to register and one way to fail.

  Args:
    kind: what is registered, in words ("model", "optimizer"): error messages use it.
    check: called as ``check(name, obj, meta)`` before a registration is stored;
      raises ``TypeError``/``ValueError`` for an object of the wrong shape.
    where: the function users call, for error messages (default ``register``).
    hint: a sentence appended to the unknown-name error.
    plural: the plural of ``kind`` (default ``kind + "s"``).
    same: ``same(old, new) -> bool``: whether two objects are one definition
      (default: identity, or the same module, qualified name and source line).
  """

  def __init__(self, kind: str, *, check: Callable[[str, T, Mapping[str, Any]], None] | None = None,
               where: str = "register", hint: str = "", same: Callable[[T, T], bool] | None = None,
               plural: str | None = None):
    self.kind = kind
    self.plural = plural or f"{kind}s"
    self._check = check
    self._where = where
    self._hint = hint
    self._same = same
    self._entries: dict[str, Entry[T]] = {}
    self._sealed = False
    _ALL.append(self)

  # -- Mapping ------------------------------------------------------------------------------------------------ #
  def __getitem__(self, name: str) -> T:
    return self.entry(name).obj

  def __iter__(self) -> Iterator[str]:
    return iter(self._entries)

  def __len__(self) -> int:
    return len(self._entries)

  def __contains__(self, name: object) -> bool:
    return name in self._entries

  def __repr__(self) -> str:
    return f"Registry({self.kind!r}: {', '.join(self.names())})"

  # -- registering -------------------------------------------------------------------------------------------- #
  def register(self, name: str, obj: Any = _MISSING, *, overwrite: bool = False, **meta: Any) -> Any:
    """Registers ``obj`` under ``name`` and returns it; without ``obj``, a decorator that does.

    Raises:
      TypeError: ``name`` is not a non-empty string, or ``obj`` is refused by the registry's check.
      ValueError: ``name`` holds another object and ``overwrite`` is False.
    """
    if not isinstance(name, str) or not name:
      raise TypeError(f"{self._where}: name must be a non-empty string, got {name!r}")
    if obj is _MISSING:
      return lambda o: self.register(name, o, overwrite=overwrite, **meta)
    if self._check is not None:
      self._check(name, obj, meta)
    old = self._entries.get(name)
    if old is not None and not overwrite:
      if self.is_same(old.obj, obj):
        # The same object, or its definition run again (a re-imported file, a re-run cell): the newer one holds.
        self._entries[name] = Entry(obj, dict(meta), old.builtin)
        return obj
      origin = "built-in " if old.builtin else ""
      raise ValueError(f"{self._where}: {_article(self.kind)} {self.kind} named {name!r} is already registered (the {origin}"
                       f"{old.obj!r}); pass overwrite=True to replace it, or choose another name")
    self._entries[name] = Entry(obj, dict(meta), builtin=not self._sealed)
    return obj

  def is_same(self, old: Any, new: Any) -> bool:
    """Whether ``new`` is ``old``, or the same definition again."""
    if old is new:
      return True
    return bool(self._same(old, new)) if self._same is not None else same_definition(old, new)

  def seal(self) -> None:
    """Marks every name registered so far as built-in; later ones are the user's."""
    self._sealed = True

  @contextlib.contextmanager
  def scoped(self) -> Iterator[Registry[T]]:
    """Within the block, registrations are temporary: the registry is restored when it ends (for tests)."""
    saved = dict(self._entries)
    try:
      yield self
    finally:
      self._entries = saved

  def unregister(self, name: str) -> None:
    """Removes a name the user registered (built-in names stay)."""
    entry = self._entries.get(name)
    if entry is not None and entry.builtin:
      raise ValueError(f"unregister: {name!r} is a built-in {self.kind}; it can be replaced (overwrite=True), "
                       "not removed")
    self._entries.pop(name, None)

  # -- looking up --------------------------------------------------------------------------------------------- #
  def entry(self, name: str, caller: str | None = None) -> Entry[T]:
    """The registration of ``name``.

    Raises:
      TypeError: ``name`` is not a string.
      ValueError: unknown ``name``; the message lists the registered names.
    """
    if not isinstance(name, str):
      raise TypeError(f"{caller or self.kind}: expected a {self.kind} name (a string), got "
                      f"{type(name).__name__} {name!r}")
    entry = self._entries.get(name)
    if entry is None:
      raise self.unknown(name, caller)
    return entry

  def get_meta(self, name: str, key: str, default: Any = None) -> Any:
    return self.entry(name).meta.get(key, default)

  def unknown(self, name: str, caller: str | None = None) -> ValueError:
    """The error for an unknown ``name``: it lists what is registered (the user's names marked)."""
    import difflib  # pylint: disable=g-import-not-at-top

    close = difflib.get_close_matches(name, list(self._entries), n=1, cutoff=0.75)
    mean = f" (did you mean {close[0]!r}?)" if close else ""
    prefix = f"{caller}: " if caller else ""
    hint = f"; {self._hint}" if self._hint else ""
    return ValueError(f"{prefix}unknown {self.kind} {name!r}; known {self.plural}: {self.describe()}{mean}{hint}. "
                      f"{_article(self.kind).capitalize()} {self.kind} defined in your own file is found once the file is imported "
                      "(--import FILE, or config.imports)")

  def names(self) -> list[str]:
    """The registered names, sorted."""
    return sorted(self._entries)

  def user_names(self) -> list[str]:
    """The names registered from outside jdl (or built-in names replaced by the user), sorted."""
    return sorted(n for n, e in self._entries.items() if not e.builtin)

  def describe(self) -> str:
    """``a, b, mine (yours)``: the names, the user's marked."""
    return ", ".join(f"{n} (yours)" if not self._entries[n].builtin else n for n in self.names())
