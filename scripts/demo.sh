#!/usr/bin/env bash
# The main job on the embedded default: install dependencies, build, then run the end-to-end
# demo on a planted GPT-2 over a corpus every Debian machine has. Outputs: out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
BUILD=${BUILD:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"${JOBS:-2}"
[ -f data/gpt2-tokenizer/encoder.json ] || [ -f data/gpt2-tokenizer/vocab.json ] || bash scripts/fetch-tokenizer.sh data/gpt2-tokenizer
# The whole pipeline on jobs/demo.toml; rerunning resumes (finished stages are skipped).
exec "$BUILD/nexplain" sweep jobs/demo.toml "$@"
