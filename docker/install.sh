#!/usr/bin/env bash
# Install this project with the tested versions into a Python environment. The image's
# install steps (docker/Dockerfile runs this script), and CI runs the same script in a fresh
# virtual environment (tests/integration/test_install_script.py).
#
#   docker/install.sh                                   # into python3's environment
#   PYTHON=/path/to/venv/bin/python docker/install.sh   # into that environment
#   docker/install.sh --torch-only                      # only torch (the image's cached layer)
#
# torch goes first and exactly at the version constraints.txt pins: any other version pulls
# several GB of CUDA wheels. TORCH_INDEX picks the index it comes from (the image: PyTorch's
# CPU index, or a CUDA one for the GPU image); unset, pip's configured index. Then the
# project, every dependency held to constraints.txt, and an import check.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
pip=("$python" -m pip install --no-cache-dir --disable-pip-version-check)

torch_pin="$(grep -E '^torch==' "$root/constraints.txt")"
index=()
if [ -n "${TORCH_INDEX:-}" ]; then
    index=(--index-url "$TORCH_INDEX")
fi
"${pip[@]}" "$torch_pin" "${index[@]}"
if [ "${1:-}" = "--torch-only" ]; then
    exit 0
fi

"${pip[@]}" -c "$root/constraints.txt" "$root"
"$python" - "$root/constraints.txt" <<'EOF'
import sys

import agents, analysis, envs, orchestrator  # noqa: F401  the four packages import
import ray
import torch

pins = dict(line.strip().split("==") for line in open(sys.argv[1]) if "==" in line and not line.startswith("#"))
found = {"torch": torch.__version__.split("+")[0], "ray": ray.__version__}
wrong = {name: version for name, version in found.items() if version != pins[name]}
if wrong:
    sys.exit(f"install.sh: installed {wrong}, constraints.txt pins {({n: pins[n] for n in wrong})}")
print(f"install.sh: mtrl-plasticity installed with torch {torch.__version__}, ray {ray.__version__}")
EOF
