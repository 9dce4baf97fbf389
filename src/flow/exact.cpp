#include "src/flow/exact.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "src/base/random.h"
#include "src/kernels/arccos.h"

namespace mmdflow {

StepStats exact_step(Particles& z, const Particles& teacher, InputDist dist, const StepOptions& opt,
                     int64_t chunk) {
  TORCH_CHECK(opt.method != Method::Sobolev,
              "the sobolev flow has no population form: its Gram is indexed by inputs");
  TORCH_CHECK(opt.method != Method::DrMMD || opt.drmmd_lambda > 0.0,
              "the DrMMD flow needs lambda > 0, got ", opt.drmmd_lambda);
  const ExactKernel kernel{dist, chunk};
  const Noise noise{opt.beta, opt.noise_seed};
  // At the teacher's particles: (1/N) sum_n k(u_m, z_n) and (1/M) sum_m' k(u_m, u_m') for the
  // loss, h(X) for DrMMD. M queries: O(M (N + M) d).
  const ExactWitness at_teacher = exact_witness(teacher, z, teacher, kernel, /*with_grad=*/false);
  at::Tensor mass;  // the teacher's masses in the applied witness (default 1/M)
  double scale = 1.0;
  if (opt.method == Method::DrMMD) {
    const int64_t M = teacher.size();
    const double lambda = opt.drmmd_lambda;
    const at::Tensor w = teacher.A.reshape({M, -1}).to(at::kDouble);
    const at::Tensor v = teacher.B.reshape({M, -1}).to(at::kDouble);
    const at::Tensor K = arccos_kernel(w, v, w, v, dist) +
                         double(M) * lambda * at::eye(M, w.options());  // K_XX + M lambda I
    // h_lambda = scale [(1/N) sum_n k(., z_n) - sum_m (1/M + beta_m) k(., u_m)].
    mass = at::linalg_solve(K, at_teacher.value()) + 1.0 / double(M);
    scale = (1.0 + lambda) / lambda;
  }
  const bool inject = opt.method != Method::Diffusion && opt.beta != 0.0;
  const bool clean_grad = !inject || opt.clean_grad_sq;
  const ExactWitness clean = exact_witness(z, z, teacher, kernel, clean_grad, mass);
  StepStats st;
  // MMD^2 = mean k(z, z') - 2 mean k(z, u) + mean k(u, u'), the middle term from the teacher's
  // side (the clean pass's teacher part carries the DrMMD masses).
  st.loss =
      0.5 * (clean.student.mean() - 2.0 * at_teacher.student.mean() + at_teacher.teacher.mean());
  Particles g = clean.grad;
  if (clean_grad) st.grad_sq = clean.grad_sq * (scale * scale);
  if (inject) {
    const ExactWitness noisy = exact_witness(perturb(z, noise), z, teacher, kernel, true, mass);
    g = noisy.grad;
    st.noisy_grad_sq = noisy.grad_sq * (scale * scale);
  } else {
    st.noisy_grad_sq = st.grad_sq;
  }
  z.A.add_(g.A, -opt.step_size * scale);
  z.B.add_(g.B, -opt.step_size * scale);
  if (opt.method == Method::Diffusion && opt.beta != 0.0) {
    const Particles p = perturb(z, noise);
    z.A.copy_(p.A);
    z.B.copy_(p.B);
  }
  return st;
}

double exact_step_ms(int64_t N, int64_t M, int64_t d, c10::ScalarType dtype, InputDist dist,
                     StepOptions opt, int64_t repeats, uint64_t seed) {
  ParticleFamily fam;
  fam.dim = d;
  fam.hidden = 1;
  fam.outputs = 1;
  fam.activation = Activation::ReLU;
  fam.out = {OutputKind::Identity, 1.0};
  at::Generator gen = make_generator(c10::Device(c10::kCPU), seed);
  ParticleNet teacher(ParticleNetOptions(M, fam).dtype(dtype), gen);
  ParticleNet student(ParticleNetOptions(N, fam).dtype(dtype), gen);
  std::vector<double> ms;
  for (int64_t r = 0; r <= repeats; ++r) {
    opt.noise_seed = sub_seed(seed, uint64_t(r));
    const auto t = std::chrono::steady_clock::now();
    exact_step(student.particles(), teacher.particles(), dist, opt);
    const std::chrono::duration<double, std::milli> dt = std::chrono::steady_clock::now() - t;
    if (r > 0) ms.push_back(dt.count());
  }
  std::sort(ms.begin(), ms.end());
  return ms.empty() ? 0.0 : ms[ms.size() / 2];
}

}  // namespace mmdflow
