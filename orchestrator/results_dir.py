"""What a results folder is, and the checks that keep foreign or finished data safe.

Every folder this tool writes carries ``mtrl-results.json``. A folder without it that
already holds files is foreign: nothing is ever written into it. An ad-hoc trial folder
(``mtrl trial``) holds exactly one trial under ``trials/<run_key>/``; a sweep folder
(``mtrl run``) holds ``sweep.yaml`` instead.
"""

from __future__ import annotations

import json
import os

from orchestrator import schema
from orchestrator.errors import UserError

MARKER = "mtrl-results.json"
MARKER_KIND = "mtrl-results"


class ResultsDirError(UserError):
    """A results folder that cannot be used as asked (foreign, another trial's, ...)."""


def read_marker(path: str) -> dict | None:
    marker = os.path.join(path, MARKER)
    if not os.path.exists(marker):
        return None
    try:
        with open(marker) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsDirError(f"{marker} is unreadable ({exc}); is this a results folder of this tool?") from None
    if not isinstance(data, dict) or data.get("kind") != MARKER_KIND:
        raise ResultsDirError(f"{marker} was not written by this tool")
    if data.get("schema_version") != schema.SCHEMA_VERSION:
        raise ResultsDirError(
            f"{path} holds results of schema version {data.get('schema_version')}, this tool writes "
            f"version {schema.SCHEMA_VERSION}")
    return data


def claim(path: str, layout: str) -> None:
    """Make ``path`` a results folder of ``layout`` ("trial" or "sweep"), or refuse.

    Refuses a folder that exists with files but without the marker (foreign data), and a
    folder of the other layout.
    """
    marker = read_marker(path)
    if marker is None:
        if os.path.isdir(path) and os.listdir(path):
            raise ResultsDirError(
                f"{path} already holds files but is not a results folder of this tool "
                f"(no {MARKER}); choose an empty or new folder")
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, MARKER), "w") as f:
            json.dump({"kind": MARKER_KIND, "schema_version": schema.SCHEMA_VERSION, "layout": layout}, f)
        return
    if marker.get("layout") != layout:
        raise ResultsDirError(f"{path} is a {marker.get('layout')} results folder, not a {layout} folder")
