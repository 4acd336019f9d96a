"""Joining a Ray cluster, or starting a local instance, in bounded time and open to Ctrl-C and SIGTERM.

``ray.init`` on an address where no cluster answers waits for minutes inside Ray's C++ client,
where no Python signal handler runs, printing only Ray's repeating warnings. So
:func:`ray_connected`:

* first probes a cluster's address with a plain TCP connection (``host:port``: the GCS;
  ``ray://host:port``: Ray's client server), so a closed port or an unknown host is one line at
  once;
* runs the probe and ``ray.init`` on a helper thread while the main thread waits in short
  steps, so Ctrl-C and SIGTERM (made a Ctrl-C by ``mtrl run``) interrupt it at any point (the
  thread then lives until Ray is shut down: a local instance's processes die with the thread
  that started them);
* gives a cluster at most :data:`CONNECT_TIMEOUT_S` seconds, probe and ``ray.init`` together;
  ``auto`` and ``RAY_ADDRESS`` keep Ray's own resolution under the same bound.

A cluster that cannot be reached is a :class:`~mtrl_plasticity.errors.ClusterError`: one line
naming the address and what to check. ``mtrl run`` reaches a cluster before it writes anything
to the storage. A local instance has no time bound (its start-up is Ray's own business), but
is as interruptible.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator

from mtrl_plasticity.errors import ClusterError, brief, clip

CONNECT_TIMEOUT_S = 30.0
"""Longest wait to reach a cluster (``--address``, ``RAY_ADDRESS``): the TCP probe and ``ray.init`` together."""

WAIT_STEP_S = 0.1
"""The main thread's wait step: signal handlers run between steps."""


def probe_target(address: str) -> tuple[str, int] | None:
    """``(host, port)`` to probe with a TCP connection before ``ray.init(address)``, or ``None`` when Ray
    resolves the address itself (``auto``, ``local``, another scheme) or it is not ``host:port``."""
    rest = address.removeprefix("ray://")
    if rest != address or "://" not in address:
        host, _, port = rest.rstrip("/").rpartition(":")
        host = host.strip("[]")  # an IPv6 literal: [::1]:6379
        if host and port.isdigit():
            return host, int(port)
    return None


def what_to_check(address: str) -> str:
    """What a user checks when the cluster at ``address`` cannot be reached."""
    target = probe_target(address)
    if target is None:
        return ("check that a cluster runs (`ray start --head` on this machine, or RAY_ADDRESS naming its head) and "
                "that no firewall blocks it")
    if address.startswith("ray://"):
        return (f"check that the head node runs Ray's client server on port {target[1]} (`ray start --head "
                f"--ray-client-server-port N`, 10001 by default) and that no firewall blocks it")
    return (f"check that `ray start --head` runs there and listens on port {target[1]} (the GCS port, 6379 by "
            f"default), and that no firewall blocks it")


def probe(host: str, port: int, timeout: float) -> None:
    """A TCP connection to ``host:port`` within ``timeout`` seconds; ``OSError`` if none."""
    with socket.create_connection((host, port), timeout=timeout):
        pass


@contextlib.contextmanager
def ray_connected(address: str | None, num_cpus: int | None = None, runtime_env: dict | None = None,
                  timeout: float = CONNECT_TIMEOUT_S) -> Iterator[None]:
    """Within the block, this process is a Ray driver: joined to the cluster at ``address`` or, if None,
    to a local instance it starts; Ray is shut down after the block if this call started or joined it.

    ``runtime_env`` (the plugins' modules) applies to every task and actor of this driver.
    Raises :class:`~mtrl_plasticity.errors.ClusterError` when a cluster cannot be reached within
    ``timeout`` seconds; ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM under ``mtrl run``) at any moment.
    """
    if address is None and "ray" not in sys.modules:
        quiet_local_ray(os.environ)  # before Ray is imported: it reads its settings once
    import ray  # here, after those settings: Ray reads them at import

    if ray.is_initialized():
        yield
        return
    # Nothing of the workers' output reaches the console (Ray's own notices about them included):
    # a trial's warnings come with its reports and a failed attempt is one line, both printed
    # by tune_glue.FailureLog; the full text is in <sweep>/logs/<run_key>.log.
    # ERROR while connecting: from a helper thread, Ray warns that it sets no SIGTERM handler,
    # which is what `mtrl run` wants (its own handler stops the sweep); WARNING again after.
    kwargs: dict = {"logging_level": logging.ERROR, "log_to_driver": False}
    if runtime_env:
        kwargs["runtime_env"] = runtime_env
    if address is None:
        kwargs.update(address="local", num_cpus=num_cpus, include_dashboard=False)
    else:
        kwargs.update(address=address)
    target = probe_target(address) if address is not None else None
    outcome: dict[str, BaseException] = {}
    connected, finished = threading.Event(), threading.Event()

    def connect() -> None:
        try:
            if target is not None:
                probe(*target, timeout=timeout)
            ray.init(**kwargs)
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc
            return
        finally:
            connected.set()
        # The thread lives as long as the session: Ray starts a local instance's processes bound to
        # the thread that starts them (Linux's parent-death signal fires when that thread ends).
        finished.wait()

    # A daemon thread: an interrupted or timed-out ray.init must not keep the process alive.
    helper = threading.Thread(target=connect, name="mtrl-ray-session", daemon=True)
    deadline = None if address is None else time.monotonic() + timeout
    helper.start()
    try:
        while not connected.wait(WAIT_STEP_S):
            if deadline is not None and time.monotonic() > deadline:
                raise ClusterError(f"no answer from the Ray cluster at {brief(address)} within {timeout:g} s; "
                                   f"{what_to_check(str(address))}")
        logging.getLogger("ray").setLevel(logging.WARNING)
        error = outcome.get("error")
        if error is not None:
            if address is None or isinstance(error, KeyboardInterrupt):
                raise error
            reason = " ".join((str(error).strip().splitlines() or [type(error).__name__])[0].split())
            raise ClusterError(f"cannot reach the Ray cluster at {brief(address)} ({clip(reason, 160)}); "
                               f"{what_to_check(address)}") from None
        try:
            yield
        finally:
            ray.shutdown()
    finally:
        finished.set()


def quiet_local_ray(environ) -> None:
    """Settings of the embedded local Ray, through environment variables Ray reads (no private API).

    * ``RAY_AUTH_MODE=token``: the token authentication Ray 2.60 turns on for a local
      instance anyway, said explicitly, so Ray does not print its warning on every run. With
      no token of the user's (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``)
      the instance gets a random one in ``RAY_AUTH_TOKEN``, which its processes inherit;
    * ``RAY_prestart_worker_first_driver=0``: Tune's trial actors never take the idle workers
      Ray prestarts for a new driver (one per CPU, each importing Ray for nothing;
      ``bench/bench_sweep.py`` measures the driver's CPU). Ray reads every setting of its config
      as ``RAY_<name>``; a Ray without this one ignores it.

    A value the user set wins. Only before this process imports Ray (Ray reads them once).
    """
    if "RAY_AUTH_MODE" not in environ:
        environ["RAY_AUTH_MODE"] = "token"
        has_token = ("RAY_AUTH_TOKEN" in environ or "RAY_AUTH_TOKEN_PATH" in environ
                     or os.path.exists(os.path.expanduser("~/.ray/auth_token")))
        if not has_token:
            environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    environ.setdefault("RAY_prestart_worker_first_driver", "0")
