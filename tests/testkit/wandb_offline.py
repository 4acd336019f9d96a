"""Reading W&B's offline run folders back (``<dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb``).

W&B 0.30 has no Python reader of its own for these files any more (its Go service writes and
syncs them), so the tests read the format here: W&B's header (``:W&B``, magic, version: 7
bytes), then LevelDB's log format (32 KiB blocks of chunks, each ``crc32 (4) length (2) type (1)``
then the bytes; types full/first/middle/last), each record a ``wandb_internal_pb2.Record``
parsed with W&B's own protobuf classes.
"""

from __future__ import annotations

import glob
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from wandb.proto import wandb_internal_pb2

_HEADER, _BLOCK, _CHUNK_HEADER = 7, 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: str) -> Iterator[wandb_internal_pb2.Record]:
    with open(path, "rb") as handle:
        data = handle.read()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, pending = _HEADER, b""
    while pos + _CHUNK_HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK_HEADER:  # the rest of a block too short for a chunk header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _CHUNK_HEADER])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + _CHUNK_HEADER:pos + _CHUNK_HEADER + length]
        pos += _CHUNK_HEADER + length
        if kind == _FULL:
            pending, complete = b"", chunk
        elif kind == _FIRST:
            pending = chunk
            continue
        elif kind == _MIDDLE:
            pending += chunk
            continue
        else:
            complete, pending = pending + chunk, b""
        record = wandb_internal_pb2.Record()
        record.ParseFromString(complete)
        yield record


@dataclass
class OfflineRun:
    """One offline run folder: the run's id, name, group and project, and its history rows by step."""

    folder: str
    run_id: str = ""
    name: str = ""
    group: str = ""
    project: str = ""
    history: dict[int, dict[str, float]] = field(default_factory=dict)
    steps: list[int] = field(default_factory=list)
    """Every history row's step, in file order (a step logged twice shows twice)."""


def offline_runs(wandb_folder: str) -> list[OfflineRun]:
    """Every ``offline-run-*`` folder under ``wandb_folder``, oldest first."""
    runs = []
    for folder in sorted(glob.glob(os.path.join(wandb_folder, "offline-run-*"))):
        run = OfflineRun(folder, run_id=os.path.basename(folder).split("-", 3)[-1])  # offline-run-<time>-<id>
        for path in glob.glob(os.path.join(folder, "run-*.wandb")):
            for record in records(path):
                kind = record.WhichOneof("record_type")
                if kind == "run":
                    run.run_id, run.name = record.run.run_id, record.run.display_name
                    run.group, run.project = record.run.run_group, record.run.project
                elif kind == "history":
                    row = {(item.key or "/".join(item.nested_key)): json.loads(item.value_json)
                           for item in record.history.item}
                    step = int(row.pop("_step"))
                    run.steps.append(step)
                    run.history[step] = {k: v for k, v in row.items() if not k.startswith("_")}
        runs.append(run)
    return runs
