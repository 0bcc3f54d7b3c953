#!/usr/bin/env bash
# Installs what graft needs to build and test on Debian 12, and nothing that is already there.
# Debian: compiler tool chain, CMake, Ninja, ccache, GoogleTest, Eigen, nlohmann/json, CLI11, clang
# (for the fuzz targets), clang-format (scripts/lint.sh). PyPI: torch==2.13.0 only when no torch
# imports (any torch >= 2.11 already installed is used as it is), then the pinned test requirements
# (ruff among them).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(build-essential cmake ninja-build ccache libgtest-dev libgmock-dev libeigen3-dev
                 nlohmann-json3-dev libcli11-dev clang libclang-rt-14-dev clang-format)
missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "graft: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "graft: installing torch==2.13.0 (CPU build)"
  "$PYTHON" -m pip install -q torch==2.13.0
fi
if ! "$PYTHON" - <<'PY' 2>/dev/null
import importlib.metadata as m, sys
wanted = {"pytest": None, "numpy": None, "transformers": "5.17.0", "tokenizers": "0.23.3", "safetensors": None,
          "nbclient": None, "nbformat": None, "ipykernel": None, "matplotlib": None, "ruff": "0.17.6"}
for name, version in wanted.items():
    have = m.version(name)
    if version and have != version:
        sys.exit(1)
PY
then
  echo "graft: installing Python test requirements"
  # --no-build-isolation and the torch already present: nothing here may resolve another torch.
  "$PYTHON" -m pip install -q --no-build-isolation -r requirements-dev.txt
fi
