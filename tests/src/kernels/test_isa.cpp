// Run-time choice of the kernels' instruction-set path.
#include <gtest/gtest.h>

#include <cstdlib>

#include "src/base/errors.h"
#include "src/kernels/isa.h"

namespace mmdflow {
namespace {

TEST(Isa, NamesRoundTripAndUnknownNamesAreRefused) {
  for (Isa isa : {Isa::Generic, Isa::Avx2, Isa::Avx512})
    EXPECT_EQ(parse_name<Isa>(std::string(name_of(isa))), isa);
  EXPECT_THROW(parse_name<Isa>("avx"), std::invalid_argument);
  EXPECT_THROW(parse_name<Isa>("AVX2"), std::invalid_argument);
}

TEST(Isa, SupportedPathsAreNestedAndTheWidestIsTheDefault) {
  const std::vector<Isa> paths = supported_isas();
  ASSERT_FALSE(paths.empty());
  EXPECT_EQ(paths.front(), Isa::Generic);
  EXPECT_EQ(paths.back(), widest_isa());
  // avx512 implies avx2: every path runs the narrower ones.
  if (isa_supported(Isa::Avx512)) {
    EXPECT_TRUE(isa_supported(Isa::Avx2));
  }
  if (!std::getenv("MMDFLOW_ISA")) {
    EXPECT_EQ(active_isa(), widest_isa());
  }
}

TEST(Isa, ScopedIsaSetsAndRestoresThePath) {
  const Isa before = active_isa();
  for (Isa isa : supported_isas()) {
    ScopedIsa scope(isa);
    EXPECT_EQ(active_isa(), isa);
  }
  EXPECT_EQ(active_isa(), before);
}

TEST(Isa, AnUnsupportedPathIsRefused) {
  if (widest_isa() == Isa::Avx512) GTEST_SKIP() << "this CPU runs every path";
  for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
    if (!isa_supported(isa)) {
      EXPECT_THROW(set_isa(isa), UsageError) << std::string(name_of(isa));
    }
  }
}

}  // namespace
}  // namespace mmdflow
