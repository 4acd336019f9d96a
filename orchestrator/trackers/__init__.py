"""Live curves of a trial: TensorBoard (on by default), W&B and MLflow (opt in).

``trackers:`` in a sweep file (default ``[tensorboard]``, ``[]`` for none) or ``--tracker`` on
``mtrl run`` and ``mtrl trial`` choose them. Each runs in the trial's worker through the
library's own client (:mod:`.tensorboard`, :mod:`.wandb_tracker`, :mod:`.mlflow_tracker`),
called by ``run_trial`` through :class:`~orchestrator.trackers.base.TrackerSet`; the driver
only checks, before anything starts, that each one's package imports and that W&B and MLflow
have what they need to log in (:func:`check_trackers`). Tune's logger callbacks are not used:
they run in the driver, on Tune's ``training_iteration`` axis, which restarts at 1 in every
run and knows nothing of a trial's checkpoint step.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable, Iterator, Sequence

from mtrl_plasticity.errors import UserError, brief
from orchestrator.trackers.base import NO_TRACKERS, Tracker, TrackerRun, TrackerSet, stable_run_id
from orchestrator.trackers.mlflow_tracker import MlflowTracker
from orchestrator.trackers.tensorboard import TensorBoardTracker
from orchestrator.trackers.wandb_tracker import WandbTracker

__all__ = ["DEFAULT_TRACKERS", "NO_TRACKERS", "TRACKERS", "Tracker", "TrackerRun", "TrackerSet", "check_trackers",
           "open_trackers", "stable_run_id", "tracker_names"]

TRACKERS = ("tensorboard", "wandb", "mlflow")
DEFAULT_TRACKERS = ("tensorboard",)
NONE = "none"
"""``--tracker none``: no tracker at all."""

_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
_INSTALL = {"tensorboard": "pip install tensorboard (a dependency of mtrl-plasticity)",
            "wandb": "pip install 'mtrl-plasticity[trackers]'", "mlflow": "pip install 'mtrl-plasticity[trackers]'"}
_OFFLINE_WANDB_MODES = ("offline", "dryrun", "disabled")


def tracker_names(values: Sequence[str], where: str = "") -> list[str]:
    """The tracker names ``values`` asks for, checked: known names, each once (``none`` alone means none).

    :class:`UserError` (a ``ValueError``) naming ``where`` (e.g. ``--tracker``) otherwise.
    """
    names = list(values)
    prefix = f"{where}: " if where else ""
    if names == [NONE]:
        return []
    for name in names:
        if name not in TRACKERS:
            raise UserError(f"{prefix}unknown tracker {brief(name)}; choose from {', '.join(TRACKERS)} (or none)")
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise UserError(f"{prefix}tracker {duplicate!r} appears twice")
    return names


def check_trackers(names: Sequence[str]) -> None:
    """One line (:class:`UserError`) when a tracker cannot work here: its package is missing, W&B has
    no API key (outside offline mode), or MLflow cannot open its tracking store.

    The driver runs it before anything starts. TensorBoard's package is only looked up (importing
    it is the workers' business); W&B and MLflow are imported to ask their own clients.
    """
    for name in names:
        package = _PACKAGES[name]
        if not _importable(package):
            raise UserError(f"tracker {name} needs the {package} package, which is not installed: {_INSTALL[name]}")
        if name == "wandb":
            _check_wandb()
        elif name == "mlflow":
            _check_mlflow()


def _importable(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules (import blocked)
        return False


def _check_wandb() -> None:
    if os.environ.get("WANDB_MODE", "").lower() in _OFFLINE_WANDB_MODES:
        return
    try:
        import wandb  # the optional extra: only when a sweep asks for it
    except ImportError as exc:
        raise UserError(f"tracker wandb: the wandb package does not import ({exc})") from None
    # verify=False: no request to W&B here; prompt=False: never an interactive prompt in a sweep's driver.
    if not wandb.login(verify=False, prompt=False):
        raise UserError("tracker wandb: no W&B API key; set WANDB_API_KEY, run `wandb login`, or set "
                        "WANDB_MODE=offline (and `wandb sync` the runs later)")


@contextlib.contextmanager
def _unless_set(**defaults: str) -> Iterator[None]:
    """Environment defaults for the block, where the user set none (then restored)."""
    added = [k for k in defaults if k not in os.environ]
    os.environ.update({k: defaults[k] for k in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _check_mlflow() -> None:
    try:
        # the optional extra: only when a sweep asks for it
        import mlflow
        from mlflow import MlflowClient
    except ImportError as exc:
        raise UserError(f"tracker mlflow: the mlflow package does not import ({exc})") from None
    uri = mlflow.get_tracking_uri()
    # One quick try: MLflow's client otherwise retries an unreachable server for minutes.
    with _unless_set(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="20"):
        try:
            MlflowClient().search_experiments(max_results=1)
        except Exception as exc:
            first = " ".join(str(exc).split()).split(". ")[0][:300] or type(exc).__name__
            raise UserError(f"tracker mlflow: cannot use the tracking store {brief(uri)} ({first}); set "
                            f"MLFLOW_TRACKING_URI (and its credentials)") from None


_FACTORIES: dict[str, Callable[[TrackerRun], Tracker]] = {
    "tensorboard": TensorBoardTracker, "wandb": WandbTracker, "mlflow": MlflowTracker}
"""Each tracker's class; each imports its library only when a trial starts it."""


def open_trackers(names: Sequence[str], run: TrackerRun, warn: Callable[[str], None],
                  extra: Sequence[tuple[str, Tracker]] = ()) -> TrackerSet:
    """The :class:`TrackerSet` of one run of a trial: the named trackers, then ``extra`` (e.g. the progress record)."""
    return TrackerSet([*((name, _FACTORIES[name](run)) for name in names), *extra], warn)
