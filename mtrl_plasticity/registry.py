"""A name -> entry table, one per kind of extension (treatments, architectures, tasks, benchmarks).

Every name a sweep file can use comes from one of these tables: the paper's built-ins
register themselves when their module is imported (``orchestrator.registered`` imports them
first), plugins when theirs is (:mod:`mtrl_plasticity.plugins`). The tables are the single
source for validation, the sweep spec, the CLI's choices, the dry run's estimate, the
Parquet schema's ``interventions/*`` columns and the analysis's display names.

Guarantees:

* a name is folder-safe (:func:`check_name`): it becomes part of a ``run_key`` and a Hive
  partition folder ``arch=<name>``; a sweep's own name follows the same rule;
* a name is registered once: a second registration under the same name, by another module,
  is a :class:`RegistryError` naming both (a plugin cannot silently replace a built-in);
  the same module registering the same name again (a module imported twice, a reload)
  replaces its own entry;
* iteration order is registration order: built-ins first, in the paper's order.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from mtrl_plasticity.errors import RegistryError, UnknownName, brief

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""A folder-safe name, matched as a whole: registered names and sweep names."""
MAX_NAME_LENGTH = 64

T = TypeVar("T")


def name_problem(name: object) -> str | None:
    """Why ``name`` is not folder-safe (:data:`NAME_PATTERN` without ``__``, at most :data:`MAX_NAME_LENGTH`
    characters), or None."""
    # "__" separates a run_key from a segment's step range in Parquet file names.
    if isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and NAME_PATTERN.fullmatch(name) and "__" not in name:
        return None
    return (f"{brief(name)} is not folder-safe (letters, digits, '.', '_', '-', starting with a letter or digit, "
            f"no '__', at most {MAX_NAME_LENGTH} characters)")


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
        problem = name_problem(name)
        if problem is not None:
            raise RegistryError(f"{self.kind} name {problem}")
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
        """The entry of ``name``; :class:`UnknownName` (one line, with the choices) if none."""
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


E = TypeVar("E")


def now_or_as_decorator(given: Any, add: Callable[[Any], None]) -> Callable[[E], E]:
    """How every ``register_*`` takes its implementation: ``add(given)`` at once when it is given
    (the call returns a no-op decorator), else a decorator that adds what it decorates."""
    if given is not None:
        add(given)
        return lambda entry: entry

    def decorator(entry: E) -> E:
        add(entry)
        return entry

    return decorator


def caller_module(depth: int = 2) -> str:
    """The ``__name__`` of the module ``depth`` frames up (who called the register function).

    ``sys._getframe`` is CPython's documented way to read a caller's frame (the leading
    underscore marks it implementation-specific; the project requires CPython 3.11+). It
    spares every plugin from passing its own ``__name__``.
    """
    frame = sys._getframe(depth)
    return str(frame.f_globals.get("__name__", "?"))


def resolve(reference: Any) -> Any:
    """``reference`` itself, or the object a ``"module:attribute"`` string names (imported now).

    Registrations may name their implementation this way, so that checking a sweep never
    imports the code (and torch) behind it; the code that builds one resolves it.
    """
    if not isinstance(reference, str):
        return reference
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)
