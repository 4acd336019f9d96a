"""A real single-node SLURM for the tests, started from a temporary folder.

Nothing outside the folder is read or written: ``SLURM_CONF`` points every SLURM command at
its own ``slurm.conf``, an empty ``PlugStackConfig`` keeps /etc's SPANK plugins out, and
``auth/none`` + ``cred/none`` need no munge daemon. The daemons run in the foreground (``-D``)
as children of the test, so they are stopped by pid and never outlive it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from testkit.ray import free_port

COMMANDS = ("slurmctld", "slurmd", "sbatch", "srun", "scontrol", "sinfo")
# The node declares more CPUs than the machine has (config_overrides + OverSubscribe=FORCE):
# a test job with two tasks of two CPUs fits on a 2-core machine.
NODE_CPUS = 4


class SlurmUnavailable(RuntimeError):
    """SLURM could not be started on this machine; the message says why."""


def slurm_conf(root: str, host: str, ctld_port: int, slurmd_port: int) -> str:
    return f"""\
ClusterName=mtrltest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
SlurmdParameters=config_overrides
PlugStackConfig={root}/plugstack.conf
KillWait=10
JobRequeue=1
NodeName={host} CPUs={NODE_CPUS} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
"""


def missing_commands() -> list[str]:
    return [name for name in COMMANDS if shutil.which(name) is None]


@contextmanager
def single_node_slurm(root: str, timeout: float = 60) -> Iterator[dict[str, str]]:
    """Start slurmctld + slurmd under ``root``; yields the environment SLURM commands need.

    Raises ``SlurmUnavailable`` with the reason (missing commands, a daemon that exits, a node
    that never becomes idle) and the daemons' log tails.
    """
    missing = missing_commands()
    if missing:
        raise SlurmUnavailable(f"SLURM commands not found: {', '.join(missing)} "
                               f"(apt-get install -y slurm-wlm; .ci/run does this as root)")
    for sub in ("state", "spool", "log"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    host = socket.gethostname().split(".")[0]
    conf = os.path.join(root, "slurm.conf")
    with open(conf, "w") as f:
        f.write(slurm_conf(root, host, free_port(), free_port()))
    open(os.path.join(root, "plugstack.conf"), "w").close()
    env = dict(os.environ, SLURM_CONF=conf)
    for name in [n for n in env if n.startswith(("SLURM_", "SBATCH_", "SRUN_")) and n != "SLURM_CONF"]:
        env.pop(name)  # a test run inside a SLURM job must not leak the outer job's settings
    daemons: list[subprocess.Popen] = []
    try:
        for command in (["slurmctld", "-D", "-i"], ["slurmd", "-D"]):
            log = open(os.path.join(root, "log", f"{command[0]}.stdout"), "w")
            daemons.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        _wait_for_idle_node(root, env, daemons, timeout)
        yield env
    finally:
        if daemons and daemons[0].poll() is None:
            subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True, timeout=30)
        for process in daemons:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for_idle_node(root: str, env: dict, daemons: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        for process in daemons:
            if process.poll() is not None:
                raise SlurmUnavailable(f"{process.args[0]} exited with {process.returncode}:\n{log_tails(root)}")
        shown = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
        state = shown.stdout.strip()
        if shown.returncode == 0 and state == "idle":
            return
        time.sleep(0.2)
    raise SlurmUnavailable(f"the node did not become idle in {timeout:.0f} s (sinfo: {state!r}):\n{log_tails(root)}")


def log_tails(root: str, chars: int = 1500) -> str:
    out = []
    log_dir = os.path.join(root, "log")
    for name in sorted(os.listdir(log_dir)) if os.path.isdir(log_dir) else []:
        text = open(os.path.join(log_dir, name), errors="replace").read()
        out.append(f"--- {name}\n{text[-chars:]}")
    return "\n".join(out)


def job_fields(job_id: str, env: dict) -> dict[str, str]:
    """``scontrol show job -o``'s fields of one job (JobState, Restarts, ExitCode, ...)."""
    shown = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True, text=True,
                           check=True)
    return dict(field.split("=", 1) for field in shown.stdout.split() if "=" in field)


def wait_for_job(job_id: str, env: dict, states: set[str], timeout: float, interval: float = 1.0) -> dict[str, str]:
    """Poll ``scontrol show job`` until the job's state is one of ``states``; its fields then."""
    deadline = time.monotonic() + timeout
    fields = {}
    while time.monotonic() < deadline:
        fields = job_fields(job_id, env)
        if fields.get("JobState") in states:
            return fields
        time.sleep(interval)
    raise TimeoutError(f"job {job_id} not in {sorted(states)} after {timeout:.0f} s: {fields.get('JobState')}")
