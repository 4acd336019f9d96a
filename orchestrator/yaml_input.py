"""The one place that reads YAML written by a user: sweep files, a results folder's
``sweep.yaml``, and the values of ``--set`` and ``--treatment-param``.

It is PyYAML's safe loader with YAML 1.2 floats (``1e-6`` is a number, not a string) and
limits that keep a small hostile file from taking time or memory: the file's size, the
nesting depth, and the number of nodes after aliases are expanded (an 800-byte "billion
laughs" file expands to 10^9). A key given twice in one mapping is refused (PyYAML would keep
the last one silently). Every failure is a :class:`UserError` of one line that names
its source (the file, or ``--set key=...``).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from mtrl_plasticity.errors import UserError, brief, clip

MAX_FILE_BYTES = 1 << 20
"""Largest YAML file read (1 MiB; the paper's sweep files are under 2 KB)."""
MAX_DEPTH = 32
"""Deepest nesting of lists and mappings."""
MAX_NODES = 100_000
"""Most values in one document, counting every use of an alias as a copy."""


class _Loader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 floats, a depth limit and a node limit while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        self._nodes += 1
        if self._depth > MAX_DEPTH:
            raise _TooBig(f"nested deeper than {MAX_DEPTH} levels")
        if self._nodes > MAX_NODES:
            raise _TooBig(f"more than {MAX_NODES:,} values")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """PyYAML's mapping, refusing a key given twice (PyYAML keeps the last one without a word)."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be overridden
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _Duplicate(f"the key {brief(key)} appears twice, on lines {seen[key]} and {line}; "
                                     f"keep one")
                seen[key] = line
            except TypeError:  # an unhashable key: PyYAML's own error names it
                continue
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                 |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                 |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                 |[-+]?\.(?:inf|Inf|INF)
                 |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


class _TooBig(Exception):
    """A limit was hit while composing (turned into a :class:`UserError` by :func:`load_yaml`)."""


class _Duplicate(Exception):
    """A mapping gives a key twice (turned into a :class:`UserError` by :func:`load_yaml`)."""


def _expanded_size(node: Node, memo: dict[int, int | None]) -> int:
    """Values under ``node`` with every alias expanded (shared nodes are counted once per use)."""
    key = id(node)
    if key in memo:
        size = memo[key]
        if size is None:
            raise _TooBig("an alias refers to a value that contains it")
        return size
    memo[key] = None
    size = 1
    if isinstance(node, SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[key] = size
    return size


def load_yaml(text: str, source: str) -> Any:
    """The value of one YAML document; :class:`UserError` naming ``source`` if it is malformed or too big."""
    if len(text) > MAX_FILE_BYTES:
        raise UserError(f"{source}: larger than the {MAX_FILE_BYTES >> 20} MiB limit on YAML input")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_NODES:
            raise _TooBig(f"more than {MAX_NODES:,} values once its aliases are expanded")
        try:
            return loader.construct_document(node)
        except (yaml.YAMLError, _Duplicate):
            raise
        except Exception as exc:  # noqa: BLE001 - PyYAML's constructors fail on e.g. `!!timestamp x` with
            # AttributeError or ValueError: a malformed value either way
            raise UserError(f"{source}: malformed YAML: cannot read a value ({clip(str(exc)) or type(exc).__name__})"
                            ) from None
    except _Duplicate as exc:
        raise UserError(f"{source}: {exc}") from None
    except _TooBig as exc:
        raise UserError(f"{source}: refused: {exc} (limits of YAML input: {MAX_DEPTH} levels, "
                        f"{MAX_NODES:,} values)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{source}: malformed YAML{where}: {problem}") from None
    finally:
        loader.dispose()


def read_yaml_file(path: str, what: str = "YAML file") -> Any:
    """The YAML value in the file ``path`` (UTF-8, at most :data:`MAX_FILE_BYTES`); :class:`UserError` if not.

    Only a regular file is read: anything else (a FIFO, ``/dev/zero``, a socket) is refused
    without waiting on it, since it is opened non-blocking and checked before any read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            if stat.S_ISDIR(mode):
                raise UserError(f"{path}: is a folder, not a {what}")
            raise UserError(f"{path}: is not a regular file, so not a {what} (save it to a file first)")
        os.set_blocking(fd, True)
        with open(fd, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return load_yaml_bytes(data, path)


def load_yaml_bytes(data: bytes, source: str) -> Any:
    """:func:`load_yaml` of UTF-8 bytes; a size or encoding problem names ``source``."""
    if len(data) > MAX_FILE_BYTES:
        raise UserError(f"{source}: larger than the {MAX_FILE_BYTES >> 20} MiB limit on YAML input")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{source}: not UTF-8 text (byte {exc.start:,} is {data[exc.start]:#04x})") from None
    return load_yaml(text, source)


def parse_assignments(pairs: Sequence[str], flag: str) -> dict[str, Any]:
    """``["a.b=1", "coef=1e-6"]`` -> ``{"a.b": 1, "coef": 1e-06}``: each value read as YAML.

    The one parser of ``--set`` and ``--treatment-param`` (``flag`` names the option in errors).
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"{flag} expects key=value, got {brief(pair)}")
        out[key] = load_yaml(value, f"{flag} {clip(key)}=...")
    return out
