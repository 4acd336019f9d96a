"""The project uses only public Ray APIs: no module imports or touches an underscore name of Ray.

Scans the source with ``ast`` (nothing is imported): every ``import ray...`` / ``from ray...``,
every attribute reached from a name bound to Ray, and every keyword argument of a call on
such a name. Tune's internal modules (``ray.tune.execution``, ``ray.tune.search.basic_variant``,
``ray.train._internal`` ...) are refused by name too, as are strings naming private modules.
"""

from __future__ import annotations

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROJECT_DIRS = ("agents", "envs", "orchestrator", "analysis", "bench", "docker")
INTERNAL_MODULES = ("ray.tune.execution", "ray.tune.search.basic_variant", "ray.tune.impl", "ray.air._internal",
                    "ray.train._internal", "ray._private", "ray._raylet", "ray.tune.experiment")


def project_files() -> list[str]:
    found = []
    for top in PROJECT_DIRS:
        for folder, _, names in os.walk(os.path.join(REPO, top)):
            found += [os.path.join(folder, n) for n in names if n.endswith(".py")]
    return sorted(found)


def private_ray_uses(source: str) -> list[str]:
    """``["line N: what"]`` for every private Ray name the source imports or touches."""
    tree = ast.parse(source)
    ray_names: set[str] = set()
    found = []

    def private_module(module: str) -> bool:
        parts = module.split(".")
        return parts[0] == "ray" and (any(p.startswith("_") for p in parts)
                                      or any(module == m or module.startswith(m + ".") for m in INTERNAL_MODULES))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ray":
                    ray_names.add((alias.asname or alias.name).split(".")[0])
                    if private_module(alias.name):
                        found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ray":
            if private_module(node.module):
                found.append(f"line {node.lineno}: from {node.module} import ...")
            for alias in node.names:
                ray_names.add(alias.asname or alias.name)
                if alias.name.startswith("_"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and private_module(node.value.strip()):
            found.append(f"line {node.lineno}: names {node.value!r}")

    def rooted_in_ray(node: ast.AST) -> bool:
        while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
            node = node.value if not isinstance(node, ast.Call) else node.func
        return isinstance(node, ast.Name) and node.id in ray_names

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                and rooted_in_ray(node.value):
            found.append(f"line {node.lineno}: .{node.attr}")
        if isinstance(node, ast.Call) and rooted_in_ray(node.func):
            found += [f"line {node.lineno}: {k.arg}=" for k in node.keywords if k.arg and k.arg.startswith("_")]
    return found


@pytest.mark.parametrize("snippet", [
    "import ray\nray.init(_system_config={})",
    "from ray.tune.search.basic_variant import BasicVariantGenerator",
    "from ray.tune.search.basic_variant import _TrialIterator",
    "from ray.tune.execution.tune_controller import TuneController",
    "from ray import tune\ntuner = tune.Tuner.restore('x')\ntune.Tuner.restore('x')._local_tuner",
    "import ray._private.worker",
    "import ray.cloudprofile as cp\nimport ray\nray.cloudpickle._x",
])
def test_the_scan_catches_private_names(snippet):
    assert private_ray_uses(snippet)


def test_no_project_module_touches_a_private_ray_name():
    offenders = {}
    for path in project_files():
        with open(path) as f:
            uses = private_ray_uses(f.read())
        if uses:
            offenders[os.path.relpath(path, REPO)] = uses
    assert offenders == {}
