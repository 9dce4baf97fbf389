#include "src/kernels/gemm.h"

#include <stdexcept>

#include "src/kernels/blocks.h"

namespace mmdflow {

bool gemm_supported(Isa isa) { return isa_supported(isa) && path_kernels(isa).gemm_f32; }

namespace {

void check(Isa isa) {
  if (!gemm_supported(isa))
    throw std::invalid_argument("gemm: the " + std::string(name_of(isa)) +
                                " path has no product tiles on this CPU");
}

}  // namespace

void gemm(Isa isa, int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B,
          int64_t ldb, float* C, int64_t ldc) {
  check(isa);
  path_kernels(isa).gemm_f32(m, n, k, A, lda, B, ldb, C, ldc);
}

void gemm(Isa isa, int64_t m, int64_t n, int64_t k, const double* A, int64_t lda, const double* B,
          int64_t ldb, double* C, int64_t ldc) {
  check(isa);
  path_kernels(isa).gemm_f64(m, n, k, A, lda, B, ldb, C, ldc);
}

bool gemm_f32_supported() { return gemm_supported(active_isa()); }

void gemm_f32(int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B,
              int64_t ldb, float* C, int64_t ldc) {
  gemm(active_isa(), m, n, k, A, lda, B, ldb, C, ldc);
}

}  // namespace mmdflow
