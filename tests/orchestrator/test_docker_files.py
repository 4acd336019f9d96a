"""docker/: cluster.yaml passes Ray's own cluster-config validation; the image pins what CI tests."""

from __future__ import annotations

import copy
import os
import re

import pytest
import yaml

from testkit.sweep import REPO

DOCKER = os.path.join(REPO, "docker")


def pins() -> dict[str, str]:
    out = {}
    for line in open(os.path.join(REPO, "constraints.txt")):
        if "==" in line and not line.startswith("#"):
            name, version = line.strip().split("==")
            out[name.lower()] = version
    return out


def prepared_cluster_config(config: dict) -> dict:
    """What `ray up` does before it calls the cloud: fill defaults, pick the provider, validate."""
    from ray.autoscaler._private.providers import _NODE_PROVIDERS
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    assert _NODE_PROVIDERS.get(prepared["provider"]["type"]) is not None
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_validation():
    config = yaml.safe_load(open(os.path.join(DOCKER, "cluster.yaml")))
    prepared = prepared_cluster_config(config)
    types = prepared["available_node_types"]
    assert set(types) == {"head", "cpu_worker", "gpu_worker"}
    assert prepared["head_node_type"] == "head"
    assert "worker_image" in types["gpu_worker"]["docker"]
    assert prepared["docker"]["image"] and "/mnt/shared:/mnt/shared" in " ".join(prepared["docker"]["run_options"])


def test_validation_catches_a_typo():
    import jsonschema

    config = yaml.safe_load(open(os.path.join(DOCKER, "cluster.yaml")))
    config["available_node_types"]["cpu_worker"]["max_wrkers"] = 3
    with pytest.raises(jsonschema.ValidationError, match="max_wrkers"):
        prepared_cluster_config(config)


def test_dockerfile_pins_the_tested_versions_and_installs_with_install_sh():
    text = open(os.path.join(DOCKER, "Dockerfile")).read()
    versions = pins()
    image = re.search(r"ARG RAY_IMAGE=rayproject/ray:(\S+)", text).group(1)
    assert image == f"{versions['ray']}-py311-cpu"
    assert "pip install" not in text  # every install step lives in install.sh, which CI runs
    runs = re.findall(r"^RUN (.*)$", text, flags=re.M)
    assert len(runs) == 2 and runs[0].endswith("docker/install.sh --torch-only") and "docker/install.sh" in runs[1]
    install = open(os.path.join(DOCKER, "install.sh")).read()
    # torch first, at constraints.txt's pin; then the project held to the same pins.
    torch_first = install.index("grep -E '^torch==' \"$root/constraints.txt\"")
    assert torch_first < install.index('-c "$root/constraints.txt" "$root"')
