// The energy kernel's witness gradient by slicing (Hertrich, Wald, Altekrueger, Hagemann,
// "Generative sliced MMD flows with Riesz kernels", ICLR 2024; docs/math.md, "Sliced energy
// kernel"). For k(x, y) = -|x - y| and h(x) = (1/N) sum_n k(x, z_n) - (1/M) sum_m k(x, u_m):
//   grad h(x) = c_d E_xi[ xi h_xi'(<x, xi>) ],  xi uniform on the unit sphere of R^d,
//   h_xi'(s) = -(1/N) sum_n sign(s - <z_n, xi>) + (1/M) sum_m sign(s - <u_m, xi>)  (sign(0) = 0),
// estimated with L directions: per direction, radix sorts of the projections (a pass a byte of
// the keys) and one merge that counts the points below and above each row: O(L (N + M + n) d)
// against the exact sums' O(n (N + M) d). CPU only.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace mmdflow {

// c_d = sqrt(pi) Gamma((d + 1)/2) / Gamma(d/2) = 1 / E|xi_1|, so that |v| = c_d E_xi |<v, xi>|.
double sliced_energy_constant(int64_t d);

// L directions uniform on the unit sphere of R^d: N(0, I_d) draws (float64) from a CPU
// generator seeded with `seed` alone, normalised, then in o's dtype and device: [L, d].
at::Tensor random_directions(int64_t L, int64_t d, uint64_t seed, const at::TensorOptions& o);

// The estimate c_d (1/L) sum_l xi_l h_xi_l'(<p_i, xi_l>) of grad h at each row p_i of P: [n, d].
// P [n, d], Z [N, d], U [M, d], xi [L, d] unit rows: one dtype (float32 or float64), on CPU.
// Projections are taken in that dtype, the counts exactly: a projection equal to the row's (the
// row itself among Z's) counts 0. Row i's result depends on p_i, Z, U and xi only (directions
// added in order, in float64), so any split of P's rows gives the same bits; P a block of Z's
// rows (a view) sorts Z's projections once for both.
at::Tensor sliced_energy_grad(const at::Tensor& P, const at::Tensor& Z, const at::Tensor& U,
                              const at::Tensor& xi);

}  // namespace mmdflow
