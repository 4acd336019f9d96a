"""Helpers for the Ray integration tests: tiny sweeps, Parquet checks, process cleanup."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator

import pandas as pd
import pyarrow.parquet as pq
import yaml

from orchestrator import estimate, schema
from orchestrator.config import TrialConfig
from orchestrator.spec import expand, load_spec
from testkit.spec import tiny_spec_data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWEEPS = os.path.join(REPO, "sweeps")


def tiny_sweep(path, name: str, seeds: int = 2, total_steps: int = 600, **changes) -> str:
    """Write a sweep of Empty-5x5 single-task trials (a few CPU-seconds each); returns its path."""
    data = tiny_spec_data(name, seeds=seeds, max_failures=2)
    data["defaults"]["total_steps"] = total_steps
    data.update(changes)
    with open(path, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return str(path)


def trials_of(sweep_file: str) -> list[TrialConfig]:
    return expand(load_spec(sweep_file))


def read_dataset(sweep_root: str, dataset: str) -> pd.DataFrame:
    """Every row of a dataset (all files, no deduplication), deterministic columns, sorted."""
    directory = os.path.join(sweep_root, schema.EVALS_DIR if dataset == "evals" else schema.TRAIN_DIR)
    frames = []
    for folder, _, names in os.walk(directory):
        for name in sorted(names):
            if name.endswith(".parquet") and not name.startswith("."):
                frames.append(pq.read_table(os.path.join(folder, name)).to_pandas())
    frame = pd.concat(frames, ignore_index=True)
    keys = list(schema.EVAL_KEYS if dataset == "evals" else schema.TRAIN_KEYS)
    frame = frame[schema.deterministic_columns(frame.columns)]
    return frame.sort_values(keys).reset_index(drop=True)


def assert_rows_exactly_once(sweep_root: str, trials: Iterable[TrialConfig]) -> None:
    """Exactly the expected rows: trials x evaluation points x tasks, and one per epoch; no duplicates."""
    trials = list(trials)
    evals, train = read_dataset(sweep_root, "evals"), read_dataset(sweep_root, "train")
    expected_evals = sum(estimate.expected_rows(t)[0] for t in trials)
    expected_train = sum(estimate.expected_rows(t)[1] for t in trials)
    assert not evals.duplicated(list(schema.EVAL_KEYS)).any()
    assert not train.duplicated(list(schema.TRAIN_KEYS)).any()
    assert (len(evals), len(train)) == (expected_evals, expected_train)
    assert set(evals["run_key"]) == set(train["run_key"]) == {t.run_key for t in trials}


def parquet_files(sweep_root: str) -> dict[str, tuple[int, bytes]]:
    """``{path: (mtime_ns, bytes)}`` of every Parquet file of a sweep."""
    out = {}
    for folder, _, names in os.walk(os.path.join(sweep_root, "metrics")):
        for name in names:
            path = os.path.join(folder, name)
            out[path] = (os.stat(path).st_mtime_ns, open(path, "rb").read())
    return out


def compacted_run_keys(sweep_root: str) -> set[str]:
    """Trials whose Parquet is complete (compacted train file, no segment left)."""
    done, segments = set(), set()
    for _, _, names in os.walk(os.path.join(sweep_root, schema.TRAIN_DIR)):
        for name in names:
            if name.endswith(".parquet") and not name.startswith("."):
                (segments if "__" in name else done).add(name.split("__")[0].removesuffix(".parquet"))
    return done - segments


def checkpointed_run_keys(sweep_root: str) -> set[str]:
    """Trials with at least one checkpoint in the sweep folder (``checkpoints/<run_key>/step-*.pt``)."""
    checkpoints = os.path.join(sweep_root, "checkpoints")
    if not os.path.isdir(checkpoints):
        return set()
    return {name for name in os.listdir(checkpoints)
            if any(c.startswith("step-") and c.endswith(".pt") for c in os.listdir(os.path.join(checkpoints, name)))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mtrl_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "analysis.cli", *args]


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _process_table() -> dict[int, tuple[int, str]]:
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        table[int(entry)] = (ppid, cmdline)
    return table


def kill_ray_processes(*marks: str) -> None:
    """Stop the Ray processes a test started: those whose command line holds one of ``marks``
    (the test's own temp dir or port), and their descendants. Never ``ray stop``: that would
    stop every Ray instance on the machine."""
    table = _process_table()
    own = os.getpid()
    found = {pid for pid, (_, cmd) in table.items() if pid != own and any(m in cmd for m in marks)}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in table.items() if ppid in found and pid not in found}
        found |= children
        grew = bool(children)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in found:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        if sig == signal.SIGTERM:
            time.sleep(2)


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env


def run_and_log(cmd: list[str], log_path, env: dict, timeout: float, cwd=REPO) -> subprocess.CompletedProcess:
    with open(log_path, "w") as log:
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, timeout=timeout)


@contextlib.contextmanager
def ray_head(log_dir, cwd=REPO, **extra_env: str) -> Iterator[dict]:
    """A one-node Ray cluster started like a real head (`ray start --head`, loopback, free ports)
    from ``cwd``, whose workers then start there; its processes are stopped afterwards.

    Yields ``dashboard`` (the address for `ray job submit`), ``gcs`` (for `ray.init`/`--address`)
    and ``env``: the environment it was started with (HOME under ``log_dir``, ``extra_env``),
    for the commands that talk to it.
    """
    temp_dir = f"/tmp/mtrl-head-{uuid.uuid4().hex[:8]}"
    ports = {name: free_port() for name in ("gcs", "dashboard", "client", "agent_http", "agent_grpc",
                                            "runtime_env", "metrics")}
    home = os.path.join(os.fspath(log_dir), "head-home")
    os.makedirs(home, exist_ok=True)
    # A loopback test cluster: token authentication off, so the CLI needs no token file.
    env = subprocess_env(RAY_AUTH_MODE="disabled", HOME=home, **extra_env)
    command = ["ray", "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(ports["gcs"]),
               "--num-cpus", "2", "--temp-dir", temp_dir, "--include-dashboard", "true",
               "--dashboard-host", "127.0.0.1", "--dashboard-port", str(ports["dashboard"]),
               "--ray-client-server-port", str(ports["client"]),
               "--dashboard-agent-listen-port", str(ports["agent_http"]),
               "--dashboard-agent-grpc-port", str(ports["agent_grpc"]),
               "--runtime-env-agent-port", str(ports["runtime_env"]),
               "--metrics-export-port", str(ports["metrics"]), "--disable-usage-stats"]
    log = os.path.join(os.fspath(log_dir), "ray-start.log")
    try:
        started = run_and_log(command, log, env, timeout=180, cwd=cwd)
        assert started.returncode == 0, open(log).read()[-3000:]
        yield {"dashboard": f"http://127.0.0.1:{ports['dashboard']}", "gcs": f"127.0.0.1:{ports['gcs']}", "env": env}
    finally:
        kill_ray_processes(temp_dir, f":{ports['gcs']}")
        shutil.rmtree(temp_dir, ignore_errors=True)
