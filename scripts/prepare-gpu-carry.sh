#!/usr/bin/env bash
# Prepares the git-ignored .gpu/ folder that scripts/gpu-check.sh needs on the GPU machine,
# which lacks PCRE2's development files and has no ../shared: Debian's PCRE2 packages unpacked
# (dpkg -x, nothing installed) and a copy of the fixtures the gpu tests read.
# Run here (Debian, network to the archive), then call the device tool with carry [".gpu"].
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${NEXPLAIN_SHARED_DIR:-../shared}
rm -rf .gpu && mkdir -p .gpu/debs .gpu/pcre2 .gpu/shared/fixtures
(cd .gpu/debs && apt-get download libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3)
for f in .gpu/debs/*.deb; do dpkg -x "$f" .gpu/pcre2; done
# The four HF fixtures the gpu tests compare against (one per family).
for fixture in hf-gpt2-tiny hf-llama-tiny hf-neox-tiny hf-qwen2-tiny; do
  if [ -d "$SHARED/fixtures/$fixture" ]; then
    cp -r "$SHARED/fixtures/$fixture" .gpu/shared/fixtures/
  else
    echo "prepare-gpu-carry: $SHARED/fixtures/$fixture not found: its fixture tests will skip on the GPU" >&2
  fi
done
du -sh .gpu
