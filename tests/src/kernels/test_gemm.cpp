#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "src/kernels/gemm.h"

namespace mmdflow {
namespace {

// gemm_f32 against ATen's product on the shapes of the flow (K = d or B, n = B or d), on every
// tail of rows (m mod 6) and columns (n mod 16), and on strided operands.
TEST(Gemm, MatchesMatmulOnEveryTail) {
  if (!gemm_f32_supported()) GTEST_SKIP() << "this CPU or build has no AVX2 + FMA";
  at::manual_seed(0);
  for (int64_t m : {1, 5, 6, 7, 13, 384})
    for (int64_t n : {1, 7, 8, 9, 15, 16, 17, 50, 100})
      for (int64_t k : {1, 3, 50, 100}) {
        at::Tensor A = at::randn({m, k + 2}).narrow(1, 1, k);  // lda = k + 2
        at::Tensor B = at::randn({k, n + 3}).narrow(1, 0, n);  // ldb = n + 3
        at::Tensor C = at::full({m, n + 1}, 7.0f);             // ldc = n + 1
        gemm_f32(m, n, k, A.data_ptr<float>(), k + 2, B.data_ptr<float>(), n + 3,
                 C.data_ptr<float>(), n + 1);
        at::Tensor ref = at::mm(A.to(at::kDouble), B.to(at::kDouble));
        const double err = (C.narrow(1, 0, n).to(at::kDouble) - ref).abs().max().item<double>();
        EXPECT_LT(err, 1e-5 * std::sqrt(double(k)) * 4) << m << " x " << k << " x " << n;
        EXPECT_TRUE(C.narrow(1, n, 1).eq(7.0f).all().item<bool>())  // nothing past column n
            << m << " x " << k << " x " << n;
      }
}

}  // namespace
}  // namespace mmdflow
