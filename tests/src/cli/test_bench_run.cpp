// mmdflow bench end to end: the kernels' path (and MMDFLOW_ISA), the BLAS library, the FMA peak,
// one row per size, and the dense layout.
#include <gtest/gtest.h>

#include <cstdlib>
#include <regex>

#include "src/base/errors.h"
#include "src/kernels/isa.h"
#include "tests/cli.h"

namespace mmdflow {
namespace {

TEST(Bench, ReportsPathBlasAndPeakThenOneRowPerSize) {
  const test::Result r = test::run("bench --particles 100,300 --repeats 2 --set train.batch=10");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("\nkernels: (generic|avx2|avx512) \\(")))
      << r.output;
  EXPECT_NE(r.output.find("\nBLAS: "), std::string::npos) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("\nFMA peak: [0-9]+ cores x [0-9]+ float32 "
                                                     "lanes.* = [0-9]+ GFLOP/s")))
      << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("GFLOP/s \\(the machine's reference\\), "
                                                     "[0-9]+% of the FMA peak")))
      << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("\n +100 +[0-9.]+ .*%.*%")) &&
              std::regex_search(r.output, std::regex("\n +300 +[0-9.]+ .*%.*%")))
      << r.output;
}

TEST(Bench, TimesTheDenseLayoutWhenTheConfigAsksForIt) {
  const test::Result r =
      test::run("bench --particles 40 --repeats 2 --set student.layout=dense --set train.batch=10");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("dense layout: GFLOP/s count"), std::string::npos) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("\n +40 +[0-9.]+ ")));
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
