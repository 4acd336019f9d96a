"""The example plugin of ``tests/plugins/lab_plugin`` as the plugin tests use it: copies of it
where a user would keep it, sweeps that use its names, and the values its counter must hold.

The plugin registers ``lab_prune`` (variant ``lab_prune80``, counter ``weights_pruned``),
``lab_wide`` and ``LAB2`` (``DoorKey-5x5-v0``, ``Empty-5x5-v0``). Code here that needs those
names in this process registers them for a ``with`` block only (:func:`lab_plugin_registered`):
the rest of the suite sees the built-in registries unchanged.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pyarrow.parquet as pq
import yaml

from orchestrator import schema
from testkit.ray import REPO
from testkit.spec import tiny_spec_data

LAB_PLUGIN = os.path.join(REPO, "tests", "plugins", "lab_plugin")
"""The plugin's project folder (``pyproject.toml`` and the package ``mtrl_lab_plugin``)."""
PACKAGE = "mtrl_lab_plugin"
COUNTER = "weights_pruned"
COUNTER_COLUMN = schema.counter_column(COUNTER)
PRUNE_AT_STEP = 150
"""The sweeps prune at this step: between the train rows of steps 100 and 200."""
PRUNED_FRACTION = 0.8
"""What ``lab_prune80`` pins."""
WIDE_CHANNELS = (32, 64, 128)
"""``lab_wide``'s trunk (the plugin's ``WIDE_CHANNELS``), for the expected counts."""


def copy_package(folder) -> str:
    """Put the plugin package into ``folder`` as a user's working folder would hold it; returns its path."""
    target = os.path.join(os.fspath(folder), PACKAGE)
    shutil.copytree(os.path.join(LAB_PLUGIN, PACKAGE), target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def install_package(target) -> str:
    """``pip install --target`` the plugin project (from a copy: the build leaves files in its source);
    returns ``target``, a folder for ``PYTHONPATH`` holding the package and its entry point."""
    source = f"{os.fspath(target)}-src"
    shutil.copytree(LAB_PLUGIN, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "--disable-pip-version-check", "--quiet", "--target", os.fspath(target), source],
                   check=True, capture_output=True, timeout=300)
    return os.fspath(target)


def lab_sweep(path, name: str, plugins: bool = True, archs=("lab_wide", "mtppo"),
              treatments=("dense", "lab_prune80"), seeds: int = 1) -> str:
    """A sweep file of ``LAB2`` cells (400 steps, about a second each); ``lab_prune80`` prunes at
    :data:`PRUNE_AT_STEP`. ``plugins=False`` leaves the ``plugins:`` key out (entry points only)."""
    data = tiny_spec_data(name, seeds=seeds, benchmarks=["LAB2"], archs=list(archs),
                          treatments=[{t: {"at_step": PRUNE_AT_STEP}} if t.startswith("lab_prune") else t
                                      for t in treatments])
    data["defaults"]["eval_episodes"] = 1
    if plugins:
        data = {"name": name, "plugins": [PACKAGE], **data}
    with open(path, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return os.fspath(path)


@contextlib.contextmanager
def lab_plugin_registered() -> Iterator[None]:
    """The plugin's names registered in this process inside the block, and forgotten after it."""
    from mtrl_plasticity.architectures import ARCHITECTURES
    from mtrl_plasticity.benchmarks import BENCHMARK_REGISTRY, TASK_REGISTRY, unregister
    from mtrl_plasticity.treatments import TREATMENTS

    sys.path.insert(0, LAB_PLUGIN)
    try:
        __import__(PACKAGE)
        yield
    finally:
        sys.path.remove(LAB_PLUGIN)
        for registry in (TREATMENTS, ARCHITECTURES):
            for name in registry.names():
                if registry.owner(name).split(".")[0] == PACKAGE:
                    registry.remove(name)
        for registry in (BENCHMARK_REGISTRY, TASK_REGISTRY):
            for name in registry.names():
                if registry.owner(name).split(".")[0] == PACKAGE:
                    unregister(name)
        for module in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[module]


def weights_pruned(arch: str, n_tasks: int = 2) -> tuple[int, dict[str, float]]:
    """What ``lab_prune80`` prunes on ``arch`` (``lab_wide`` or ``mtppo``): the total count over
    actor and critic, and each network's resulting fraction of zero weights."""
    from agents.networks import N_ACTIONS, TRUNK_CHANNELS, SharedTrunkNetwork

    channels = WIDE_CHANNELS if arch == "lab_wide" else TRUNK_CHANNELS
    total, fractions = 0, {}
    for network_name, n_out in (("actor", N_ACTIONS), ("critic", 1)):
        network = SharedTrunkNetwork(n_tasks, n_out, channels=channels)
        sizes = [module.weight.numel() for module in network.weight_layers().values()]
        pruned = sum(int(PRUNED_FRACTION * n) for n in sizes)
        total += pruned
        fractions[network_name] = pruned / sum(sizes)
    return total, fractions


def assert_counter_column(root: str, prune_treatment: str = "lab_prune80") -> None:
    """The plugin's counter in the train rows: 0 before the pruning step and the exact count from it
    on, in ``prune_treatment``'s runs; absent from the other treatments' files and null in their
    rows as ``analysis.load_train`` unions them; the networks' sparsity is what was pruned."""
    from analysis.load import load_train

    train = load_train(root)
    assert COUNTER_COLUMN in train.columns
    pruned = train[train["treatment"] == prune_treatment]
    others = train[train["treatment"] != prune_treatment]
    assert len(pruned)
    for arch, rows in pruned.groupby("arch", observed=True):
        count, fractions = weights_pruned(str(arch))
        before = rows["step"] < PRUNE_AT_STEP
        assert before.any() and (~before).any()
        assert rows.loc[before, COUNTER_COLUMN].tolist() == [0.0] * int(before.sum())
        assert rows.loc[~before, COUNTER_COLUMN].tolist() == [float(count)] * int((~before).sum()), arch
        for network_name, fraction in fractions.items():
            # Every other weight is nonzero (a float drawn by the initialiser and moved by Adam).
            assert rows.loc[~before, f"sparsity/{network_name}"].tolist() == \
                [fraction] * int((~before).sum()), (arch, network_name)
        # The core counters are there as for every treatment, zero for this one.
        assert (rows[[schema.counter_column(c) for c in schema.CORE_COUNTERS]] == 0.0).all().all()
    assert others[COUNTER_COLUMN].isna().all()
    for folder, _, names in os.walk(os.path.join(root, schema.TRAIN_DIR)):
        for name in names:
            if name.endswith(".parquet"):
                written = pq.read_schema(os.path.join(folder, name)).names
                assert (COUNTER_COLUMN in written) == (f"treatment={prune_treatment}" in folder), folder
