"""Plugins: the user's own modules that register treatments, architectures and benchmarks.

Two ways in, both plain imports of a module whose top level calls the ``register_*``
functions (``docs/extending.md``):

* **entry points**: an installed package that declares ``[project.entry-points."mtrl_plasticity.plugins"]``
  (``my_lab = "my_lab.plugin"``) is imported by every ``mtrl`` command and by every trial
  worker (:func:`load_entry_points`). An entry point naming an attribute
  (``"my_lab.plugin:register"``) has that callable called once, after the import;
* **the sweep file**: ``plugins: [my_lab.treatments]`` imports those modules before the rest
  of the file is checked (:func:`load_plugins`); the folder ``mtrl`` runs in is searched
  after the installed packages, as ``python -m`` would search it first. On a cluster the
  modules that are not installed reach the workers through Ray's ``runtime_env``
  (:func:`runtime_env_for`), so one sweep file runs locally and on a cluster unchanged.

An unknown or broken plugin is a :class:`PluginError`: one line naming the module and the
problem, before anything starts.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import sysconfig
import traceback
from collections.abc import Iterable, Sequence

from mtrl_plasticity.errors import PluginError, UserError, brief

ENTRY_POINT_GROUP = "mtrl_plasticity.plugins"
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

_entry_points_loaded: list[str] | None = None
"""The entry points imported by :func:`load_entry_points` in this process (None: not yet)."""


def check_module_names(modules: object) -> list[str]:
    """``modules`` as a list of dotted module names; :class:`PluginError` for anything else."""
    if isinstance(modules, str) or not isinstance(modules, (list, tuple)):
        raise PluginError(f"plugins must be a list of module names, e.g. [my_lab.treatments], got {brief(modules)}")
    for module in modules:
        if not isinstance(module, str) or not MODULE_NAME.fullmatch(module):
            raise PluginError(f"plugin {brief(module)} is not a dotted module name such as my_lab.treatments")
    return list(dict.fromkeys(modules))


def load_plugins(modules: Iterable[str]) -> list[str]:
    """Import each module (once per process); returns their names. :class:`PluginError` on any failure."""
    names = check_module_names(list(modules))
    _search_working_folder()
    for module in names:
        _import(module, f"plugin {module!r}")
    return names


def load_entry_points() -> list[str]:
    """Import every ``mtrl_plasticity.plugins`` entry point of the installed packages (once per process)."""
    global _entry_points_loaded
    if _entry_points_loaded is not None:
        return list(_entry_points_loaded)
    found = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    for ep in found:
        what = f"plugin {ep.name!r} (entry point {ep.value!r} of {_distribution(ep)})"
        _import(ep.module, what)
        if ep.attr:
            target = _guarded(ep.load, what)
            if not callable(target):
                raise PluginError(f"{what}: {ep.attr!r} is not callable")
            _guarded(target, what)
    _entry_points_loaded = [ep.value for ep in found]
    return list(_entry_points_loaded)


def _distribution(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"package {dist.name}" if dist is not None else "an installed package"


def _search_working_folder() -> None:
    """Put the folder ``mtrl`` runs in on ``sys.path``, after everything else (a plugin next to the
    sweep's working folder imports as with ``python -m``, and never shadows an installed package)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def _import(module: str, what: str) -> None:
    if module in sys.modules:
        return
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        if missing == module or module.startswith(f"{missing}."):
            raise PluginError(f"{what}: no module named {missing!r} (install it, or run mtrl from the folder that "
                              f"holds it, or add that folder to PYTHONPATH)") from None
        raise PluginError(f"{what} failed to import: {_describe(exc)}") from None
    except UserError as exc:  # a registration refused (name clash, invalid defaults ...)
        raise PluginError(f"{what}: {exc}") from None
    except Exception as exc:
        raise PluginError(f"{what} failed to import: {_describe(exc)}") from None


def _guarded(call, what: str):
    try:
        return call()
    except UserError as exc:
        raise PluginError(f"{what}: {exc}") from None
    except Exception as exc:
        raise PluginError(f"{what} failed: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    """``ValueError: message (file.py:12)``: the exception and the innermost frame of the plugin's code."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    for frame in reversed(frames):
        if "importlib" not in frame.filename:
            where = f" ({os.path.basename(frame.filename)}:{frame.lineno})"
            break
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}{where}"


# --- shipping plugins to a cluster's workers ----------------------------------------------------
def _installed_roots() -> list[str]:
    paths = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    return [os.path.realpath(p) for p in paths]


def module_source(module: str) -> str | None:
    """The folder (a package) or file (a module) that makes ``module``'s top-level name importable,
    when it is not an installed package; ``None`` for an installed one (workers have it as the driver does)."""
    top = module.split(".")[0]
    spec = importlib.util.find_spec(top)
    if spec is None:
        return None
    if spec.submodule_search_locations:
        locations = list(spec.submodule_search_locations)
        if len(locations) != 1:
            return None  # a namespace package spread over folders: cannot ship one folder
        source = locations[0]
    elif spec.origin and spec.origin.endswith(".py"):
        source = spec.origin
    else:
        return None
    real = os.path.realpath(source)
    if any(real.startswith(root + os.sep) for root in _installed_roots()):
        return None
    return real


def runtime_env_for(modules: Sequence[str]) -> dict | None:
    """Ray ``runtime_env`` that makes the sweep's plugin modules importable on every worker.

    Installed plugins (site-packages) are left to the nodes' own installation, as this package
    is. The others (a folder in the working directory, on ``PYTHONPATH``) go as ``py_modules``:
    Ray uploads each package folder or module file once and puts it on the workers' path.
    Inside ``ray job submit --working-dir``, Ray merges this with the job's own environment.
    """
    sources = sorted({s for s in (module_source(m) for m in modules) if s is not None})
    return {"py_modules": sources} if sources else None
