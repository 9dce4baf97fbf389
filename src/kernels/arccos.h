// The exact kernel of the family H = 1, s = ReLU, G = identity, no biases (docs/math.md, "Exact
// kernel"): z = (w [d], v [o]), k(z, z') = (v^T v') ||w|| ||w'|| J(theta) / (2 pi), the arc-cosine
// kernel of degree 1, divided by d for inputs uniform on the sphere. With it the witness of
// 1/2 MMD^2, its gradient and MMD^2 are sums over particles, with no data at all.
// Cost O(Q (N + M) d) for Q query points; chunked: tiles of 128 queries against tiles of sources,
// never a Q x N matrix whole, tiles of queries in parallel. CPU, float32 and float64.
#pragma once
#include <ATen/core/Tensor.h>

#include "data/input.h"
#include "models/particle_net.h"
#include "src/kernels/features.h"

namespace mmdflow {

// Dense reference by ATen ops (autograd-friendly, O(N M) memory; tests and small M only).
// w1 [N, d], v1 [N, o], w2 [M, d], v2 [M, o] -> [N, M].
at::Tensor arccos_kernel(const at::Tensor& w1, const at::Tensor& v1, const at::Tensor& w2,
                         const at::Tensor& v2, InputDist dist);

struct ExactKernel {
  InputDist dist = InputDist::Sphere;
  // Sources per tile (0: 256): a thread holds 128 x chunk kernel values. Results are independent
  // of the thread count bit for bit, of chunk up to the rounding of the sums' grouping.
  int64_t chunk = 0;
};

// The witness of 1/2 MMD^2(nu, nu*) at query points q_i (particles of the family, e.g. noisy
// copies of the student's): h(q) = (1/N) sum_n k(q, z_n) - sum_m c_m k(q, u_m), with c_m = 1/M, or
// `teacher_mass` [M] when given (the DrMMD flow reweights the teacher).
struct ExactWitness {
  at::Tensor student;        // [Q] float64: (1/N) sum_n k(q_i, z_n)
  at::Tensor teacher;        // [Q] float64: sum_m c_m k(q_i, u_m)
  Particles grad;            // grad_q h at q_i, shaped like the queries (with_grad only)
  at::Tensor grad_sq;        // 0-dim float64: (1/Q) sum_i ||grad_q h(q_i)||^2 (with_grad only)
  at::Tensor value() const;  // h(q_i) = student - teacher, [Q]
};
ExactWitness exact_witness(const Particles& queries, const Particles& student,
                           const Particles& teacher, const ExactKernel& kernel,
                           bool with_grad = true, const at::Tensor& teacher_mass = {});

// MMD^2(nu, nu*) = mean k(z, z') - 2 mean k(z, u) + mean k(u, u'), 0-dim float64.
at::Tensor exact_mmd2(const Particles& student, const Particles& teacher, InputDist dist,
                      int64_t chunk = 0);

// E_{z~nu} ||grad h(z + beta w)||^2, w the flow's noise (`perturb`); noise.beta = 0: at the
// particles. 0-dim float64.
at::Tensor exact_grad_sq(const Particles& student, const Particles& teacher,
                         const ExactKernel& kernel, const Noise& noise = {});

}  // namespace mmdflow
