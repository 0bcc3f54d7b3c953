#!/usr/bin/env bash
# Installs what is missing, builds, and runs graft's main job on the bundled model
# (models/gemma4_facts: a tiny Gemma 4 E2B-shaped model that knows 520 made-up facts): what it
# answers, where it keeps the fact, a ROME edit written as a patch, the patch applied to a copy on
# disk, reverted, and verified. The input model directory is never modified.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh >/dev/null
MODEL=models/gemma4_facts
WORK=build/quickstart
PROMPT="Bulcaplan Corp is headquartered in"
rm -rf "$WORK" && mkdir -p "$WORK"
set -x
./build/graft info "$MODEL"
./build/graft run "$MODEL" --prompt "$PROMPT" --top-k-show 3
./build/graft crown-scan "$MODEL" --prompt "{} is headquartered in" --subject "Bulcaplan Corp"
./build/graft stats "$MODEL" --corpus models/facts_corpus.txt --layers 0-2 -o "$WORK/stats.safetensors"
./build/graft edit "$MODEL" --method rome --requests models/demo_request.json --layers 0 --fact-token traced \
  --stats "$WORK/stats.safetensors" -o "$WORK/fix.graftpatch" --evaluate
./build/graft patch show "$WORK/fix.graftpatch"
./build/graft patch apply "$MODEL" "$WORK/fix.graftpatch" -o "$WORK/edited"
./build/graft run "$WORK/edited" --prompt "$PROMPT" --top-k-show 3
./build/graft patch verify "$WORK/edited" "$WORK/fix.graftpatch"
./build/graft patch revert "$WORK/edited" "$WORK/fix.graftpatch" -o "$WORK/reverted"
./build/graft run "$WORK/reverted" --prompt "$PROMPT" --top-k-show 3
