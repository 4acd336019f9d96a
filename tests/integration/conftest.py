"""Fixtures of the integration tests that start `mtrl` drivers in child processes."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from testkit.ray import kill_ray_processes


@pytest.fixture
def ray_tmp():
    """A private RAY_TMPDIR for the drivers' local Ray instances; their processes stopped and it removed afterwards."""
    path = f"/tmp/mtrl-test-{uuid.uuid4().hex[:8]}"
    os.makedirs(path)
    yield path
    kill_ray_processes(path)
    shutil.rmtree(path, ignore_errors=True)
