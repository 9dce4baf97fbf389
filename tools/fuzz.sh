#!/usr/bin/env bash
# Fuzzes the readers of every file a user or a crash may hand to mmdflow with libFuzzer (clang,
# ASan + UBSan), for a bounded time per target; prints executions and crashes. Not part of CI.
#   config      the YAML config loader (tests/fuzz/fuzz_config.cpp)
#   set         --set overrides, one a line (fuzz_set.cpp)
#   checkpoint  the checkpoint's manifest, checkpoint.bin (fuzz_checkpoint.cpp)
#   pt          student.pt and teacher.pt, as `compare` reads them (fuzz_pt.cpp)
#   shard       the checkpoint's weight shards, checkpoint.shards/*.bin (fuzz_shard.cpp)
#   index       student.index.json of a sharded run (fuzz_index.cpp)
#   data        sample files and labelled data files: .npy, .npz, .csv, .pt (fuzz_data.cpp)
#   tools/fuzz.sh [--runs N] [--no-leaks] [SECONDS_PER_TARGET] [TARGET...]
#                                                          (default: 300 s; all seven)
# With --runs, each target runs N executions, or SECONDS if that comes first (default then 4 h).
# --no-leaks: no leak detection, and so no slow unwinding at each allocation (up to 10x faster on
# the targets that read .pt files); memory errors are reported as ever.
# Builds in build-fuzz/ (MMDFLOW_FUZZ=ON). Each target starts from its seed corpus in
# tests/fuzz/corpus/<target>/ plus what earlier runs found (build-fuzz/fuzz-<target>/corpus), and
# stops at its first crash, whose input lands in build-fuzz/fuzz-<target>/crashes-<time>/: make it
# a regression test (tests/src/train/test_fuzz_regressions.cpp), fix, run again.
set -euo pipefail
runs=()
default_seconds=300
if [ "${1:-}" = --runs ]; then
  runs=(-runs="$2")
  default_seconds=14400
  shift 2
fi
leaks=1
if [ "${1:-}" = --no-leaks ]; then
  leaks=0
  shift
fi
seconds=$default_seconds
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  seconds=$1
  shift
fi
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(config set checkpoint pt shard index data)
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMMDFLOW_FUZZ=ON -DMMDFLOW_TESTS=OFF >/dev/null
cmake --build "$build" --target "${targets[@]/#/fuzz_}"

# Leaks inside LibTorch that mmdflow cannot free (see the file) are not reported; matching them
# takes whole allocation stacks (slower, so only where LibTorch reads the input).
export LSAN_OPTIONS=suppressions=$root/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}
status=0
for t in "${targets[@]}"; do
  work=$build/fuzz-$t
  crashes=$work/crashes-$(date +%Y%m%d-%H%M%S)
  mkdir -p "$work/corpus" "$crashes"
  dict=()
  words=$t
  [ "$t" = set ] && words=config  # --set takes the config's keys
  [ -f "$root/tests/fuzz/$words.dict" ] && dict=(-dict="$root/tests/fuzz/$words.dict")
  asan=()
  if [ $leaks = 0 ]; then
    asan=(env ASAN_OPTIONS=detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS})
  elif [[ "$t" =~ ^(pt|index|data)$ ]]; then
    asan=(env ASAN_OPTIONS=fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS})
  fi
  start=$SECONDS
  "${asan[@]}" "$build/fuzz_$t" "$work/corpus" "$root/tests/fuzz/corpus/$t" "${dict[@]}" \
    -max_total_time="$seconds" "${runs[@]}" -timeout=20 -rss_limit_mb=4096 -max_len=16384 \
    -artifact_prefix="$crashes/" -print_final_stats=1 >"$work/log" 2>&1 || status=1
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
  found=$(find "$crashes" -type f | wc -l)
  [ "$found" -eq 0 ] && rmdir "$crashes"
  echo "fuzz_$t: ${execs:-?} executions in $((SECONDS - start)) s, $found crashes (log: $work/log)"
done
exit $status
