// The bench's BLAS report: the width of OpenBLAS's cores and the warning for a slow BLAS.
#include <gtest/gtest.h>

#include "src/cli/bench.h"

namespace mmdflow {
namespace {

TEST(Bench, OpenBlasCoreWidths) {
  EXPECT_EQ(openblas_core_bits("Prescott"), 128);
  EXPECT_EQ(openblas_core_bits("Haswell"), 256);
  EXPECT_EQ(openblas_core_bits("SKYLAKEX"), 512);
  EXPECT_EQ(openblas_core_bits("Cooperlake"), 512);
  EXPECT_EQ(openblas_core_bits("Armv8"), 0);
}

// The measured case of a Sapphire Rapids-class Xeon (2 cores, AVX-512): OpenBLAS picked Prescott
// and ran the 2048^3 product at 38-49 GFLOP/s of a 2 x 16 x 2 x 2.1 x 2 = 269 GFLOP/s peak.
TEST(Bench, OneWarningNamesAMisdetectedCoreAndTheVariable) {
  const BlasInfo prescott{"OpenBLAS 0.3.21", "", "Prescott", 128};
  const std::string w = blas_warning(prescott, 512, 43.0, 269.0);
  EXPECT_EQ(w.rfind("warning: ", 0), 0u) << w;
  EXPECT_EQ(w.find('\n'), std::string::npos) << w;  // one line
  for (const char* part : {"43 GFLOP/s", "16% of the FMA peak", "core Prescott (128-bit kernels)",
                           "512-bit FMA", "OPENBLAS_CORETYPE=SkylakeX"})
    EXPECT_NE(w.find(part), std::string::npos) << part << " in " << w;
  // On an AVX2 CPU the fix names Haswell.
  EXPECT_NE(blas_warning(prescott, 256, 10.0, 100.0).find("OPENBLAS_CORETYPE=Haswell"),
            std::string::npos);
}

TEST(Bench, NoWarningFromAQuarterOfThePeakOn) {
  const BlasInfo haswell{"OpenBLAS 0.3.21", "", "Haswell", 256};
  EXPECT_EQ(blas_warning(haswell, 512, 243.0, 516.0), "");  // this machine's 256-bit core: 47%
  EXPECT_EQ(blas_warning(haswell, 512, 25.0, 100.0), "");
  EXPECT_NE(blas_warning(haswell, 512, 24.0, 100.0), "");
}

TEST(Bench, SlowBlasWithoutAKnownCauseSaysWhatToCheck) {
  // A core as wide as the CPU's: the load or another core, not a misdetection.
  const std::string w = blas_warning({"OpenBLAS 0.3.21", "", "SkylakeX", 512}, 512, 20.0, 500.0);
  EXPECT_NE(w.find("other processes share the cores"), std::string::npos) << w;
  EXPECT_EQ(w.find("OPENBLAS_CORETYPE=SkylakeX"), std::string::npos) << w;
  // No OpenBLAS: no variable to name.
  const std::string u = blas_warning(BlasInfo{}, 512, 20.0, 500.0);
  EXPECT_NE(u.find("link an optimised BLAS"), std::string::npos) << u;
  EXPECT_EQ(u.find("OPENBLAS_CORETYPE"), std::string::npos) << u;
}

}  // namespace
}  // namespace mmdflow
