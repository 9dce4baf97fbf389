// The bench's multiply-add loop: one per path, as wide as the path's vectors.
#include <gtest/gtest.h>

#include "src/cli/bench_fma.h"

namespace mmdflow {
namespace {

TEST(FmaLoop, EachPathRunsItsWidthAndCountsItsOperations) {
  const int lanes[] = {4, 8, 16};  // generic (SSE2), avx2, avx512
  for (Isa isa : supported_isas()) {
    const FmaLoop& loop = fma_loop(isa);
    EXPECT_EQ(loop.lanes_f32, lanes[int(isa)]) << name_of(isa);
    // 12 chains of one multiply and one add per lane and round.
    EXPECT_EQ(loop.run(1000), 2.0 * 12 * loop.lanes_f32 * 1000) << name_of(isa);
  }
}

}  // namespace
}  // namespace mmdflow
