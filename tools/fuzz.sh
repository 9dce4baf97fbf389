#!/usr/bin/env bash
# Fuzzes the readers of every file a user or a crash may hand to mmdflow with libFuzzer (clang,
# ASan + UBSan), for a bounded time per target; prints executions and crashes. Not part of CI.
#   config      the YAML config loader (tests/fuzz/fuzz_config.cpp)
#   checkpoint  the checkpoint's manifest, checkpoint.bin (fuzz_checkpoint.cpp)
#   pt          student.pt and teacher.pt, as `compare` reads them (fuzz_pt.cpp)
#   shard       the checkpoint's weight shards, checkpoint.shards/*.bin (fuzz_shard.cpp)
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 300 s; all four)
# Builds in build-fuzz/ (MMDFLOW_FUZZ=ON). Each target starts from its seed corpus in
# tests/fuzz/corpus/<target>/ plus what earlier runs found (build-fuzz/fuzz-<target>/corpus), and
# stops at its first crash, whose input lands in build-fuzz/fuzz-<target>/crashes-<time>/: make it
# a regression test (tests/src/train/test_fuzz_regressions.cpp), fix, run again.
set -euo pipefail
seconds=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(config checkpoint pt shard)
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
  [ -f "$root/tests/fuzz/$t.dict" ] && dict=(-dict="$root/tests/fuzz/$t.dict")
  unwind=()
  [ "$t" = pt ] && unwind=(env ASAN_OPTIONS=fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS})
  "${unwind[@]}" "$build/fuzz_$t" "$work/corpus" "$root/tests/fuzz/corpus/$t" "${dict[@]}" \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -max_len=16384 \
    -artifact_prefix="$crashes/" -print_final_stats=1 >"$work/log" 2>&1 || status=1
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
  found=$(find "$crashes" -type f | wc -l)
  [ "$found" -eq 0 ] && rmdir "$crashes"
  echo "fuzz_$t: ${execs:-?} executions, $found crashes (log: $work/log)"
done
exit $status
