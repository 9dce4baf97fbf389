#!/usr/bin/env bash
# The CUDA check in one run on a GPU machine that has PyTorch (with CUDA) in its python3 but may
# reach no package registry: configure and build with -DMMDFLOW_CUDA=ON against the LibTorch of
# the PyTorch wheel in build-cuda, run the CUDA tests (tests/src/test_cuda.cpp), the rest of the
# suite, and the benchmark at the paper setting with noise injection, B = 100 and B = 1000, for
# N = 10^3 to 10^6. Each stage has a time limit (8 minutes in all at most); failed tests do not
# stop the benchmark. Logs and a summary go to $OUT (default /tmp/mmdflow-gpu-check).
#
#   tools/gpu-check.sh stage   on a Debian machine with apt, in the project root: downloads into
#                              .gpu/debs the packages the GPU machine may lack (fmt, yaml-cpp,
#                              cxxopts, GoogleTest, nlohmann-json); copy .gpu along with the tree
#   tools/gpu-check.sh         on the GPU machine, in the project root
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = stage ]; then
  set -e
  mkdir -p .gpu/debs
  (cd .gpu/debs && apt-get download libfmt-dev libfmt9 libyaml-cpp-dev libyaml-cpp0.7 \
    libcxxopts-dev libgtest-dev libgmock-dev nlohmann-json3-dev)
  echo "staged .gpu/ ($(du -sh .gpu | cut -f1)): run tools/gpu-check.sh there with .gpu beside it"
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

# The staged packages unpacked beside the tree (never installed), LibTorch from the wheel, NCCL's
# headers from the wheel's nvidia-nccl package.
mkdir -p /tmp/mmdflow-deps
for f in .gpu/debs/*.deb; do [ -f "$f" ] && dpkg -x "$f" /tmp/mmdflow-deps; done
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
export CMAKE_PREFIX_PATH="$torch_prefix;/tmp/mmdflow-deps/usr"
export LD_LIBRARY_PATH="/tmp/mmdflow-deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export NCCL_ROOT=$(python3 -c 'import nvidia.nccl; print(list(nvidia.nccl.__path__)[0])' 2>/dev/null)
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0a}
echo "CMAKE_PREFIX_PATH=$CMAKE_PREFIX_PATH NCCL_ROOT=$NCCL_ROOT" >> "$out/gpu.txt"
generator=(-G Ninja)
command -v ninja > /dev/null || generator=()

built=0
stage configure build.log 40 cmake -S . -B build-cuda "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DMMDFLOW_CUDA=ON &&
  stage build build.log 180 cmake --build build-cuda -j 16 && built=1

if [ $built -eq 1 ]; then
  stage cuda-tests gtest-cuda.log 60 build-cuda/mmdflow_unit_tests --gtest_filter='Cuda.*' \
    --gtest_color=no
  stage other-tests ctest.log 90 ctest --test-dir build-cuda --output-on-failure -j 12
  for B in 100 1000; do
    stage "bench-b$B" "bench-b$B.txt" 50 build-cuda/mmdflow bench \
      --config configs/paper/noise_injection.yaml --device cuda \
      --particles 1000,10000,100000,1000000 --batch "$B"
  done
  # The samples family on the device: a short three-ring run, and its step at N = M = 10^4, 10^5
  # beside the dense eager step.
  stage samples-train samples-cuda.txt 60 build-cuda/mmdflow train \
    --config configs/samples/three_rings.yaml --device cuda --set train.epochs=500 \
    --out "$out/three_rings"
  stage samples-bench samples-cuda.txt 90 build-cuda/mmdflow bench \
    --config configs/samples/bench.yaml --device cuda --particles 10000,100000
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
    echo "-- samples (samples-cuda.txt):"
    grep -E '^(1/2|mmdflow bench| +[0-9])' "$out/samples-cuda.txt"
  fi
} | tee "$out/summary.txt"
exit $failed
