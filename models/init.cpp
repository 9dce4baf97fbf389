#include "models/init.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <mutex>

namespace mmdflow {
namespace {

// ATen's CPU normal_ of a contiguous float64 tensor of n >= 16 elements (normal_fill) draws one
// uniform per element with one random64() each, in order, then maps groups of 16 by Box-Muller;
// when 16 does not divide n it draws 16 more uniforms for the last 16 elements. So a piece of
// the flat array starting at a multiple of 16, whose length is a multiple of 16, or which runs to
// the end and holds at least 16 elements, is drawn alone exactly as within the whole; elsewhere
// one random64() per element skips it. (Tested against at::normal, tests/models/test_init.cpp.)
constexpr int64_t kGroup = 16;
constexpr int64_t kPiece = kGroup << 16;  // elements drawn at once

void skip(at::Generator& gen, int64_t draws) {
  auto* g = gen.get<at::CPUGeneratorImpl>();
  std::lock_guard<std::mutex> lock(gen.mutex());
  for (int64_t i = 0; i < draws; ++i) g->random64();
}

}  // namespace

at::Tensor normal_rows(at::IntArrayRef sizes, int64_t begin, int64_t end, double mean, double std,
                       at::Generator& gen) {
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const int64_t total = c10::multiply_integers(sizes), rows = sizes.empty() ? 1 : sizes[0];
  TORCH_CHECK(0 <= begin && begin <= end && end <= rows, "rows [", begin, ", ", end,
              ") of a tensor of ", rows, " rows");
  std::vector<int64_t> shape(sizes.begin(), sizes.end());
  shape[0] = end - begin;
  if (total < kGroup || (begin == 0 && end == rows))
    return at::normal(mean, std, sizes, gen, f64).narrow(0, begin, end - begin).contiguous();
  const int64_t row = total / rows, lo = begin * row, hi = end * row;
  at::Tensor out = at::empty(shape, f64);
  double* dst = out.data_ptr<double>();
  // [0, tail) in whole groups; [tail, total) the last piece, drawn or skipped whole.
  const int64_t rem = total % kGroup, tail = rem ? total - rem - kGroup : total;
  auto draw = [&](int64_t a, int64_t b) {  // elements [a, b), then keep [lo, hi) of them
    if (b <= lo || a >= hi) return skip(gen, b - a + (b == total && rem ? kGroup : 0));
    at::Tensor piece = at::normal(mean, std, {b - a}, gen, f64);
    const int64_t from = std::max(a, lo), to = std::min(b, hi);
    std::memcpy(dst + (from - lo), piece.data_ptr<double>() + (from - a),
                (to - from) * sizeof(double));
  };
  const int64_t first = std::min(tail, lo / kGroup * kGroup);
  const int64_t last = std::min(tail, (hi + kGroup - 1) / kGroup * kGroup);
  skip(gen, first);
  for (int64_t a = first; a < last; a += kPiece) draw(a, std::min(last, a + kPiece));
  skip(gen, tail - last);
  if (tail < total) draw(tail, total);
  return out;
}

}  // namespace mmdflow
