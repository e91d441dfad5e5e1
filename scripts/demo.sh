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
N="$BUILD/nexplain"
OUT=out/demo
mkdir -p "$OUT"
if [ -f jobs/demo.toml ] && "$N" sweep --help >/dev/null 2>&1; then
  exec "$N" sweep jobs/demo.toml --out "$OUT"
fi
# Until the sweep command exists: the stages that exist so far, by hand.
"$N" make-model --planted 'L0.N5=token:383;L1.N17=tokens:11,13;L0.N3=position:0-1' --out "$OUT/model"
"$N" tokenize /usr/share/common-licenses/* --out "$OUT/seqs.h5" --tokenizer data/gpt2-tokenizer
"$N" collect --model "$OUT/model" --corpus "$OUT/seqs.h5" --out "$OUT/records.h5"
"$N" inspect "$OUT/records.h5" 0/5 --tokenizer data/gpt2-tokenizer --top 3
"$N" inspect "$OUT/records.h5" 1/17 --tokenizer data/gpt2-tokenizer --top 3
