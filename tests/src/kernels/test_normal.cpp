// The noise generator: a standard normal, reproducible, independent across keys.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "src/kernels/normal.h"

namespace mmdflow {
namespace {

TEST(FillNormal, MomentsAndDistributionOfAStandardNormal) {
  const int64_t n = 1 << 21;
  std::vector<float> x(n);
  fill_normal(x.data(), n, 12345);
  double m1 = 0, m2 = 0, m3 = 0, m4 = 0;
  for (float v : x) {
    ASSERT_TRUE(std::isfinite(v));
    m1 += v, m2 += double(v) * v, m3 += double(v) * v * v, m4 += double(v) * v * v * v;
  }
  m1 /= n, m2 /= n, m3 /= n, m4 /= n;
  // Standard errors at n = 2^21: mean 7e-4, var 1e-3, third moment 2e-3, fourth 6e-3.
  EXPECT_NEAR(m1, 0.0, 4e-3);
  EXPECT_NEAR(m2, 1.0, 5e-3);
  EXPECT_NEAR(m3, 0.0, 1e-2);
  EXPECT_NEAR(m4, 3.0, 3e-2);
  // Kolmogorov-Smirnov distance to Phi (1.63 / sqrt(n) = 1.1e-3 at the 1 % level).
  std::sort(x.begin(), x.end());
  double ks = 0;
  for (int64_t i = 0; i < n; i += 97) {
    const double phi = 0.5 * std::erfc(-x[i] / std::sqrt(2.0));
    ks = std::max({ks, std::abs(phi - double(i) / n), std::abs(phi - double(i + 1) / n)});
  }
  EXPECT_LT(ks, 1.5e-3);
}

TEST(FillNormal, ReproducibleAndIndependentAcrossKeys) {
  const int64_t n = 200003;  // not a multiple of 4
  std::vector<float> a(n), b(n), c(n), head(10);
  fill_normal(a.data(), n, 7);
  fill_normal(b.data(), n, 7);
  fill_normal(c.data(), n, 8);
  fill_normal(head.data(), 10, 7);
  EXPECT_EQ(a, b);
  EXPECT_TRUE(std::equal(head.begin(), head.end(), a.begin()));  // a prefix of the same stream
  double ac = 0, aa = 0, cc = 0, lag = 0;
  for (int64_t i = 0; i < n; ++i) {
    ac += double(a[i]) * c[i], aa += double(a[i]) * a[i], cc += double(c[i]) * c[i];
    if (i > 0) lag += double(a[i]) * a[i - 1];
  }
  EXPECT_LT(std::abs(ac / std::sqrt(aa * cc)), 1e-2);  // 4.5 standard errors
  EXPECT_LT(std::abs(lag / aa), 1e-2);
}

// Every path draws the same stream: avx2 and avx512 (both with FMA) bit for bit, the generic path
// (separate multiply and add) to float rounding.
TEST(FillNormal, EveryPathDrawsTheSameStream) {
  const int64_t n = 100003;
  std::vector<float> ref(n), x(n);
  const Isa widest = widest_isa();
  if (widest == Isa::Generic) GTEST_SKIP() << "this CPU runs the generic path alone";
  fill_normal(widest, ref.data(), n, 99);
  for (Isa isa : supported_isas()) {
    fill_normal(isa, x.data(), n, 99);
    double err = 0;
    for (int64_t i = 0; i < n; ++i) err = std::max(err, double(std::abs(x[i] - ref[i])));
    if (isa != Isa::Generic) {
      EXPECT_EQ(x, ref) << std::string(name_of(isa)) << " against " << std::string(name_of(widest));
    } else {
      EXPECT_LT(err, 2e-5) << "generic against " << std::string(name_of(widest));
    }
  }
}

// The first draws of key 1 as the kernel drew them when it was compiled for the build machine
// alone (AVX2 with FMA): the same bits on the avx2 and avx512 paths, to rounding on generic.
TEST(FillNormal, KnownValues) {
  const float first[] = {0.380400568f, -0.29627794f, -0.249233484f, -1.00383723f,
                         0.626947582f, -0.63398385f, -0.678271711f, -1.01308036f};
  std::vector<float> x(8);
  for (Isa isa : supported_isas()) {
    fill_normal(isa, x.data(), 8, 1);
    for (int i = 0; i < 8; ++i) {
      if (isa == Isa::Generic) {
        EXPECT_NEAR(x[i], first[i], 1e-6) << i;
      } else {
        EXPECT_EQ(x[i], first[i]) << std::string(name_of(isa)) << " " << i;
      }
    }
  }
}

// The whole stream, bit for bit, as the kernel drew it when it was compiled for the build machine
// alone (the same with -march=haswell and on an AVX-512 CPU): FNV-1a of its float bits.
TEST(FillNormal, SameBitsAsBeforeThePaths) {
  const int64_t n = 1000003;
  std::vector<float> x(n);
  if (widest_isa() == Isa::Generic)
    GTEST_SKIP() << "this CPU has no FMA path (generic rounds differently)";
  for (Isa isa : supported_isas()) {
    if (isa == Isa::Generic) continue;  // no FMA: rounds differently
    for (auto [key, hash] : {std::pair<uint64_t, uint64_t>{99, 0x6336b059d3c53b3eull},
                             {12345, 0x9622a672ae729370ull},
                             {0xfedcba9876543210ull, 0x99b69b6346b601d0ull}}) {
      fill_normal(isa, x.data(), n, key);
      uint64_t h = 1469598103934665603ull;
      for (float v : x) {
        uint32_t b;
        std::memcpy(&b, &v, sizeof b);
        for (int k = 0; k < 4; ++k) h = (h ^ ((b >> (8 * k)) & 0xff)) * 1099511628211ull;
      }
      EXPECT_EQ(h, hash) << std::string(name_of(isa)) << " key " << key;
    }
  }
}

}  // namespace
}  // namespace mmdflow
