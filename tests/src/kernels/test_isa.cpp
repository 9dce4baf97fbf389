// Run-time choice of the kernels' instruction-set path.
#include <gtest/gtest.h>

#include <cstdlib>

#include "src/base/errors.h"
#include "src/kernels/isa.h"
#include "tests/cli.h"

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
  for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
    if (!isa_supported(isa)) {
      EXPECT_THROW(set_isa(isa), UsageError) << std::string(name_of(isa));
    }
  }
}

// MMDFLOW_ISA in the environment of a run: the bench prints the path; bad values exit 2.
class IsaEnvironment : public testing::Test {
 protected:
  void TearDown() override { unsetenv("MMDFLOW_ISA"); }
  test::Result bench_with(const char* isa) {
    setenv("MMDFLOW_ISA", isa, 1);
    return test::run("bench --particles 200 --repeats 1 --set train.batch=10");
  }
};

TEST_F(IsaEnvironment, ForcesEachSupportedPath) {
  for (Isa isa : supported_isas()) {
    const test::Result r = bench_with(std::string(name_of(isa)).c_str());
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("kernels: " + std::string(name_of(isa)) + " (forced by MMDFLOW_ISA"),
              std::string::npos)
        << r.output;
  }
}

TEST_F(IsaEnvironment, UnknownOrUnsupportedValuesExitTwo) {
  test::Result r = bench_with("sse9");
  EXPECT_EQ(r.code, kBadInput) << r.output;
  EXPECT_NE(r.output.find("MMDFLOW_ISA=sse9"), std::string::npos) << r.output;
  for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
    if (isa_supported(isa)) continue;
    r = bench_with(std::string(name_of(isa)).c_str());
    EXPECT_EQ(r.code, kBadInput) << r.output;
    EXPECT_NE(r.output.find("MMDFLOW_ISA=" + std::string(name_of(isa))), std::string::npos)
        << r.output;
  }
}

}  // namespace
}  // namespace mmdflow
