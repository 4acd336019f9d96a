"""Tune's own experiment state, made to survive a driver killed at any moment.

Ray Tune 2.60 keeps a sweep's scheduling state in a few files next to the trial folders
(``tuner.pkl``, ``experiment_state-<session>.json``, ``basic-variant-state-<session>.json``)
and rewrites them while the sweep runs. Three things go wrong when the driver is killed
in the middle (the first two files left empty were seen in this project's kill-and-resume
test; the rest was found reading Tune's restore):

* the files are written in place, so a kill leaves one empty or cut short, and the next
  ``Tuner.restore`` fails on it (``EOFError: Ran out of input``) although every trial
  checkpoint is intact. On local and NFS storage every file Tune writes now goes through
  :func:`atomic_local_filesystem` (a hidden temporary name, then a rename); object stores
  publish whole objects anyway. :func:`guard_tuner_state` repairs a ``tuner.pkl`` damaged
  before that (by older versions of this tool);
* the experiment state (the trials) and the grid generator's state (which trials it has
  handed out) are separate files uploaded side by side, so a kill can leave them from
  different moments. Restored as Tune does it, an older generator hands out trials Tune
  already has again (two trials with one ``run_key``), a newer one never hands out trials
  that the experiment state does not list yet, and trials that finished in between keep
  counting against ``max_concurrent_trials``. :class:`ResumableGridSearch` is restored from
  the experiment state instead: it hands out, in grid order, exactly the trials that Tune
  does not have;
* the generator's newest file may be the damaged one: any readable one will do, since only
  the grid itself is taken from it.
"""

from __future__ import annotations

import fnmatch
import io
import itertools
import json
import logging
import os
import pickletools
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
from ray.tune.execution.tune_controller import TuneController
from ray.tune.search.basic_variant import BasicVariantGenerator, _TrialIterator

from orchestrator.sink import resolve_filesystem, write_bytes_atomically
from orchestrator.sweep_folder import TUNE_DIR, SweepFolder

TUNER_STATE = "tuner.pkl"
TUNER_STATE_COPY = ".tuner.pkl.verified"
PART_SUFFIX = ".part"

logger = logging.getLogger(__name__)


