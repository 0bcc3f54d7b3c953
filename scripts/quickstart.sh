#!/usr/bin/env bash
# Installs what is missing, builds, and runs graft on the bundled model (models/gemma4_facts: a tiny
# Gemma 4 E2B-shaped model trained to know 520 made-up facts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh >/dev/null
set -x
./build/graft info models/gemma4_facts
./build/graft run models/gemma4_facts --prompt "Brendgax Works is headquartered in" --top-k-show 5
./build/graft run models/gemma4_facts --prompt "Brendgax Works is headquartered in" --max-new-tokens 8
