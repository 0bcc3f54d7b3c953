#!/usr/bin/env bash
# Builds the libFuzzer targets (safetensors header, config.json, tokenizer.json, patch files) with
# clang and runs each for a fixed number of inputs from its seed corpus with a fixed seed. FUZZ_RUNS
# overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_DIR=${FUZZ_DIR:-build-fuzz}
CC=clang CXX=clang++ cmake -S . -B "$FUZZ_DIR" -G Ninja -DGRAFT_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPython3_EXECUTABLE="$(command -v "${PYTHON:-python3}")" >/dev/null
cmake --build "$FUZZ_DIR" -j "$(nproc)"
ctest --test-dir "$FUZZ_DIR" --output-on-failure
