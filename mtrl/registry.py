"""A name -> entry table, one per kind of extension (treatments, architectures, tasks, benchmarks).

Every name a sweep file can use comes from one of these tables: the built-ins register
themselves when their module is imported, plugins when theirs is (:mod:`mtrl.plugins`). The
tables are the single source for validation, the sweep spec, the CLI's choices, the dry
run's estimate, the Parquet schema's ``interventions/*`` columns and the analysis's display
names.

Guarantees:

* a name is folder-safe (:data:`NAME_PATTERN`, at most :data:`MAX_NAME_LENGTH` characters):
  it becomes part of a ``run_key`` and a Hive partition folder ``arch=<name>``;
* a name is registered once: a second registration under the same name, by another module,
  is a :class:`RegistryError` naming both (a plugin cannot silently replace a built-in);
  the same module registering the same name again (a module imported twice, a reload)
  replaces its own entry;
* iteration order is registration order: built-ins first, in the paper's order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Generic, TypeVar

from orchestrator.errors import UserError, brief

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME_LENGTH = 64

T = TypeVar("T")


class RegistryError(UserError):
    """A registration that cannot stand: bad name, name clash, invalid defaults (one line)."""


class UnknownName(UserError):
    """A name no registration gave (one line, with the choices)."""


class Registry(Generic[T]):
    """Entries of one kind by name. ``kind`` names it in messages (``"treatment"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._owners: dict[str, str] = {}
        self.view: Mapping[str, T] = MappingProxyType(self._entries)
        """A read-only live mapping of the entries (``TASKS``, ``MULTI_TASK_BENCHMARKS`` are these)."""

    def check(self, name: str, owner: str) -> None:
        """Raise the :class:`RegistryError` :meth:`add` would raise for ``name`` from ``owner``, adding nothing."""
        if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not NAME_PATTERN.fullmatch(name):
            raise RegistryError(f"{self.kind} name {brief(name)} is not folder-safe (letters, digits, '.', '_', '-', "
                                f"starting with a letter or digit, at most {MAX_NAME_LENGTH} characters)")
        previous = self._owners.get(name)
        if previous is not None and previous != owner:
            raise RegistryError(f"{self.kind} {name!r} from {owner} clashes with the {self.kind} of that name "
                                f"registered by {previous}; choose another name")

    def add(self, name: str, entry: T, owner: str) -> T:
        """Register ``entry`` as ``name``; ``owner`` is the registering module (for clash messages)."""
        self.check(name, owner)
        self._entries[name] = entry
        self._owners[name] = owner
        return entry

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests that register temporary entries clean up with this)."""
        self._entries.pop(name, None)
        self._owners.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(f"unknown {self.kind} {brief(name)}; choose one of: {', '.join(self._entries)}") from None

    def owner(self, name: str) -> str:
        """The module that registered ``name``."""
        self.get(name)
        return self._owners[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


def caller_module(depth: int = 2) -> str:
    """The ``__name__`` of the module ``depth`` frames up (who called the register function).

    ``sys._getframe`` is CPython's documented way to read a caller's frame (the leading
    underscore marks it implementation-specific; the project requires CPython 3.11+). It
    spares every plugin from passing its own ``__name__``.
    """
    import sys

    frame = sys._getframe(depth)
    return str(frame.f_globals.get("__name__", "?"))
