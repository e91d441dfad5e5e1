#!/usr/bin/env bash
# The one command for a GPU machine (docs/CUDA.md): configure and build with the CUDA backend, run
# the gpu tests, run them again under compute-sanitizer memcheck, then bench/collect_gpu against
# the HuggingFace anchor bench/hf_anchor.py, and print a table of tokens/s and ratios.
#
# Every step runs even when an earlier one failed (except those that need the build), and the
# summary at the end says which failed. The whole output goes to $OUT/gpu-check.log when $OUT is
# set (the device tool's output folder) and always to bench/gpu-check-latest.log.
#
# Missing on the GPU machine, carried in the git-ignored .gpu/ folder that
# scripts/prepare-gpu-carry.sh makes (then run the device tool with carry
# [".gpu"]):
#   .gpu/pcre2/   Debian's libpcre2-dev + libpcre2-8-0 unpacked with dpkg -x (headers, .pc, .so)
#   .gpu/shared/  the fixtures the tests read from ../shared (fixtures/hf-{gpt2,llama,neox,qwen2}-tiny)
#
# Environment: BUILD (default build-gpu), JOBS (16), BENCH_SECONDS (3), MODELS (small,xl),
# PRECISIONS (fp32,tf32,bf16), VARIANT_PRECISIONS (bf16), SKIP_MEMCHECK=1, SKIP_BENCH=1,
# SKIP_VARIANTS=1, KEEP_BUILD=1 (reuse $BUILD instead of starting afresh).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
BUILD=${BUILD:-$ROOT/build-gpu}
JOBS=${JOBS:-16}
BENCH_SECONDS=${BENCH_SECONDS:-3}
MODELS=${MODELS:-small,xl}
PRECISIONS=${PRECISIONS:-fp32,tf32,bf16}
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PYTHONUNBUFFERED=1

SHARED=""
STEPS=()
record() {  # name status seconds
  STEPS+=("$(printf '%-22s %-8s %5ss' "$1" "$2" "$3")")
}
run_step() {  # name command...
  local name=$1
  shift
  echo
  echo "=================================================================== [$name]"
  echo "+ $*"
  local t0=$SECONDS
  "$@"
  local rc=$?
  if [ $rc -eq 0 ]; then record "$name" ok $((SECONDS - t0)); else record "$name" "FAILED($rc)" $((SECONDS - t0)); fi
  return $rc
}

machine_info() {
  date -u '+%Y-%m-%dT%H:%M:%SZ'
  uname -a
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem,power.limit --format=csv ||
    echo "nvidia-smi failed"
  nvidia-smi -L || true
  nvcc --version | tail -2 || echo "nvcc not found"
  cmake --version | head -1
  command -v compute-sanitizer >/dev/null && compute-sanitizer --version | tail -1
  nproc
  git -C "$ROOT" log -1 --format='commit %H %s' 2>/dev/null || true
  git -C "$ROOT" status --short 2>/dev/null | head -40 || true
  return 0
}

