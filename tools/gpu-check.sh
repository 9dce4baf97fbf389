#!/usr/bin/env bash
# The CUDA check in one run on a GPU machine (../shared/gpu/README.md): configure and build with
# -DMMDFLOW_CUDA=ON in build-cuda, run the CUDA tests (tests/src/test_cuda.cpp), the rest of the
# suite, and the benchmark at the paper setting with noise injection, B = 100 and B = 1000, for
# N = 10^3 to 10^6. Each stage has a time limit (8 minutes in all at most); failed tests do not
# stop the benchmark. Logs and a summary go to $OUT (7 files).
#
#   tools/gpu-check.sh stage   here, in the project root: stages .gpu/ (the packages the GPU
#                              machine lacks, and configure.sh)
#   tools/gpu-check.sh         there: the device tool's run, with carry [".gpu"]
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = stage ]; then
  # ../shared/gpu/prepare.sh's copy, without its .git/info/exclude line, which a git worktree
  # (.git a file) cannot take; .gitignore already ignores /.gpu/. nlohmann-json3-dev is not among
  # ../shared/gpu/debs and the GPU machine reaches no package registry.
  set -e
  mkdir -p .gpu/debs
  cp -f ../shared/gpu/configure.sh .gpu/
  cp -f ../shared/gpu/debs/*.deb .gpu/debs/
  cached=(/var/cache/apt/archives/nlohmann-json3-dev_*_all.deb)
  if [ -f "${cached[-1]}" ]; then
    cp "${cached[-1]}" .gpu/debs/
  else
    (cd .gpu/debs && apt-get download nlohmann-json3-dev)
  fi
  echo "staged .gpu/ ($(du -sh .gpu | cut -f1)): run tools/gpu-check.sh with carry [\".gpu\"]"
  exit 0
fi

out=${OUT:-/tmp/mmdflow-gpu-check}
mkdir -p "$out"
summary=()
failed=0

# stage NAME LOG SECONDS CMD...: runs CMD (its output appended to $out/LOG) within SECONDS.
stage() {
  local name=$1 log=$out/$2 limit=$3 t0=$SECONDS rc result
  shift 3
  echo "== $name: $*" >> "$log"
  timeout -k 10 "$limit" "$@" >> "$log" 2>&1
  rc=$?
  case $rc in
    0) result=ok ;;
    124 | 137) result="timed out (${limit} s)" ;;
    *) result="failed (exit $rc)" ;;
  esac
  [ $rc -eq 0 ] || failed=1
  summary+=("$(printf '%-12s %-22s %4d s' "$name" "$result" $((SECONDS - t0)))")
  echo "$name: $result"
  return $rc
}

{
  nvidia-smi -L
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  nvcc --version | tail -1
  g++ --version | head -1
  cmake --version | head -1
} > "$out/gpu.txt" 2>&1

if [ ! -f .gpu/configure.sh ]; then
  echo "gpu-check: no .gpu/configure.sh: run tools/gpu-check.sh stage here, then carry .gpu" |
    tee "$out/summary.txt"
  exit 2
fi
# shellcheck source=/dev/null
. .gpu/configure.sh >> "$out/gpu.txt" 2>&1
generator=(-G Ninja)
command -v ninja > /dev/null || generator=()

built=0
stage configure build.log 40 cmake -S . -B build-cuda "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DMMDFLOW_CUDA=ON &&
  stage build build.log 180 cmake --build build-cuda -j 16 && built=1

if [ $built -eq 1 ]; then
  stage cuda-tests gtest-cuda.log 60 build-cuda/mmdflow_tests --gtest_filter='Cuda.*' \
    --gtest_color=no
  stage other-tests ctest.log 90 ctest --test-dir build-cuda --output-on-failure -j 12 -E '^Cuda\.'
  for B in 100 1000; do
    stage "bench-b$B" "bench-b$B.txt" 50 build-cuda/mmdflow bench \
      --config configs/paper/noise_injection.yaml --device cuda \
      --particles 1000,10000,100000,1000000 --batch "$B"
  done
fi

{
  echo "== gpu-check summary"
  grep -m1 '^GPU' "$out/gpu.txt"
  grep -m1 '^torch' "$out/gpu.txt"
  printf '%s\n' "${summary[@]}"
  if [ $built -eq 0 ]; then
    echo "-- build.log, last lines:"
    tail -25 "$out/build.log"
  else
    echo "-- CUDA tests (gtest-cuda.log):"
    sed -n '/^\[==========\] .* ran\./,$p' "$out/gtest-cuda.log"
    grep -A1 'Skipped$' "$out/gtest-cuda.log" | grep -v -e 'Skipped$' -e '^--$' | sort -u
    grep -A6 'Failure$' "$out/gtest-cuda.log" | head -80
    echo "-- other tests (ctest.log):"
    grep -E 'tests passed|Failed|\*\*\*' "$out/ctest.log" | head -30
    for B in 100 1000; do
      echo "-- bench, B = $B (bench-b$B.txt):"
      cat "$out/bench-b$B.txt"
    done
  fi
} | tee "$out/summary.txt"
exit $failed
