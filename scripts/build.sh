#!/usr/bin/env bash
# Configures and builds graft (Release, Ninja, ccache when present) into ${BUILD_DIR:-build}.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
PYTHON=${PYTHON:-python3}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$(command -v "$PYTHON")" "$@"
cmake --build "$BUILD_DIR" -j "$(nproc)"
