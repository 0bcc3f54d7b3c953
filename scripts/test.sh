#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: GoogleTest and pytest under ctest, then a
# short seeded run of each parser fuzz target (clang, libFuzzer, ASan/UBSan).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
bash scripts/fuzz.sh
