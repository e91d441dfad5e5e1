#!/usr/bin/env bash
# Installs nexplain's build and test dependencies from the distribution's archive (Debian 12 /
# Ubuntu 24.04). As root it runs apt-get; otherwise it lists what is missing and the command to
# install it. On a cluster, load the equivalent modules instead (see README).
set -euo pipefail
PKGS=(
  cmake g++ make pkg-config git ca-certificates curl
  openmpi-bin libopenmpi-dev          # MPI
  libhdf5-dev hdf5-tools              # HDF5 (serial; libhdf5-openmpi-dev for parallel)
  libcurl4-openssl-dev                # LLM API client
  nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libpcre2-dev                        # GPT-2 pre-tokenizer
  libutf8proc-dev                     # NFC for tokenizer.json normalizers (optional)
  libopenblas-dev                     # CPU backend GEMMs
  libtomlplusplus-dev                 # sweep files
  libcpp-httplib-dev                  # viewer
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-h5py python3-numpy  # h5py checks of the file formats in tests
  slurm-wlm munge                     # slurm tests: a single-node cluster brought up by .ci/run
  chromium                            # viewer tests: headless browser
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then echo "install-deps: all ${#PKGS[@]} packages present"; exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-deps: missing packages: ${missing[*]}"
  echo "install them with: sudo apt-get install ${missing[*]}"
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}"
