// Each flow's step against a direct, slow, autograd computation of its formula in docs/math.md
// (float64).
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "src/flow/flow.h"
#include "src/kernels/gram.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

struct Problem : test::Problem {
  Problem()
      : test::Problem(test::family(6, 3, 2, Activation::ReLU, OutputKind::Gaussian, 2, true, true),
                      20, 16) {}
};

// grad_z sum_n sum_b W_b^T phi_{z_n}(x_b) by autograd, at the particles zn.
std::vector<at::Tensor> autograd_grad(const ParticleFamily& f, const Particles& zn,
                                      const at::Tensor& X, const at::Tensor& W) {
  Particles zr = zn.clone();
  std::vector<at::Tensor> leaves;
  for (at::Tensor* t : zr.tensors()) leaves.push_back(t->requires_grad_(true));
  at::Tensor obj = (particle_features(f, zr, X) * W.unsqueeze(0)).sum();
  return torch::autograd::grad({obj}, leaves);
}

// z - gamma g, tensor by tensor.
void expect_step(const Particles& after, const Particles& before, const std::vector<at::Tensor>& g,
                 double gamma, const std::string& what) {
  auto a = after.tensors();
  auto b = before.tensors();
  ASSERT_EQ(a.size(), g.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(at::allclose(*a[i], *b[i] - gamma * g[i], 1e-10, 1e-12)) << what << " tensor " << i;
}

StepStats step(const ParticleFamily& f, Particles& z, const at::Tensor& X, const at::Tensor& Y,
               const StepOptions& opt, const at::Tensor& target = {}, Impl impl = Impl::Auto) {
  auto s = test::block(f, z, impl);
  return flow_step(*s, X, Y, opt, target);
}

TEST(MmdFlow, BetaZeroEqualsThePlainStepExactly) {
  Problem p;
  Particles z = p.z.clone();
  StepOptions opt;
  opt.step_size = 0.3;
  opt.noise_seed = 5;
  StepStats st = step(p.f, z, p.X, p.Y, opt);
  // Plain flow: z - gamma grad h^(z), h^(z) = (1/B) sum_b phi_z(x_b)^T r_b.
  at::Tensor r = residual(*test::block(p.f, p.z), p.X, p.Y);
  Particles grad = weighted_grad(p.f, p.z, p.X, r / 16.0);
  Particles expect = p.z.clone();
  auto et = expect.tensors();
  auto gt = grad.tensors();
  for (size_t i = 0; i < et.size(); ++i) et[i]->add_(*gt[i], -0.3);
  EXPECT_TRUE(test::bit_equal(z, expect));
  EXPECT_DOUBLE_EQ(st.loss.item<double>(), r.square().sum().item<double>() / (2 * 16));
}

// The MMD flow step is gradient descent on the batch loss with learning rate gamma N.
TEST(MmdFlow, EqualsGradientDescentWithRateGammaN) {
  Problem p;
  Particles zr = p.z.clone();
  std::vector<at::Tensor> leaves;
  for (at::Tensor* t : zr.tensors()) leaves.push_back(t->requires_grad_(true));
  at::Tensor loss = 0.5 * (particle_features(p.f, zr, p.X).mean(0) - p.Y).square().sum(1).mean();
  auto grads = torch::autograd::grad({loss}, leaves);
  const double gamma = 0.05, N = double(p.z.size());
  Particles z = p.z.clone();
  StepOptions opt;
  opt.step_size = gamma;
  StepStats st = step(p.f, z, p.X, p.Y, opt);
  EXPECT_NEAR(st.loss.item<double>(), loss.item<double>(), 1e-14);
  for (auto& g : grads) g = g * N;
  expect_step(z, p.z, grads, gamma, "gd");
}

// Noise injection: gradient at z + beta w, residual at the clean particles.
TEST(MmdFlow, NoiseInjectionUsesNoisyGradientAndCleanResidual) {
  Problem p;
  const double beta = 0.7, gamma = 0.2;
  Particles z = p.z.clone();
  StepOptions opt;
  opt.step_size = gamma;
  opt.beta = beta;
  opt.noise_seed = 17;
  opt.clean_grad_sq = true;
  StepStats st = step(p.f, z, p.X, p.Y, opt);
  Particles noisy = perturb(p.z, Noise{beta, 17});            // the draw the fused kernel makes
  at::Tensor r = residual(*test::block(p.f, p.z), p.X, p.Y);  // clean particles
  auto grads = autograd_grad(p.f, noisy, p.X, r / 16.0);
  expect_step(z, p.z, grads, gamma, "noise injection");
  double sq = 0;
  for (auto& g : grads) sq += g.square().sum().item<double>();
  EXPECT_NEAR(st.noisy_grad_sq.whole().item<double>(), sq / 20, 1e-12);
  const double clean = block_sq_norms(weighted_grad(p.f, p.z, p.X, r / 16.0)).sum().item<double>() /
                       double(p.z.size());
  EXPECT_NEAR(st.grad_sq.whole().item<double>(), clean, 1e-12);
  EXPECT_NE(st.grad_sq.whole().item<double>(), st.noisy_grad_sq.whole().item<double>());
}

TEST(MmdFlow, StudentEqualToTeacherHasZeroLossAndZeroWitnessGradient) {
  ParticleFamily f = test::family(4, 3, 1, Activation::ReLU, OutputKind::Gaussian, 2, false, false);
  Particles teacher = test::random_net(f, 1, 3).particles();
  Particles z;  // two copies of the teacher particle: the same measure
  z.A = teacher.A.repeat({2, 1, 1});
  z.B = teacher.B.repeat({2, 1, 1});
  at::Tensor X = test::inputs(10, 4, 4);
  at::Tensor Y = feature_sum(f, teacher, X);
  for (double beta : {0.0, 0.5}) {
    Particles zs = z.clone();
    StepOptions opt;
    opt.beta = beta;
    opt.noise_seed = 1;
    opt.clean_grad_sq = true;
    StepStats st = step(f, zs, X, Y, opt);
    EXPECT_EQ(st.loss.item<double>(), 0.0);
    EXPECT_EQ(st.grad_sq.whole().item<double>(), 0.0);
    EXPECT_EQ(st.noisy_grad_sq.whole().item<double>(), 0.0);
    EXPECT_TRUE(test::bit_equal(zs, z));
  }
}

TEST(MmdFlow, ChunkedStepEqualsWholeStep) {
  Problem p;
  p.z = test::random_net(p.f, 300, 1).particles();  // several noise blocks
  for (Impl impl : {Impl::Fused, Impl::Generic}) {
    StepOptions opt;
    opt.step_size = 0.1;
    opt.beta = 0.5;
    opt.noise_seed = 8;
    Particles a = p.z.clone();
    flow_step(*test::block(p.f, a, impl), p.X, p.Y, opt);
    for (int64_t chunk : {1, 100, 128, 299}) {
      Particles b = p.z.clone();
      flow_step(*test::block(p.f, b, impl, chunk), p.X, p.Y, opt);
      EXPECT_LT(test::max_abs_diff(a, b), 1e-13) << chunk;
    }
  }
}

// On CPU both paths draw the same noise: the fused kernel's blocks equal perturb()'s tensors.
TEST(MmdFlow, FusedAndGenericNoisyStepsAgree) {
  Problem p;
  p.z = test::random_net(p.f, 300, 1).particles();
  StepOptions opt;
  opt.step_size = 0.1;
  opt.beta = 0.5;
  opt.noise_seed = 3;
  Particles a = p.z.clone(), b = p.z.clone(), c = p.z.clone();
  StepStats sa = step(p.f, a, p.X, p.Y, opt, {}, Impl::Fused);
  StepStats sb = step(p.f, b, p.X, p.Y, opt, {}, Impl::Generic);
  EXPECT_LT(test::max_abs_diff(a, b), 1e-13);
  EXPECT_NEAR(sa.noisy_grad_sq.whole().item<double>(), sb.noisy_grad_sq.whole().item<double>(),
              1e-13);
  opt.noise_seed = 4;  // a new seed is new noise
  step(p.f, c, p.X, p.Y, opt);
  EXPECT_GT(test::max_abs_diff(a, c), 1e-6);
}

TEST(MmdFlow, RepeatedStepsLowerTheLoss) {
  Problem p;
  Particles z = p.z.clone();
  auto s = test::block(p.f, z);
  StepOptions opt;
  opt.step_size = 1.0;
  const double before = half_mse(*s, p.X, p.Y, 16).item<double>();
  for (int i = 0; i < 300; ++i) flow_step(*s, p.X, p.Y, opt);
  EXPECT_LT(half_mse(*s, p.X, p.Y, 16).item<double>(), 0.1 * before);
}

// Diffusion (block): z - gamma grad h^(z) + beta w.
TEST(Diffusion, StepThenNoise) {
  Problem p;
  const double beta = 0.3, gamma = 0.2;
  Particles z = p.z.clone();
  StepOptions opt;
  opt.method = Method::Diffusion;
  opt.step_size = gamma;
  opt.beta = beta;
  opt.noise_seed = 9;
  step(p.f, z, p.X, p.Y, opt);
  at::Tensor r = residual(*test::block(p.f, p.z), p.X, p.Y);
  auto grads = autograd_grad(p.f, p.z, p.X, r / 16.0);
  Particles noisy = perturb(p.z, Noise{beta, 9});
  auto nt = noisy.tensors();
  auto zt = p.z.tensors();
  for (size_t i = 0; i < grads.size(); ++i) grads[i] = grads[i] - (*nt[i] - *zt[i]) / gamma;
  expect_step(z, p.z, grads, gamma, "diffusion");
}

// Sobolev descent with the Jacobians J_{b,n} taken one input at a time by autograd.
TEST(Sobolev, MatchesTheJacobianFormula) {
  ParticleFamily f = test::family(5, 2, 1, Activation::Tanh, OutputKind::Gaussian, 2, true, true);
  Particles z0 = test::random_net(f, 7, 4).particles();
  Particles teacher = test::random_net(f, 1, 5).particles();
  const int64_t B = 9, N = 7;
  at::Tensor X = test::inputs(B, 5, 6);
  at::Tensor Y = particle_features(f, teacher, X).mean(0);
  // J [B, N P]: row b = grad of sum_n phi_n(x_b) over every particle coordinate.
  std::vector<at::Tensor> rows;
  for (int64_t b = 0; b < B; ++b) {
    auto g = autograd_grad(f, z0, X.narrow(0, b, 1), at::ones({1, 1}, at::kDouble));
    std::vector<at::Tensor> flat;
    for (auto& t : g) flat.push_back(t.reshape({N, -1}));
    rows.push_back(at::cat(flat, 1).reshape({-1}));
  }
  at::Tensor J = at::stack(rows);
  const double eps = 1e-6, gamma = 0.3;
  at::Tensor S = at::mm(J, J.t()) / double(N * B) + eps * at::eye(B, at::kDouble);
  EXPECT_TRUE(at::allclose(jacobian_gram_blocks(f, z0, X).sum(0), at::mm(J, J.t()), 1e-10, 1e-12));
  at::Tensor r = residual(*test::block(f, z0), X, Y);
  at::Tensor alpha = at::linalg_solve(S, r);
  at::Tensor update = at::mm(alpha.t(), J).reshape({-1}) / double(B);  // (1/B) sum_b alpha_b J_b
  Particles z = z0.clone();
  StepOptions opt;
  opt.method = Method::Sobolev;
  opt.step_size = gamma;
  opt.sobolev_eps = eps;
  step(f, z, X, Y, opt);
  at::Tensor moved = (z0.flat() - z.flat()).reshape({-1}) / gamma;
  // flat() orders coordinates per particle (A, a, B, b), as the rows of J.
  EXPECT_TRUE(at::allclose(moved, update, 1e-8, 1e-10)) << (moved - update).abs().max();
}

// DrMMD: grad of h_lambda(z) = ((1 + l) / l) [h(z) - k(z, X) (K_XX + M l I)^{-1} h(X)] at the
// noisy particles, with k from the explicit random-feature Gram.
TEST(DrMMD, MatchesTheWitnessFormula) {
  Problem p;
  p.teacher = test::random_net(p.f, 3, 12).particles();
  p.Y = particle_features(p.f, p.teacher, p.X).mean(0);
  const double lambda = 0.4, beta = 0.3, gamma = 0.2, c = (1 + lambda) / lambda;
  const int64_t M = 3, B = 16;
  at::Tensor r = residual(*test::block(p.f, p.z), p.X, p.Y);  // [B, o]
  at::Tensor PhiX = particle_features(p.f, p.teacher, p.X);   // [M, B, o]
  at::Tensor hX = (PhiX * r.unsqueeze(0)).sum({1, 2}) / double(B);
  at::Tensor KXX = gram(p.f, p.teacher, p.f, p.teacher, p.X);
  at::Tensor coef = at::linalg_solve(KXX + M * lambda * at::eye(M, at::kDouble), hX.unsqueeze(1));
  Particles noisy = perturb(p.z, Noise{beta, 21});
  Particles zr = noisy.clone();
  std::vector<at::Tensor> leaves;
  for (at::Tensor* t : zr.tensors()) leaves.push_back(t->requires_grad_(true));
  at::Tensor h = (particle_features(p.f, zr, p.X) * r.unsqueeze(0)).sum({1, 2}) / double(B);
  at::Tensor k = gram(p.f, zr, p.f, p.teacher, p.X);  // [N, M]
  at::Tensor hl = c * (h - at::mm(k, coef).squeeze(1));
  auto grads = torch::autograd::grad({hl.sum()}, leaves);
  Particles z = p.z.clone();
  StepOptions opt;
  opt.method = Method::DrMMD;
  opt.step_size = gamma;
  opt.beta = beta;
  opt.noise_seed = 21;
  opt.drmmd_lambda = lambda;
  step(p.f, z, p.X, p.Y, opt, PhiX);
  expect_step(z, p.z, grads, gamma, "drmmd");
}

// A singular system is no error (its status is never read on the host): the non-finite solution
// reaches the particles, where the trainer's check ends the run (exit 3, test_cli.cpp).
TEST(Methods, SingularSystemGivesNonFiniteParticles) {
  ParticleFamily f = test::family(6, 3, 1, Activation::ReLU, OutputKind::Identity, 1, false, false);
  Particles zero = test::random_net(f, 20, 1, at::kFloat, 0.0).particles();
  Particles z = test::random_net(f, 20, 1, at::kFloat).particles();
  at::Tensor X = test::inputs(16, 6, 3, at::kFloat);
  // float32, where a regulariser of 1e-300 is 0: with all-zero student particles every Jacobian
  // vanishes (S = 0); with an all-zero teacher every target feature does (K_XX = 0).
  at::Tensor Y = particle_features(f, z, X).mean(0);
  StepOptions opt;
  opt.method = Method::Sobolev;
  opt.sobolev_eps = 1e-300;
  Particles a = zero.clone();
  step(f, a, X, Y, opt);
  EXPECT_FALSE(at::isfinite(a.flat()).all().item<bool>());
  opt.method = Method::DrMMD;
  opt.drmmd_lambda = 1e-300;
  Particles b = z.clone();
  step(f, b, X, at::zeros_like(Y), opt, particle_features(f, zero, X));
  EXPECT_FALSE(at::isfinite(b.flat()).all().item<bool>());
}

// float32 follows float64 over 100 steps of noise injection (the same init and noise, rounded).
TEST(MmdFlow, Float32FollowsFloat64Over100Steps) {
  ParticleFamily f =
      test::family(20, 3, 1, Activation::ReLU, OutputKind::Gaussian, 2, false, false);
  Particles z64 = test::random_net(f, 300, 1).particles();
  Particles z32 = z64.to(at::TensorOptions().dtype(at::kFloat));
  Particles teacher = test::random_net(f, 1, 2).particles();
  at::Tensor X = test::inputs(200, 20, 3);
  X = X / X.norm(2, {1}, true);
  at::Tensor Y = particle_features(f, teacher, X).mean(0);
  auto s64 = test::block(f, z64);
  auto s32 = test::block(f, z32);
  StepOptions opt;
  opt.step_size = 1.0;
  double worst_loss = 0;
  for (int t = 0; t < 100; ++t) {
    opt.beta = 0.5;
    opt.noise_seed = uint64_t(t);
    at::Tensor Xb = X.narrow(0, (t % 4) * 50, 50), Yb = Y.narrow(0, (t % 4) * 50, 50);
    const double l64 = flow_step(*s64, Xb, Yb, opt).loss.item<double>();
    const double l32 =
        flow_step(*s32, Xb.to(at::kFloat), Yb.to(at::kFloat), opt).loss.item<double>();
    worst_loss = std::max(worst_loss, std::abs(l32 - l64) / l64);
  }
  EXPECT_LT(worst_loss, 1e-4);  // the tolerance the README states
  EXPECT_LT(test::max_abs_diff(z32, z64), 1e-4 * z64.flat().abs().max().item<double>());
}

}  // namespace
}  // namespace mmdflow
