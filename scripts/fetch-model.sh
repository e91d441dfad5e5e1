#!/usr/bin/env bash
# Download an OpenAI GPT-2 checkpoint from the HuggingFace hub in the layout `nexplain collect
# --model DIR` reads: config.json, model.safetensors, and the tokenizer (vocab.json, merges.txt).
#
#   scripts/fetch-model.sh NAME [DEST]
#     NAME  gpt2 | gpt2-medium | gpt2-large | gpt2-xl  (openai-community/NAME is accepted too)
#     DEST  target directory (default: models/NAME)
#
# Downloads go to FILE.partial and are resumed (curl -C -) when rerun after an interruption;
# a file is renamed into place only when complete and, for model.safetensors, only when its
# sha256 matches. The expected sha256 comes from the table below where we have it, otherwise
# from the hub's own record: an LFS file's `x-linked-etag` response header is its sha256 (the
# LFS object id). A mismatch, or no way to know the expected value, is an error.
#
# Environment: HF_ENDPOINT (default https://huggingface.co), HF_REVISION (default main),
# HF_TOKEN (sent as a bearer token when set), NEXPLAIN_MODEL_SHA256 (override the expected hash).
set -euo pipefail

usage() {  # usage EXIT-CODE: print the header comment's synopsis
  sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
  exit "$1"
}

[[ $# -ge 1 && $# -le 2 ]] || usage 2
if [[ "$1" == -h || "$1" == --help ]]; then usage 0; fi
NAME=${1#openai-community/}
case "$NAME" in
  gpt2 | gpt2-medium | gpt2-large | gpt2-xl) ;;
  *) echo "fetch-model: unknown model '$1' (expected gpt2, gpt2-medium, gpt2-large or gpt2-xl)" >&2; exit 2 ;;
esac
DEST=${2:-models/$NAME}
ENDPOINT=${HF_ENDPOINT:-https://huggingface.co}
REVISION=${HF_REVISION:-main}
BASE="$ENDPOINT/openai-community/$NAME/resolve/$REVISION"

# sha256 of model.safetensors, where independently confirmed (openai-community/gpt2 at revision
# 607a30d783dfa663caf39e06633721c8d4cfcd7e, 548,105,171 bytes). The other sizes are checked
# against the hub's x-linked-etag.
declare -A KNOWN_SHA256=(
  [gpt2]=248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707
)

for tool in curl sha256sum; do
  command -v "$tool" >/dev/null || { echo "fetch-model: '$tool' is required" >&2; exit 1; }
done

CURL=(curl --fail --retry 5 --retry-delay 5 --connect-timeout 30)
if [[ -n "${HF_TOKEN:-}" ]]; then CURL+=(--header "Authorization: Bearer $HF_TOKEN"); fi

mkdir -p "$DEST"

fetch() {  # fetch FILE: download $BASE/FILE to $DEST/FILE via FILE.partial, resuming
  local file=$1 out="$DEST/$1"
  if [[ -s "$out" ]]; then
    echo "fetch-model: $out exists, skipping download"
    return
  fi
  echo "fetch-model: $BASE/$file -> $out"
  "${CURL[@]}" --location --continue-at - --output "$out.partial" "$BASE/$file"
  mv -f "$out.partial" "$out"
}

# The hub's record of an LFS file, from the headers of its (not followed) redirect:
# x-linked-etag is the sha256, x-linked-size the byte count.
hub_header() {  # hub_header FILE HEADER-NAME
  "${CURL[@]}" --silent --head "$BASE/$1" 2>/dev/null | tr -d '\r' |
    awk -v h="$(printf '%s' "$2" | tr '[:upper:]' '[:lower:]'):" 'tolower($1) == h { v = $2 } END { print v }' |
    tr -d '"' | sed 's/^W\///' || true
}

fetch_model() {
  local out="$DEST/model.safetensors" expected hub size actual target
  hub=$(hub_header model.safetensors x-linked-etag)
  size=$(hub_header model.safetensors x-linked-size)
  expected=${NEXPLAIN_MODEL_SHA256:-${KNOWN_SHA256[$NAME]:-}}
  if [[ -z "$expected" ]]; then
    expected=$hub
  elif [[ -n "$hub" && "$hub" != "$expected" ]]; then
    echo "fetch-model: warning: the hub reports sha256 $hub for $NAME/model.safetensors at '$REVISION'," \
         "but $expected is expected; checking against $expected" >&2
  fi
  if [[ ! "$expected" =~ ^[0-9a-f]{64}$ ]]; then
    echo "fetch-model: cannot verify model.safetensors: no known sha256 for $NAME and the hub sent no" \
         "x-linked-etag header; set NEXPLAIN_MODEL_SHA256 to the expected value" >&2
    exit 1
  fi

  if [[ -s "$out" ]]; then
    target=$out  # present from an earlier run: verify it again, cheaply enough
  else
    target="$out.partial"
    echo "fetch-model: $BASE/model.safetensors -> $out"
    # Rerunning on a complete .partial makes the server answer 416 (nothing left to send):
    # accept that when the size matches the hub's and let the checksum decide.
    if ! "${CURL[@]}" --location --continue-at - --output "$target" "$BASE/model.safetensors"; then
      if [[ -n "$size" && -f "$target" && $(stat -c %s "$target") == "$size" ]]; then
        echo "fetch-model: $target is already complete ($size bytes)"
      else
        echo "fetch-model: download of $BASE/model.safetensors failed; rerun to resume from $target" >&2
        exit 1
      fi
    fi
  fi
  echo "fetch-model: checking sha256 of $target"
  actual=$(sha256sum "$target" | cut -d' ' -f1)
  if [[ "$actual" != "$expected" ]]; then
    # Keep the bytes for inspection but out of the way, so a rerun downloads afresh.
    mv -f "$target" "$out.bad"
    echo "fetch-model: $target: sha256 $actual does not match the expected $expected (moved to $out.bad)" >&2
    exit 1
  fi
  [[ "$target" == "$out" ]] || mv -f "$target" "$out"
  echo "fetch-model: sha256 ok ($actual)"
}

fetch config.json
fetch vocab.json
fetch merges.txt
fetch_model
echo "fetch-model: $NAME ready in $DEST"