setup_deps() {
  # PCRE2: the system's if it has the development files, else the carried Debian packages.
  if pkg-config --exists libpcre2-8 2>/dev/null; then
    echo "PCRE2: system $(pkg-config --modversion libpcre2-8)"
  else
    local usr="$ROOT/.gpu/pcre2/usr"
    local libdir="$usr/lib/x86_64-linux-gnu"
    if [ ! -f "$libdir/pkgconfig/libpcre2-8.pc" ] || [ ! -f "$usr/include/pcre2.h" ]; then
      echo "PCRE2 development files are missing and .gpu/pcre2 was not carried (see the header of this script)"
      return 1
    fi
    local pcdir="$BUILD-pkgconfig"
    mkdir -p "$pcdir"
    local f
    for f in "$libdir"/pkgconfig/*.pc; do
      sed "s|^prefix=.*|prefix=$usr|" "$f" >"$pcdir/$(basename "$f")"
    done
    # Symbolic links may not survive the transfer: recreate the .so names from the real files.
    local v real
    for v in 8 16 32; do
      real=$(ls "$libdir"/libpcre2-$v.so.0.* 2>/dev/null | head -1)
      [ -n "$real" ] || continue
      [ -e "$libdir/libpcre2-$v.so.0" ] || ln -sf "$(basename "$real")" "$libdir/libpcre2-$v.so.0"
      [ -e "$libdir/libpcre2-$v.so" ] || ln -sf "$(basename "$real")" "$libdir/libpcre2-$v.so"
    done
    export PKG_CONFIG_PATH="$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    export CMAKE_PREFIX_PATH="$usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
    # Only when the system has no runtime library of its own (Ubuntu 24.04 does).
    if ! ldconfig -p 2>/dev/null | grep -q 'libpcre2-8\.so\.0'; then
      export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
    echo "PCRE2: carried $(pkg-config --modversion libpcre2-8) from $usr"
    pkg-config --cflags --libs libpcre2-8 || return 1
  fi
  # Fixtures: ../shared when present, else the carried copy.
  SHARED=""
  if [ -d "$ROOT/../shared/fixtures" ]; then
    SHARED=$(cd "$ROOT/../shared" && pwd)
  elif [ -d "$ROOT/.gpu/shared/fixtures" ]; then
    SHARED="$ROOT/.gpu/shared"
  fi
  if [ -n "$SHARED" ]; then
    export NEXPLAIN_SHARED_DIR="$SHARED"
    echo "fixtures: $SHARED ($(ls "$SHARED/fixtures" | tr '\n' ' '))"
  else
    echo "fixtures: none (tests that need ../shared will skip)"
  fi
  return 0
}

configure() {
  # A fresh build directory unless KEEP_BUILD=1: the device tool's copy of the tree keeps this
  # machine's file times, which can be older than objects left by an earlier call, and make would
  # then link stale objects.
  [ "${KEEP_BUILD:-0}" = 1 ] || rm -rf "$BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DNEXPLAIN_CUDA=ON \
    ${SHARED:+-DNEXPLAIN_SHARED_DIR="$SHARED"}
}

build() {
  cmake --build "$BUILD" -j"$JOBS" --target nexplain test_cuda_backend test_cuda_transformer \
    test_cuda_reduction_emulated collect_gpu
}

gpu_tests() {
  timeout 420 ctest --test-dir "$BUILD" -L gpu --output-on-failure --timeout 180 -j4
}

memcheck() {
  if ! command -v compute-sanitizer >/dev/null; then
    echo "compute-sanitizer not found"
    return 1
  fi
  # The reduction kernels, every forward kernel in every precision (tiny model, T up to 128) and
  # the bad-input paths; the big-model tests and the T = 1024 attention test (two blocks doing
  # O(T^2) instrumented loads) are left out to keep the instrumented run short.
  timeout 300 compute-sanitizer --tool memcheck --leak-check full --error-exitcode 86 "$BUILD/tests/test_cuda_backend" \
    --gtest_filter='CudaReduction.*:CudaForward.HfFixtureMatchesCpu:CudaForward.EveryTuningMatchesCpu:CudaForward.BadInputIsAnError' ||
    return 1
  # The other families' kernels (RMSNorm, RoPE, grouped-query attention, gated MLP) and stages.
  timeout 300 compute-sanitizer --tool memcheck --leak-check full --error-exitcode 86 \
    "$BUILD/tests/test_cuda_transformer" \
    --gtest_filter='CudaTransformer.RandomModelsOfEveryVariantMatchCpu:CudaTransformer.StagesGiveTheNeuronsOfTheWholeForward:CudaTransformer.BadInputIsAnError'
}

# Where the time goes: each forward tuning switched off in turn (A/B in the same process) and the
# GPU time per phase of one batch, for bf16 (the precision of the speed goal).
bench_variants() {
  timeout 240 "$BUILD/bench/collect_gpu" --models "$MODELS" --precisions "${VARIANT_PRECISIONS:-bf16}" \
    --seconds 1 --variants --breakdown | tee "$BUILD/bench-variants.txt"
  return "${PIPESTATUS[0]}"
}

bench_nexplain() {
  timeout 240 "$BUILD/bench/collect_gpu" --models "$MODELS" --precisions "$PRECISIONS" --seconds "$BENCH_SECONDS" |
    tee "$BUILD/bench-nexplain.txt"
  return "${PIPESTATUS[0]}"
}

bench_hf() {
  timeout 300 python3 "$ROOT/bench/hf_anchor.py" --models "$MODELS" --precisions "$PRECISIONS" \
    --seconds "$BENCH_SECONDS" | tee "$BUILD/bench-hf.txt"
  return "${PIPESTATUS[0]}"
}

table() {
  local ours="$BUILD/bench-nexplain.txt" hf="$BUILD/bench-hf.txt"
  [ -f "$ours" ] || : >"$ours"
  [ -f "$hf" ] || : >"$hf"
  echo
  echo "collect throughput, 256 excerpts x 64 tokens per batch, capture + reduction of every neuron of every layer"
  echo "(nexplain fwd-only: its forward without capture; HF no-capture: the anchor without hooks)"
  printf '%-7s %-6s %16s %16s %8s   %16s %16s\n' model prec "nexplain tok/s" "HF tok/s" ratio "nexplain fwd" "HF no-capture"
  local model prec a b fa fb ratio
  for model in ${MODELS//,/ }; do
    for prec in ${PRECISIONS//,/ }; do
      a=$(awk -v m="$model" -v p="$prec" '$1=="RESULT" && $3==m && $4==p {print $5}' "$ours" | tail -1)
      b=$(awk -v m="$model" -v p="$prec" '$1=="RESULT" && $3==m && $4==p {print $5}' "$hf" | tail -1)
      fa=$(awk -v m="$model" -v p="$prec" '$1=="RESULT" && $3==m && $4==p {for(i=6;i<=NF;i++) if ($i ~ /^fwd_only=/) {sub("fwd_only=","",$i); print $i}}' "$ours" | tail -1)
      fb=$(awk -v m="$model" -v p="$prec" '$1=="RESULT" && $3==m && $4==p {for(i=6;i<=NF;i++) if ($i ~ /^no_capture=/) {sub("no_capture=","",$i); print $i}}' "$hf" | tail -1)
      ratio=$(awk -v a="${a:-x}" -v b="${b:-x}" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2fx", a / b; else print "n/a" }')
      printf '%-7s %-6s %16s %16s %8s   %16s %16s\n' "$model" "$prec" "${a:-n/a}" "${b:-n/a}" "$ratio" "${fa:-n/a}" "${fb:-n/a}"
    done
  done
  return 0
}

main() {
  local t_start=$SECONDS
  echo "nexplain gpu-check: $ROOT -> $BUILD"
  run_step "machine" machine_info
  run_step "dependencies" setup_deps
  local built=0
  if run_step "configure" configure && run_step "build" build; then built=1; fi
  if [ $built -eq 1 ]; then
    run_step "gpu tests" gpu_tests
    [ "${SKIP_MEMCHECK:-0}" = 1 ] || run_step "memcheck" memcheck
    [ "${SKIP_BENCH:-0}" = 1 ] || run_step "bench nexplain" bench_nexplain
    [ "${SKIP_BENCH:-0}" = 1 ] || [ "${SKIP_VARIANTS:-0}" = 1 ] || run_step "bench variants" bench_variants
  else
    record "gpu tests" "skipped" 0
    echo "build failed: tests, memcheck and collect_gpu skipped"
  fi
  [ "${SKIP_BENCH:-0}" = 1 ] || run_step "bench HF anchor" bench_hf
  table
  echo
  echo "=================================================================== summary ($((SECONDS - t_start)) s)"
  local s failed=0
  for s in "${STEPS[@]}"; do
    echo "  $s"
    case "$s" in *FAILED* | *skipped*) failed=1 ;; esac
  done
  if [ $failed -eq 0 ]; then echo "gpu-check: all steps passed"; else echo "gpu-check: SOME STEPS FAILED (see above)"; fi
  return $failed
}

LOGS=("$ROOT/bench/gpu-check-latest.log")
[ -n "${OUT:-}" ] && mkdir -p "$OUT" && LOGS+=("$OUT/gpu-check.log")
main 2>&1 | tee "${LOGS[@]}"
exit "${PIPESTATUS[0]}"
