#include "src/flow/exact.h"

#include <ATen/ATen.h>

#include "src/kernels/arccos.h"

namespace mmdflow {

namespace {

// The flow's witness at any query points: scale [(1/N) sum_n k(., z_n) - sum_m c_m k(., u_m)],
// c_m = 1/M but for DrMMD (h_lambda), and the teacher-side terms of 1/2 MMD^2.
class FlowWitness {
 public:
  FlowWitness(const Particles& z, const Particles& teacher, InputDist dist, const StepOptions& opt,
              int64_t chunk)
      : z_(z), teacher_(teacher), kernel_{dist, chunk} {
    TORCH_CHECK(opt.method != Method::Sobolev,
                "the sobolev flow has no population form: its Gram is indexed by inputs");
    TORCH_CHECK(opt.method != Method::DrMMD || opt.drmmd_lambda > 0.0,
                "the DrMMD flow needs lambda > 0, got ", opt.drmmd_lambda);
    // At the teacher's particles: (1/N) sum_n k(u_m, z_n) and (1/M) sum_m' k(u_m, u_m') for the
    // loss, h(X) for DrMMD. M queries: O(M (N + M) d).
    at_teacher_ = exact_witness(teacher, z, teacher, kernel_, /*with_grad=*/false);
    if (opt.method != Method::DrMMD) return;
    const int64_t M = teacher.size();
    const double lambda = opt.drmmd_lambda;
    const at::Tensor w = teacher.A.reshape({M, -1}).to(at::kDouble);
    const at::Tensor v = teacher.B.reshape({M, -1}).to(at::kDouble);
    const at::Tensor K =
        arccos_kernel(w, v, w, v, dist) + double(M) * lambda * at::eye(M, w.options());
    // h_lambda = scale [(1/N) sum_n k(., z_n) - sum_m (1/M + beta_m) k(., u_m)], K_XX + M lambda I.
    mass_ = at::linalg_solve(K, at_teacher_.value()) + 1.0 / double(M);
    scale_ = (1.0 + lambda) / lambda;
  }
  // The witness (divided by scale) at q, and scale^2 mean ||grad h(q)||^2 (with_grad).
  ExactWitness at(const Particles& q, bool with_grad) const {
    ExactWitness h = exact_witness(q, z_, teacher_, kernel_, with_grad, mass_);
    if (with_grad) h.grad_sq = h.grad_sq * (scale_ * scale_);
    return h;
  }
  // 1/2 MMD^2 = 1/2 [mean k(z, z') - 2 mean k(z, u) + mean k(u, u')], the middle term from the
  // teacher's side (`clean`, at the particles, carries the DrMMD masses on its teacher side).
  at::Tensor loss(const ExactWitness& clean) const {
    return 0.5 *
           (clean.student.mean() - 2.0 * at_teacher_.student.mean() + at_teacher_.teacher.mean());
  }
  double scale() const { return scale_; }

 private:
  const Particles& z_;
  const Particles& teacher_;
  ExactKernel kernel_;
  ExactWitness at_teacher_;
  at::Tensor mass_;  // the teacher's masses in the witness (undefined: 1/M)
  double scale_ = 1.0;
};

}  // namespace

StepStats exact_step(Particles& z, const Particles& teacher, InputDist dist, const StepOptions& opt,
                     int64_t chunk) {
  const FlowWitness h(z, teacher, dist, opt, chunk);
  const Noise noise{opt.beta, opt.noise_seed};
  const bool inject = opt.method != Method::Diffusion && opt.beta != 0.0;
  const bool clean_grad = !inject || opt.clean_grad_sq;
  const ExactWitness clean = h.at(z, clean_grad);
  StepStats st;
  st.loss = h.loss(clean);
  Particles g = clean.grad;
  if (clean_grad) st.grad_sq = whole_share(clean.grad_sq);
  if (inject) {
    const ExactWitness noisy = h.at(perturb(z, noise), true);
    g = noisy.grad;
    st.noisy_grad_sq = whole_share(noisy.grad_sq);
  } else {
    st.noisy_grad_sq = st.grad_sq;
  }
  z.A.add_(g.A, -opt.step_size * h.scale());
  z.B.add_(g.B, -opt.step_size * h.scale());
  if (opt.method == Method::Diffusion && opt.beta != 0.0) {
    const Particles p = perturb(z, noise);
    z.A.copy_(p.A);
    z.B.copy_(p.B);
  }
  return st;
}

StepStats exact_stats(const Particles& z, const Particles& teacher, InputDist dist,
                      const StepOptions& opt, int64_t chunk) {
  const FlowWitness h(z, teacher, dist, opt, chunk);
  const ExactWitness clean = h.at(z, true);
  StepStats st;
  st.loss = h.loss(clean);
  st.grad_sq = whole_share(clean.grad_sq);
  st.noisy_grad_sq =
      opt.beta != 0.0 ? whole_share(h.at(perturb(z, Noise{opt.beta, opt.noise_seed}), true).grad_sq)
                      : st.grad_sq;
  return st;
}

std::vector<double> exact_noisy_grad_sq(const Particles& z, const Particles& teacher,
                                        InputDist dist, const StepOptions& opt,
                                        const std::vector<uint64_t>& seeds, int64_t chunk) {
  const FlowWitness h(z, teacher, dist, opt, chunk);
  std::vector<double> out;
  for (const uint64_t seed : seeds)
    out.push_back(h.at(perturb(z, Noise{opt.beta, seed}), true).grad_sq.item<double>());
  return out;
}

}  // namespace mmdflow
