"""The one storage layer: a results folder on a local path, an NFS mount or an object store.

Every module that reads or writes a results folder (the Parquet sink, the checkpointer, the
sweep folder, ``mtrl trial``'s folder, ``mtrl status``, the resume check, the trial logs, the
analysis loader) resolves paths and moves bytes through here, over ``pyarrow.fs``, so a local
path, an NFS mount and ``s3://bucket/prefix`` behave the same.

Guarantees:

* a file written through :func:`atomic_output_stream` (and the helpers built on it) appears
  whole or not at all: it is written under a hidden temporary name (``.<name>.tmp``, which
  pyarrow, pandas and DuckDB globs skip) and renamed into place; a write that fails removes its
  temporary file, and a rerun removes the ones a killed process left (:func:`remove_temporaries`);
* every Parquet file it writes carries a CRC per page of every column, which
  :func:`read_table_verified` checks;
* :func:`move_aside` never deletes: a damaged file goes to ``<root>/set-aside/`` under its
  relative path and a unique suffix, so a user can inspect or restore it;
* a folder is this tool's only if it carries the marker (:data:`~mtrl_plasticity.results.MARKER`)
  that :func:`claim` writes; a folder that holds files without one is foreign and is never
  written into (:func:`refuse_foreign`); :func:`read_marker` is the one reader of the marker;
* nothing is read but regular files (a FIFO, a device or a socket is one line naming it, and is
  never opened for reading, so no read can hang), and nothing written, moved or deleted leaves
  the folder through a symbolic link inside it: :func:`claim` refuses a folder holding one (or a
  special file) before any work, :func:`refuse_links` checks a writer's own paths (a trial's
  worker at its start, :func:`move_aside` before each move), and lock files are opened without
  following links. The folder itself (or the storage above it) may be a link. Object stores have
  neither links nor special files: there these checks do nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import posixpath
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any, NoReturn

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mtrl_plasticity.errors import ResultsDirError
from mtrl_plasticity.results import MARKER, MARKER_KIND, SET_ASIDE_DIR, TUNE_DIR, WANDB_DIR
from orchestrator.schema import READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION

MAX_MARKER_BYTES = 4096
"""Largest marker file read (the tool writes well under a hundred bytes)."""
LAYOUTS = ("sweep", "trial")
"""A sweep folder (``mtrl run``) or an ad-hoc trial folder (``mtrl trial``)."""


def is_uri(path: str) -> bool:
    """Whether ``path`` names an object store or another ``pyarrow.fs`` filesystem (``s3://...``)."""
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


def file_type(root: str) -> pafs.FileType:
    """What ``root`` is: ``FileType.File``, ``Directory`` or ``NotFound``; a path the filesystem
    cannot even look up (a name too long, a file where a folder should be) is a one-line
    :class:`~mtrl_plasticity.errors.ResultsDirError`."""
    fs, path = resolve_filesystem(root)
    try:
        return fs.get_file_info(path).type
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else " ".join(str(exc).split())[:200]
        raise ResultsDirError(f"{root}: {reason}") from None


# --- writing -----------------------------------------------------------------------------------
def temporary_name(name: str) -> str:
    """The hidden name a file is written under before it is renamed to ``name``."""
    return f".{name}.tmp"


def final_name(name: str) -> str | None:
    """The file name whose temporary name (:func:`temporary_name`) ``name`` is, or ``None``."""
    if len(name) > len("..tmp") and name.startswith(".") and name.endswith(".tmp"):
        return name[1:-len(".tmp")]
    return None


def remove_temporaries(fs: pafs.FileSystem, directory: str, owns: Callable[[str], bool]) -> list[str]:
    """Delete the temporary files in ``directory`` whose final name ``owns`` accepts; their paths.

    They are what a write cut short left (a full disk, a killed process): never a whole file,
    and never read. Only this tool's temporary names are looked at, so a user's file is never touched.
    """
    removed = []
    for info in list_files(fs, directory):
        final = final_name(info.base_name)
        if final is not None and owns(final):
            with suppress(FileNotFoundError):  # its writer may have renamed or removed it meanwhile
                fs.delete_file(info.path)
                removed.append(info.path)
    return removed


@contextmanager
def atomic_output_stream(fs: pafs.FileSystem, path: str) -> Iterator[pa.NativeFile]:
    """A stream to a hidden temporary name beside ``path``, renamed onto it once written.

    A write that fails (a full disk, an interrupt) removes its temporary file, so it keeps no space.
    """
    directory, name = posixpath.split(path)
    fs.create_dir(directory, recursive=True)
    tmp = posixpath.join(directory, temporary_name(name))
    try:
        with fs.open_output_stream(tmp) as stream:
            yield stream
        fs.move(tmp, path)
    except BaseException:
        with suppress(OSError):  # already gone, or the storage refuses even that: the rerun removes it
            fs.delete_file(tmp)
        raise


def write_bytes_atomically(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """``data`` to ``path`` through :func:`atomic_output_stream`: never half-written."""
    with atomic_output_stream(fs, path) as stream:
        stream.write(data)


def write_table_atomically(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    """A Parquet file through :func:`atomic_output_stream`, every page (data and dictionary, of every
    column) with its CRC, which :func:`read_table_verified` checks."""
    with atomic_output_stream(fs, path) as stream:
        pq.write_table(table, stream, write_page_checksum=True)


def read_table_verified(fs: pafs.FileSystem, path: str, schema: pa.Schema | None = None) -> pa.Table:
    """Every column of the Parquet file ``path`` (as ``schema`` when given), the CRC of every page
    checked (``OSError`` on a mismatch); pages written without one (files of earlier versions of
    this tool) read unchecked."""
    if schema is not None:  # missing columns (an older schema version's file) read as nulls
        return pq.read_table(path, filesystem=fs, schema=schema, page_checksum_verification=True)
    # One thread and no dataset layer: for a trial's small files about half the CPU of pq.read_table,
    # which matters to the resume check of a whole sweep folder.
    with fs.open_input_file(path) as handle:
        return pq.ParquetFile(handle, page_checksum_verification=True).read(use_threads=False)


# --- reading and listing ---------------------------------------------------------------------
def read_bytes(fs: pafs.FileSystem, path: str, limit: int = -1) -> bytes | None:
    """Contents of ``path`` (its first ``limit`` bytes when ``limit >= 0``), or ``None`` when no such file exists.

    :class:`~mtrl_plasticity.errors.ResultsDirError` when ``path`` is there but is not a regular
    file (a folder, a FIFO, a device: it is never opened, so the read cannot hang or run forever).
    """
    found = fs.get_file_info(path).type
    if found == pafs.FileType.NotFound:
        return None
    if found != pafs.FileType.File:
        _refuse_special(path, _kind_of(fs, path))
    with fs.open_input_stream(path) as stream:
        return stream.read() if limit < 0 else stream.read(limit)


def read_json(fs: pafs.FileSystem, path: str, limit: int) -> Any:
    """The JSON value in ``path`` (``None`` when no such file exists); ``ValueError`` when it is larger
    than ``limit`` bytes, not UTF-8, not JSON or nested too deeply to read."""
    data = read_bytes(fs, path, limit + 1)
    if data is None:
        return None
    if len(data) > limit:
        raise ValueError(f"larger than {limit:,} bytes")
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from None


def list_files(fs: pafs.FileSystem, directory: str, recursive: bool = False,
               special: str = "refuse") -> list[pafs.FileInfo]:
    """The regular files under ``directory``, sorted by path; none when it does not exist.

    Anything else but a folder (a FIFO, a device, a socket) is a one-line
    :class:`~mtrl_plasticity.errors.ResultsDirError` naming it, or left out with ``special="skip"``
    (for folders of logs).
    """
    infos = fs.get_file_info(pafs.FileSelector(directory, recursive=recursive, allow_not_found=True))
    if special != "skip":
        odd = [i for i in infos if i.type not in (pafs.FileType.File, pafs.FileType.Directory)]
        if odd:
            _refuse_special(odd[0].path, _kind_of(fs, odd[0].path))
    return sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path)


def _refuse_special(path: str, kind: str) -> NoReturn:
    raise ResultsDirError(f"{path} is {kind}, not a regular file; move it out of the folder")


def _kind_of(fs: pafs.FileSystem, path: str) -> str:
    """What a path that is not a regular file is, in words (``"a FIFO"``)."""
    if not isinstance(fs, pafs.LocalFileSystem):
        return "not a file"
    try:
        return kind_of(os.stat(path).st_mode)
    except OSError:
        return "unreadable"


def kind_of(mode: int) -> str:
    """A file type in words: ``"a regular file"``, ``"a folder"``, ``"a FIFO"``, ``"a symbolic link"``, ..."""
    for test, words in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                        (stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "a special file"


# --- links and special files inside a results folder -------------------------------------------
def _refuse_link(path: str) -> NoReturn:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    raise ResultsDirError(f"{path} is a symbolic link (to {target}): nothing is written through a link inside a "
                          f"results folder; make it a real folder or file (a link to the whole folder is fine)")


def refuse_links(root: str, paths: Iterable[str]) -> None:
    """Refuse (one line naming the link and its target) a symbolic link at any of ``paths`` or between
    ``root`` and it; ``root`` itself and what lies above it may be links. A part that does not
    exist yet ends the check of that path (it is created as a real folder). A no-op on object stores.
    """
    if is_uri(root):
        return
    base = os.path.abspath(root)
    for path in paths:
        relative = os.path.relpath(os.path.abspath(path), base)
        if relative == "." or relative.startswith(".."):
            continue
        current = base
        for part in relative.split(os.sep):
            current = os.path.join(current, part)
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                break
            if stat.S_ISLNK(mode):
                _refuse_link(current)


THIRD_PARTY_LOG_DIRS = (TUNE_DIR, WANDB_DIR)
"""Folders that Ray Tune and W&B write themselves (W&B links ``latest-run`` and its logs there): the
project only writes below them through those libraries and never reads, moves or deletes there."""


def refuse_odd_entries(root: str) -> None:
    """Refuse (one line naming it) a folder holding, anywhere inside, a symbolic link or anything but
    regular files and folders (a FIFO, a device, a socket). :data:`THIRD_PARTY_LOG_DIRS` are not
    looked into. Read-only; a no-op on object stores."""
    if is_uri(root):
        return
    top = os.path.abspath(root)
    skipped = {os.path.join(top, name) for name in THIRD_PARTY_LOG_DIRS}
    pending = [top]
    while pending:
        try:
            entries = [e for e in os.scandir(pending.pop()) if e.path not in skipped or e.is_symlink()]
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_symlink():
                _refuse_link(entry.path)
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            elif not entry.is_file(follow_symlinks=False):
                _refuse_special(entry.path, kind_of(entry.stat(follow_symlinks=False).st_mode))


# --- damaged files ----------------------------------------------------------------------------
def move_aside(fs: pafs.FileSystem, root: str, path: str) -> str:
    """Move ``path`` (inside the folder ``root``) to ``<root>/set-aside/<relative path>.<stamp>``.

    Returns the new path. Nothing is deleted: the file stays for a user to inspect.
    """
    relative = posixpath.relpath(path, root) if path.startswith(root.rstrip("/") + "/") else posixpath.basename(path)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{time.time_ns() % 1_000_000:06d}"
    target = posixpath.join(root, SET_ASIDE_DIR, f"{relative}.{stamp}")
    if isinstance(fs, pafs.LocalFileSystem):  # a link on either side would move files outside the folder
        refuse_links(root, (path, posixpath.dirname(target)))
    fs.create_dir(posixpath.dirname(target), recursive=True)
    fs.move(path, target)
    return target


# --- the results-folder marker ----------------------------------------------------------------
def read_marker(root: str) -> dict[str, Any] | None:
    """The marker of the results folder ``root``, or ``None`` when it has none.

    :class:`~mtrl_plasticity.errors.ResultsDirError` for a marker this tool did not write
    (unreadable, not a regular file, not its JSON, empty) or one of another schema version.
    Every command applies this one rule: ``mtrl run`` (``--dry-run`` too), ``mtrl trial``,
    ``mtrl status`` and ``mtrl analyze``.
    """
    fs, path = resolve_filesystem(root)
    try:
        marker = read_json(fs, posixpath.join(path, MARKER), MAX_MARKER_BYTES)
    except ResultsDirError:
        raise
    except ValueError as exc:
        raise ResultsDirError(f"{join(root, MARKER)} is unreadable ({exc}); is this a results folder of "
                              f"this tool?") from None
    if marker is None and fs.get_file_info(posixpath.join(path, MARKER)).type == pafs.FileType.NotFound:
        return None
    if not isinstance(marker, dict) or marker.get("kind") != MARKER_KIND or marker.get("layout") not in LAYOUTS:
        raise ResultsDirError(f"{join(root, MARKER)} was not written by this tool")
    # A folder keeps the version of its marker: rows of a newer version are added to an older folder
    # beside its own, each row saying which it is (schema_version), and the older files stay as they are.
    version = marker.get("schema_version")
    if type(version) is not int or version not in READABLE_SCHEMA_VERSIONS:  # true and 1.0 equal 1 in Python
        raise ResultsDirError(f"{root} holds results of schema version {version!r}, this tool "
                              f"reads versions {', '.join(map(str, READABLE_SCHEMA_VERSIONS))}")
    return marker


def refuse_foreign(root: str, ignore: tuple[str, ...] = ()) -> None:
    """Refuse (read-only) a ``root`` that is a file, or a folder holding files but no marker (another
    program's data); names in ``ignore`` (the driver's lock file) do not count as files."""
    fs, path = resolve_filesystem(root)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        raise ResultsDirError(f"{root} is a file, not a results folder; move it or choose another folder")
    if fs.get_file_info(posixpath.join(path, MARKER)).type != pafs.FileType.NotFound:
        return
    existing = [e for e in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)) if e.base_name not in ignore]
    if existing:
        raise ResultsDirError(f"{root} already holds files but is not a results folder of this tool "
                              f"(no {MARKER}); choose an empty or new folder")


def claim(root: str, layout: str, ignore: tuple[str, ...] = ()) -> bool:
    """Make ``root`` a results folder of ``layout`` (``"sweep"`` or ``"trial"``), or refuse; True if it was one.

    Refuses a foreign folder (:func:`refuse_foreign`, with ``ignore``), a marker this tool did
    not write, a folder of the other layout, and one holding a symbolic link or a special file
    anywhere inside (:func:`refuse_odd_entries`). Only a new folder gets its marker written.
    """
    marker = read_marker(root)
    refuse_odd_entries(root)
    if marker is None:
        refuse_foreign(root, ignore)
        fs, path = resolve_filesystem(root)
        fs.create_dir(path, recursive=True)
        write_bytes_atomically(fs, posixpath.join(path, MARKER), json.dumps(
            {"kind": MARKER_KIND, "schema_version": SCHEMA_VERSION, "layout": layout}).encode())
        return False
    if marker["layout"] != layout:
        raise ResultsDirError(f"{root} is a {marker['layout']} results folder, not a {layout} folder")
    return True


# --- locks ------------------------------------------------------------------------------------
class LockHeld(Exception):
    """Another process holds the lock; ``holder`` is what it wrote into the lock file."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


@contextmanager
def exclusive_lock(root: str, name: str, holder: str = "", patience_s: float = 0.0) -> Iterator[None]:
    """Hold a ``flock`` on ``<root>/<name>`` for the block (local and NFS paths), writing ``holder`` into it
    (and erasing it after); without a ``holder`` the file's bytes and times stay as they were.

    The kernel releases it when the process exits or is killed. :class:`LockHeld` when another
    process still holds it after ``patience_s`` seconds. Object stores have no locks: there the
    block runs unlocked, and one writer is the scheduler's or the user's job.
    """
    if is_uri(root):
        yield
        return
    os.makedirs(root, exist_ok=True)
    with _open_lock_file(os.path.join(root, name), os.O_RDWR | os.O_CREAT) as handle:
        if not _try_lock(handle, fcntl.LOCK_EX, patience_s):
            handle.seek(0)
            raise LockHeld(handle.read().strip() or "another process")
        # Without a holder the file is left as it is (a truncate updates its mtime even when empty):
        # checking a finished trial under its lock does not touch any of its files.
        if holder:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{holder}\n")
            handle.flush()
        try:
            yield
        finally:
            if holder:
                handle.seek(0)
                handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_holder(root: str, name: str) -> str | None:
    """What the holder of ``<root>/<name>``'s lock wrote (``"another process"`` if nothing), ``""`` when
    nobody holds it, ``None`` when unknown (object stores have no locks)."""
    if is_uri(root):
        return None
    path = os.path.join(root, name)
    if not os.path.lexists(path):
        return ""
    with _open_lock_file(path, os.O_RDONLY) as handle:
        if _try_lock(handle, fcntl.LOCK_SH, patience_s=0.0):
            fcntl.flock(handle, fcntl.LOCK_UN)
            return ""
        return handle.read().strip() or "another process"


def _open_lock_file(path: str, flags: int) -> IO[str]:
    """``path`` opened as text, refused in one line when it is a link (writes would go where it points)
    or not a regular file (a FIFO would block the open)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if os.path.islink(path):
            _refuse_link(path)
        raise ResultsDirError(f"{path}: cannot open the lock file ({exc.strerror or exc})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        _refuse_special(path, kind_of(mode))
    os.set_blocking(fd, True)
    return os.fdopen(fd, "r+" if flags & os.O_RDWR else "r")


def _try_lock(handle: IO[str], kind: int, patience_s: float) -> bool:
    deadline = time.monotonic() + patience_s
    while True:
        try:
            fcntl.flock(handle, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
