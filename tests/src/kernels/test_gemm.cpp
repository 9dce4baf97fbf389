#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "src/kernels/gemm.h"

namespace mmdflow {
namespace {

// Each path's tiles against ATen's product on the shapes of the flow (k = d or B, n = B or d), on
// every tail of rows (m mod 6) and columns (n mod 64 for avx512, mod 16 for avx2), and on strided
// operands, in both precisions.
template <typename T>
void expect_matches_matmul(Isa isa) {
  const auto dtype = c10::CppTypeToScalarType<T>::value;
  const double eps = std::is_same_v<T, float> ? 1e-5 : 1e-13;
  at::manual_seed(0);
  for (int64_t m : {1, 5, 6, 7, 13, 384})
    for (int64_t n : {1, 7, 8, 9, 15, 16, 17, 31, 33, 47, 50, 63, 64, 65, 100, 130})
      for (int64_t k : {1, 3, 50, 100}) {
        at::Tensor A = at::randn({m, k + 2}, dtype).narrow(1, 1, k);  // lda = k + 2
        at::Tensor B = at::randn({k, n + 3}, dtype).narrow(1, 0, n);  // ldb = n + 3
        at::Tensor C = at::full({m, n + 1}, 7.0, dtype);              // ldc = n + 1
        gemm(isa, m, n, k, A.data_ptr<T>(), k + 2, B.data_ptr<T>(), n + 3, C.data_ptr<T>(), n + 1);
        at::Tensor ref = at::mm(A.to(at::kDouble), B.to(at::kDouble));
        const double err = (C.narrow(1, 0, n).to(at::kDouble) - ref).abs().max().item<double>();
        const std::string at_ = std::string(name_of(isa)) + " " + std::to_string(m) + " x " +
                                std::to_string(k) + " x " + std::to_string(n);
        EXPECT_LT(err, eps * std::sqrt(double(k)) * 4) << at_;
        EXPECT_TRUE(C.narrow(1, n, 1).eq(7.0).all().item<bool>()) << at_;  // nothing past column n
      }
}

TEST(Gemm, EveryPathMatchesMatmulOnEveryTail) {
  int tested = 0;
  for (Isa isa : supported_isas()) {
    if (!gemm_supported(isa)) continue;
    expect_matches_matmul<float>(isa);
    expect_matches_matmul<double>(isa);
    ++tested;
  }
  if (tested == 0) GTEST_SKIP() << "this CPU has no AVX2 + FMA: no path has tiles";
}

// Hand-checked: [[1, 2], [3, 4]] [[5, 6], [7, 8]] = [[19, 22], [43, 50]].
TEST(Gemm, TwoByTwo) {
  const float A[] = {1, 2, 3, 4}, B[] = {5, 6, 7, 8};
  int tested = 0;
  for (Isa isa : supported_isas()) {
    if (!gemm_supported(isa)) continue;
    float C[4] = {};
    gemm(isa, 2, 2, 2, A, 2, B, 2, C, 2);
    EXPECT_EQ(std::vector<float>(C, C + 4), (std::vector<float>{19, 22, 43, 50}))
        << std::string(name_of(isa));
    ++tested;
  }
  if (tested == 0) GTEST_SKIP() << "this CPU has no AVX2 + FMA: no path has tiles";
}

// gemm_f32 runs the active path's tiles: the generic path has none.
TEST(Gemm, Float32ProductFollowsTheActivePath) {
  const float A[] = {1, 2, 3, 4}, B[] = {5, 6, 7, 8};
  for (Isa isa : supported_isas()) {
    ScopedIsa path(isa);
    EXPECT_EQ(gemm_f32_supported(), gemm_supported(isa)) << name_of(isa);
    if (!gemm_f32_supported()) continue;
    float C[4] = {};
    gemm_f32(2, 2, 2, A, 2, B, 2, C, 2);
    EXPECT_EQ(std::vector<float>(C, C + 4), (std::vector<float>{19, 22, 43, 50})) << name_of(isa);
  }
}

TEST(Gemm, GenericPathHasNoTilesAndRefuses) {
  EXPECT_FALSE(gemm_supported(Isa::Generic));
  float x = 1;
  EXPECT_THROW(gemm(Isa::Generic, 1, 1, 1, &x, 1, &x, 1, &x, 1), std::invalid_argument);
}

}  // namespace
}  // namespace mmdflow
