"""`mtrl run --address` on an address where no cluster answers: one line naming the address within
``CONNECT_TIMEOUT_S``, nothing written to the storage; SIGTERM at points of start-up (while a cluster
is tried, while a local Ray starts) exits 130 with the rerun line. A reachable cluster still works:
tests/integration/test_job_submit.py and test_two_node_cluster.py run sweeps through `--address`."""

from __future__ import annotations

import glob
import os
import signal
import socket
import subprocess
import time

import pytest

from orchestrator.ray_connect import CONNECT_TIMEOUT_S
from testkit.ray import free_port, mtrl_command, subprocess_env, tiny_sweep, wait_until

pytestmark = pytest.mark.slow

START_UP_S = 20.0
"""What the driver may take besides the connection bound: Python, imports, the sweep file (2-core VM)."""
RERUN_LINE = "mtrl run: interrupted; rerun the same command to resume"


@pytest.fixture
def sweep(tmp_path):
    return tiny_sweep(tmp_path / "tiny.yaml", "tiny", seeds=1)


@pytest.fixture
def silent_port():
    """A port that accepts TCP connections (the kernel completes them) and never says a word."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server


def start(sweep: str, storage, address: str, tmp_path, **env: str) -> subprocess.Popen:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    environment = subprocess_env(HOME=str(home), **env)
    # An in-process `mtrl run` of an earlier test sets RAY_AUTH_MODE=token for its local Ray (a local
    # instance only): with it, ray.init refuses any address for want of a token before reaching it.
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        environment.pop(name, None)
    return subprocess.Popen(mtrl_command("run", sweep, "--storage", str(storage), *(("--address", address)
                                                                                   if address else ())),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)


def finish(driver: subprocess.Popen, timeout: float) -> tuple[int, str]:
    _, err = driver.communicate(timeout=timeout)
    return driver.returncode, err


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_a_closed_port_is_one_line_naming_the_address_with_nothing_written(tmp_path, sweep, scheme):
    address = f"{scheme}127.0.0.1:{free_port()}"  # bound, then released: nothing listens there
    storage = tmp_path / "results"
    began = time.monotonic()
    code, err = finish(start(sweep, storage, address, tmp_path), timeout=CONNECT_TIMEOUT_S + START_UP_S)
    assert time.monotonic() - began < CONNECT_TIMEOUT_S + START_UP_S
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mtrl run: error: cannot reach the Ray cluster at ") and repr(address) in lines[0]
    assert ("client server" if scheme else "ray start --head") in lines[0]
    assert not storage.exists()


def test_an_address_that_never_answers_is_refused_at_the_bound(tmp_path, sweep, silent_port):
    address = f"127.0.0.1:{silent_port.getsockname()[1]}"
    storage = tmp_path / "results"
    began = time.monotonic()
    code, err = finish(start(sweep, storage, address, tmp_path), timeout=CONNECT_TIMEOUT_S + START_UP_S)
    took = time.monotonic() - began
    assert code == 2, err
    # Ray's own client may log that it is still trying (its C++ log lines); ours is the last line.
    assert err.splitlines()[-1].startswith(f"mtrl run: error: no answer from the Ray cluster at {address!r} "
                                           f"within {CONNECT_TIMEOUT_S:g} s"), err
    assert CONNECT_TIMEOUT_S <= took < CONNECT_TIMEOUT_S + START_UP_S
    assert not storage.exists()


@pytest.mark.parametrize("after_s", [0.0, 3.0])
def test_sigterm_while_a_cluster_is_tried_exits_130_at_once(tmp_path, sweep, silent_port, after_s):
    """Right after the TCP probe reached the port (the driver is about to call ray.init), or seconds
    into ray.init, which waits inside Ray's C++ client."""
    address = f"127.0.0.1:{silent_port.getsockname()[1]}"
    storage = tmp_path / "results"
    driver = start(sweep, storage, address, tmp_path)
    try:
        silent_port.settimeout(START_UP_S)
        silent_port.accept()[0].close()  # the probe's connection
        time.sleep(after_s)
        assert driver.poll() is None
        driver.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code, err = finish(driver, timeout=10)
    finally:
        driver.kill()
    assert time.monotonic() - sent < 5
    assert code == 130, err
    assert err.splitlines()[-1] == RERUN_LINE
    assert "Traceback" not in err
    assert not storage.exists()


def test_sigterm_while_the_local_ray_starts_exits_130_with_the_rerun_line(tmp_path, sweep, ray_tmp):
    storage = tmp_path / "results"
    driver = start(sweep, storage, "", tmp_path, RAY_TMPDIR=ray_tmp)
    try:
        wait_until(lambda: glob.glob(os.path.join(ray_tmp, "ray", "session_*")), timeout=60, interval=0.02,
                   what="the local Ray's session folder")
        driver.send_signal(signal.SIGTERM)
        code, err = finish(driver, timeout=30)
    finally:
        driver.kill()
    assert code == 130, err
    assert err.splitlines() == [RERUN_LINE]
