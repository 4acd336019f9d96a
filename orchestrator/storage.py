"""The one storage layer: a sweep or results folder on a local path, an NFS mount or an object store.

Every module that reads or writes a results folder (the Parquet sink, the checkpointer, the
sweep folder, ``mtrl status``, the resume check, the analysis loader) resolves paths and
moves bytes through here, over ``pyarrow.fs``, so a local path, an NFS mount and
``s3://bucket/prefix`` behave the same.

Guarantees:

* a file written through :func:`atomic_output_stream` (and the helpers built on it) appears
  whole or not at all: it is written under a hidden temporary name (``.<name>.tmp``, which
  pyarrow, pandas and DuckDB globs skip) and renamed into place;
* :func:`move_aside` never deletes: a damaged file goes to ``<root>/set-aside/`` under its
  relative path and a unique suffix, so a user can inspect or restore it.
"""

from __future__ import annotations

import os
import posixpath
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

SET_ASIDE_DIR = "set-aside"


def is_uri(path: str) -> bool:
    return "://" in path


def resolve_filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path)`` for a local path or a URI such as ``s3://bucket/results``."""
    if is_uri(root):
        return pafs.FileSystem.from_uri(root)
    return pafs.LocalFileSystem(), os.path.abspath(root)


def join(root: str, *parts: str) -> str:
    """Join path parts for a local path or a URI alike (a local root is made absolute)."""
    if is_uri(root):
        return "/".join([root.rstrip("/"), *parts])
    return os.path.join(os.path.abspath(root), *parts)


def canonical_root(root: str) -> str:
    """``root`` as the rest of the tool names it: an absolute path, or a URI without a trailing slash."""
    return root.rstrip("/") if is_uri(root) else os.path.abspath(root)


# --- writing -----------------------------------------------------------------------------------
@contextmanager
def atomic_output_stream(fs: pafs.FileSystem, path: str) -> Iterator[pa.NativeFile]:
    """A stream to a hidden temporary name beside ``path``, renamed onto it once written."""
    directory, name = posixpath.split(path)
    fs.create_dir(directory, recursive=True)
    tmp = posixpath.join(directory, f".{name}.tmp")
    with fs.open_output_stream(tmp) as stream:
        yield stream
    fs.move(tmp, path)


def write_bytes_atomically(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """``data`` to ``path`` through :func:`atomic_output_stream`: never half-written."""
    with atomic_output_stream(fs, path) as stream:
        stream.write(data)


def write_table_atomically(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    """A Parquet file through :func:`atomic_output_stream`."""
    with atomic_output_stream(fs, path) as stream:
        pq.write_table(table, stream)


# --- reading and listing ---------------------------------------------------------------------
def read_bytes(fs: pafs.FileSystem, path: str, limit: int = -1) -> bytes | None:
    """Contents of ``path`` (its first ``limit`` bytes when ``limit >= 0``), or ``None`` when no such file exists."""
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as stream:
        return stream.read() if limit < 0 else stream.read(limit)


def list_files(fs: pafs.FileSystem, directory: str, recursive: bool = False) -> list[pafs.FileInfo]:
    """The files (not folders) under ``directory``, sorted by path; none when it does not exist."""
    infos = fs.get_file_info(pafs.FileSelector(directory, recursive=recursive, allow_not_found=True))
    return sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path)


def is_hidden(base_name: str) -> bool:
    """Temporary and private files (``.x.tmp``, ``_metadata``) that readers skip."""
    return base_name.startswith((".", "_"))


# --- damaged files ----------------------------------------------------------------------------
def move_aside(fs: pafs.FileSystem, root: str, path: str) -> str:
    """Move ``path`` (inside the folder ``root``) to ``<root>/set-aside/<relative path>.<stamp>``.

    Returns the new path. Nothing is deleted: the file stays for a user to inspect.
    """
    relative = posixpath.relpath(path, root) if path.startswith(root.rstrip("/") + "/") else posixpath.basename(path)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{time.time_ns() % 1_000_000:06d}"
    target = posixpath.join(root, SET_ASIDE_DIR, f"{relative}.{stamp}")
    fs.create_dir(posixpath.dirname(target), recursive=True)
    fs.move(path, target)
    return target
