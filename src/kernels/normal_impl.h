// fill_normal for one instruction-set path (see normal.h): included by kernels_impl.h. Each lane
// of the loop is one Philox counter, so the loop vectorises at the path's width; the arithmetic is
// the same on every path, and avx2 and avx512 (both with FMA) draw the same bits.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace mmdflow {
namespace MMDFLOW_ISA_NS {

inline float bits_to_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// log(x) for x in (0, 1] (Cephes logf: x = m 2^e, m in [sqrt(1/2), sqrt(2)), a polynomial in m-1).
inline float vlog(float x) {
  const uint32_t b = float_to_bits(x);
  int32_t e = int32_t((b >> 23) & 0xff) - 126;
  float m = bits_to_float((b & 0x7fffffu) | 0x3f000000u);  // [0.5, 1)
  const bool low = m < 0.707106781186547524f;
  e = low ? e - 1 : e;
  m = low ? m + m - 1.0f : m - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const float fe = float(e);
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  return m + y + 0.693359375f * fe;
}

// (cos, sin) of 2 pi u for u in [0, 1): quadrant, then Taylor polynomials on [0, pi/2).
inline void vsincos2pi(float u, float* c, float* s) {
  const float t = u * 4.0f;
  const int32_t q = int32_t(t);
  const float a = (t - float(q)) * 1.57079632679489662f;
  const float a2 = a * a;
  float sa = -2.50521084e-8f;
  sa = sa * a2 + 2.75573192e-6f;
  sa = sa * a2 - 1.98412698e-4f;
  sa = sa * a2 + 8.33333333e-3f;
  sa = sa * a2 - 1.66666667e-1f;
  sa = (sa * a2 + 1.0f) * a;
  float ca = 2.08767570e-9f;
  ca = ca * a2 - 2.75573192e-7f;
  ca = ca * a2 + 2.48015873e-5f;
  ca = ca * a2 - 1.38888889e-3f;
  ca = ca * a2 + 4.16666667e-2f;
  ca = ca * a2 - 0.5f;
  ca = ca * a2 + 1.0f;
  // q = 0: (ca, sa); 1: (-sa, ca); 2: (-ca, -sa); 3: (sa, -ca).
  const bool odd = q & 1;
  const float c0 = odd ? sa : ca, s0 = odd ? ca : sa;
  *c = (q == 1 || q == 2) ? -c0 : c0;
  *s = (q >= 2) ? -s0 : s0;
}

// out[i] ~ N(0, 1) for i < n: the stream of `key`. Philox4x32-10 turns counter i into 4 words,
// Box-Muller turns them into out[4i .. 4i+3].
void fill_normal(float* out, int64_t n, uint64_t key) {
  const uint32_t key0 = uint32_t(key), key1 = uint32_t(key >> 32);
  const int64_t groups = (n + 3) / 4;
  std::vector<float> buf(groups * 4);
  float* o = buf.data();
#pragma omp simd
  for (int64_t i = 0; i < groups; ++i) {
    uint32_t c0 = uint32_t(i), c1 = uint32_t(uint64_t(i) >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = key0, k1 = key1;
#pragma GCC unroll 10
    for (int r = 0; r < 10; ++r) {  // Philox4x32-10
      const uint64_t p0 = uint64_t(0xD2511F53u) * c0, p1 = uint64_t(0xCD9E8D57u) * c2;
      const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
      const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
      c0 = hi1 ^ c1 ^ k0;
      c1 = lo1;
      c2 = hi0 ^ c3 ^ k1;
      c3 = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    // Uniforms from the top 24 bits: u1 in (0, 1] for the log, u2 in [0, 1) for the angle.
    const float scale = 1.0f / 16777216.0f;
    const float u1a = float((c0 >> 8) + 1) * scale, u2a = float(c1 >> 8) * scale;
    const float u1b = float((c2 >> 8) + 1) * scale, u2b = float(c3 >> 8) * scale;
    const float ra = std::sqrt(-2.0f * vlog(u1a)), rb = std::sqrt(-2.0f * vlog(u1b));
    float ca, sa, cb, sb;
    vsincos2pi(u2a, &ca, &sa);
    vsincos2pi(u2b, &cb, &sb);
    o[4 * i] = ra * ca;
    o[4 * i + 1] = ra * sa;
    o[4 * i + 2] = rb * cb;
    o[4 * i + 3] = rb * sb;
  }
  std::memcpy(out, o, n * sizeof(float));
}

}  // namespace MMDFLOW_ISA_NS
}  // namespace mmdflow