# --- every write whole or not at all ----------------------------------------------------------
class _RenameOnClose(io.RawIOBase):
    """A file written under a hidden temporary name and renamed over ``path`` when closed.

    A process killed while writing leaves the previous file (or none) and a stray
    ``.<name>.<id>.part``, never a file cut short. The temporary name ends in neither
    ``.json`` nor ``.pkl``, so Tune's restore never picks it up.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        directory, name = os.path.split(path)
        self.path = path
        self.part = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:8]}{PART_SUFFIX}")
        self._file = open(self.part, "wb")

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return self._file.write(data)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        if not self.closed:
            self._file.close()
            os.replace(self.part, self.path)
        super().close()


class AtomicLocalHandler(pafs.FileSystemHandler):
    """``pyarrow`` local filesystem whose output streams publish by rename (see above)."""

    def __init__(self) -> None:
        self._local = pafs.LocalFileSystem()

    def __reduce__(self):  # travels to Tune's trial workers inside the storage context
        return AtomicLocalHandler, ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AtomicLocalHandler)

    def __hash__(self) -> int:
        return hash(AtomicLocalHandler)

    def get_type_name(self) -> str:
        return "mtrl-atomic-local"

    def normalize_path(self, path: str) -> str:
        return self._local.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self._local.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self._local.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self._local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self._local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self._local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refusing to delete the contents of the filesystem root")

    def delete_file(self, path: str) -> None:
        self._local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self._local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        with self._local.open_input_stream(src) as source, self.open_output_stream(dest, None) as target:
            while chunk := source.read(1 << 20):
                target.write(chunk)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self._local.open_input_stream(path)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self._local.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any) -> pa.NativeFile:
        return pa.PythonFile(_RenameOnClose(path), mode="w")

    def open_append_stream(self, path: str, metadata: Any) -> pa.NativeFile:
        return self._local.open_append_stream(path)


def atomic_local_filesystem() -> pafs.FileSystem:
    return pafs.PyFileSystem(AtomicLocalHandler())


def tune_storage(root: str) -> tuple[str, pafs.FileSystem | None]:
    """``(storage_path, storage_filesystem)`` for Tune's RunConfig and ``Tuner.restore``.

    Local and ``file://`` roots get :func:`atomic_local_filesystem` and a plain path; other
    URIs (``s3://``, ``gs://``) keep Tune's own filesystem, whose objects appear whole.
    """
    fs, path = resolve_filesystem(root)
    if isinstance(fs, pafs.LocalFileSystem):
        return path, atomic_local_filesystem()
    return root, None


# --- tuner.pkl --------------------------------------------------------------------------------
def guard_tuner_state(folder: SweepFolder) -> bool:
    """Keep a verified copy of Tune's ``tuner.pkl``; put it back when the file is damaged.

    Tune rewrites ``tuner.pkl`` (its pickled settings, the same on every run of a sweep)
    whenever a Tuner is built. Written in place, as Tune did before :func:`tune_storage`, a
    driver killed at that moment left it empty. A
    complete file is copied aside (written then renamed) before each run; a damaged one is
    replaced by that copy. Returns True when it repaired the file.
    """
    fs, path = resolve_filesystem(folder.tune_dir)
    data = folder.read_bytes(f"{TUNE_DIR}/{TUNER_STATE}")
    if data is None:
        return False
    if is_complete_pickle(data):
        write_bytes_atomically(fs, f"{path}/{TUNER_STATE_COPY}", data)
        return False
    saved = folder.read_bytes(f"{TUNE_DIR}/{TUNER_STATE_COPY}")
    if saved is None or not is_complete_pickle(saved):
        return False  # no good copy: left to Tune's own error
    write_bytes_atomically(fs, f"{path}/{TUNER_STATE}", saved)
    return True


def is_complete_pickle(data: bytes) -> bool:
    """Whether ``data`` is a whole pickle (its opcodes run to STOP), without unpickling it."""
    try:
        last = None
        for last in pickletools.genops(data):
            pass
    except Exception:  # truncated or garbage: genops raises at the first bad opcode
        return False
    return last is not None and last[0].name == "STOP"


# --- the grid, restored from the trials Tune has ----------------------------------------------
def run_key_of(config: dict) -> str:
    """The ``run_key`` of a Tune trial config built by :func:`orchestrator.tune_glue.param_space`."""
    return config["trial"]["run_key"]


def restored_trials(dirpath: str) -> list[tuple[str, str, str]]:
    """``(trial_id, run_key, status)`` of every trial in the newest experiment state in ``dirpath``.

    The newest is the greatest file name, the rule ``TuneController.resume`` follows.
    """
    names = fnmatch.filter(os.listdir(dirpath), TuneController.CKPT_FILE_TMPL.format("*"))
    if not names:
        return []
    with open(os.path.join(dirpath, max(names))) as f:
        experiment = json.load(f)
    trials = []
    for trial_json, _runtime in experiment["trial_data"]:
        state = json.loads(trial_json)
        trials.append((state["trial_id"], run_key_of(state["config"]), state["status"]))
    return trials


class ResumableGridSearch(BasicVariantGenerator):
    """Tune's grid generator that resumes from the experiment state, not from its own file.

    On restore the grid is read from any readable ``basic-variant-state-*.json`` and handed
    out again from its first trial, with the trial ids Tune gave the first time; a trial
    whose ``run_key`` Tune restored from the experiment state is skipped, and only Tune's
    unfinished trials count against ``max_concurrent``. Why: see the module docstring.
    """

    def __init__(self, max_concurrent: int = 0) -> None:
        super().__init__(max_concurrent=max_concurrent)
        self._known_run_keys: set[str] = set()

    def next_trial(self):
        while True:
            live_before = set(self._live_trials)
            trial = super().next_trial()
            if trial is None:
                return None
            run_key = run_key_of(trial.config)
            if run_key not in self._known_run_keys:
                self._known_run_keys.add(run_key)
                return trial
            self._live_trials = live_before  # Tune has it already: undo the hand-out

    def has_checkpoint(self, dirpath: str) -> bool:
        return bool(fnmatch.filter(os.listdir(dirpath), self.CKPT_FILE_TMPL.format("*")))

    def restore_from_dir(self, dirpath: str) -> None:
        self.set_state(self._newest_readable_state(dirpath))
        if len(self._iterators) != 1:
            raise RuntimeError(f"expected one Tune experiment in {dirpath}, found {len(self._iterators)}")
        grid = self._iterators[0]
        self._iterators = [_TrialIterator(
            uuid_prefix=grid.uuid_prefix, num_samples=grid.num_samples, unresolved_spec=grid.unresolved_spec,
            constant_grid_search=grid.constant_grid_search, lazy_eval=grid.lazy_eval, start=0,
            random_state=self._random_state)]
        self._trial_generator = itertools.chain(*self._iterators)
        self._trial_iter = None
        self._finished = False
        trials = restored_trials(dirpath)
        self._known_run_keys = {run_key for _, run_key, _ in trials}
        self._live_trials = {trial_id for trial_id, _, status in trials if status != "TERMINATED"}

    def _newest_readable_state(self, dirpath: str) -> dict:
        import ray.cloudpickle as cloudpickle

        names = sorted(fnmatch.filter(os.listdir(dirpath), self.CKPT_FILE_TMPL.format("*")), reverse=True)
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                data = f.read()
            if is_complete_pickle(data):
                return cloudpickle.loads(data)
            logger.warning("skipping Tune's damaged grid state %s (%d bytes)", name, len(data))
        raise RuntimeError(f"no readable {self.CKPT_FILE_TMPL.format('*')} in {dirpath}")
