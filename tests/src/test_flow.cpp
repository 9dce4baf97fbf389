#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "src/flow.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

struct Problem {
  ParticleFamily f = test::family(6, 3, 2, Activation::ReLU, OutputKind::Gaussian, 2, true, true);
  Particles z = test::random_net(f, 20, 1).particles();
  Particles teacher = test::random_net(f, 2, 2).particles();
  at::Tensor X = test::inputs(16, 6, 3);
  at::Tensor Y = particle_features(f, teacher, X).mean(0);
};

TEST(MmdStep, BetaZeroEqualsThePlainStepExactly) {
  Problem p;
  Particles z = p.z.clone();
  StepOptions opt;
  opt.step_size = 0.3;
  opt.beta = 0.0;
  opt.noise_seed = 5;
  StepStats st = mmd_step(p.f, z, p.X, p.Y, opt);
  // Plain flow: z - gamma grad h^(z), h^(z) = (1/B) sum_b phi_z(x_b)^T r_b.
  at::Tensor r = residual(p.f, p.z, p.X, p.Y);
  Particles grad = weighted_grad(p.f, p.z, p.X, r / double(p.X.size(0)));
  Particles expect = p.z.clone();
  auto et = expect.tensors();
  auto gt = grad.tensors();
  for (size_t i = 0; i < et.size(); ++i) et[i]->add_(*gt[i], -0.3);
  EXPECT_TRUE(test::bit_equal(z, expect));
  EXPECT_DOUBLE_EQ(st.loss.item<double>(), r.square().sum().item<double>() / (2 * 16));
}

// The MMD flow step is gradient descent on the batch loss with learning rate gamma N.
TEST(MmdStep, EqualsGradientDescentWithRateGammaN) {
  Problem p;
  Particles zr = p.z.clone();
  std::vector<at::Tensor> leaves;
  for (at::Tensor* t : zr.tensors()) leaves.push_back(t->requires_grad_(true));
  at::Tensor f = particle_features(p.f, zr, p.X).mean(0);
  at::Tensor loss = 0.5 * (f - p.Y).square().sum(1).mean();
  auto grads = torch::autograd::grad({loss}, leaves);
  const double gamma = 0.05, N = double(p.z.size());
  Particles z = p.z.clone();
  StepOptions opt;
  opt.step_size = gamma;
  StepStats st = mmd_step(p.f, z, p.X, p.Y, opt);
  EXPECT_NEAR(st.loss.item<double>(), loss.item<double>(), 1e-14);
  auto zt = z.tensors();
  auto z0 = p.z.tensors();
  for (size_t i = 0; i < zt.size(); ++i)
    EXPECT_TRUE(at::allclose(*zt[i], *z0[i] - gamma * N * grads[i], 1e-12, 1e-13)) << i;
}

// Noise injection: gradient at z + beta w, residual at the clean particles.
TEST(MmdStep, NoiseInjectionUsesNoisyGradientAndCleanResidual) {
  Problem p;
  const double beta = 0.7, gamma = 0.2;
  Particles z = p.z.clone();
  StepOptions opt;
  opt.step_size = gamma;
  opt.beta = beta;
  opt.noise_seed = 17;
  opt.clean_grad_sq = true;
  StepStats st = mmd_step(p.f, z, p.X, p.Y, opt);

  Particles noisy = perturb(p.z, Noise{beta, 17});  // the draw the fused kernel makes
  at::Tensor r = residual(p.f, p.z, p.X, p.Y);   // clean particles
  Particles zr = noisy.clone();
  std::vector<at::Tensor> leaves;
  for (at::Tensor* t : zr.tensors()) leaves.push_back(t->requires_grad_(true));
  at::Tensor h = (particle_features(p.f, zr, p.X) * (r / 16.0).unsqueeze(0)).sum();
  auto grads = torch::autograd::grad({h}, leaves);
  auto zt = z.tensors();
  auto z0 = p.z.tensors();
  double sq = 0;
  for (size_t i = 0; i < zt.size(); ++i) {
    EXPECT_TRUE(at::allclose(*zt[i], *z0[i] - gamma * grads[i], 1e-12, 1e-13)) << i;
    sq += grads[i].square().sum().item<double>();
  }
  EXPECT_NEAR(st.noisy_grad_sq.item<double>(), sq / 20, 1e-12);
  const double clean = mean_sq_norm(weighted_grad(p.f, p.z, p.X, r / 16.0)).item<double>();
  EXPECT_NEAR(st.grad_sq.item<double>(), clean, 1e-12);
  EXPECT_NE(st.grad_sq.item<double>(), st.noisy_grad_sq.item<double>());
}

TEST(MmdStep, StudentEqualToTeacherHasZeroLossAndZeroWitnessGradient) {
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
    StepStats st = mmd_step(f, zs, X, Y, opt);
    EXPECT_EQ(st.loss.item<double>(), 0.0);
    EXPECT_EQ(st.grad_sq.item<double>(), 0.0);
    EXPECT_EQ(st.noisy_grad_sq.item<double>(), 0.0);
    EXPECT_TRUE(test::bit_equal(zs, z));
  }
}

TEST(MmdStep, ChunkedStepEqualsWholeStep) {
  Problem p;
  p.z = test::random_net(p.f, 300, 1).particles();  // several noise blocks
  for (Impl impl : {Impl::Fused, Impl::Generic}) {
    StepOptions opt;
    opt.step_size = 0.1;
    opt.beta = 0.5;
    opt.noise_seed = 8;
    opt.impl = impl;
    Particles a = p.z.clone();
    mmd_step(p.f, a, p.X, p.Y, opt);
    for (int64_t chunk : {1, 100, 128, 299}) {
      Particles b = p.z.clone();
      opt.chunk = chunk;
      mmd_step(p.f, b, p.X, p.Y, opt);
      EXPECT_LT(test::max_abs_diff(a, b), 1e-13) << chunk;
    }
  }
}

// On CPU both paths draw the same noise: the fused kernel's blocks equal perturb()'s tensors.
TEST(MmdStep, FusedAndGenericNoisyStepsAgree) {
  Problem p;
  p.z = test::random_net(p.f, 300, 1).particles();
  StepOptions opt;
  opt.step_size = 0.1;
  opt.beta = 0.5;
  opt.noise_seed = 3;
  Particles a = p.z.clone(), b = p.z.clone();
  opt.impl = Impl::Fused;
  StepStats sa = mmd_step(p.f, a, p.X, p.Y, opt);
  opt.impl = Impl::Generic;
  StepStats sb = mmd_step(p.f, b, p.X, p.Y, opt);
  EXPECT_LT(test::max_abs_diff(a, b), 1e-13);
  EXPECT_NEAR(sa.noisy_grad_sq.item<double>(), sb.noisy_grad_sq.item<double>(), 1e-13);
  // A new seed is new noise.
  Particles c = p.z.clone();
  opt.noise_seed = 4;
  mmd_step(p.f, c, p.X, p.Y, opt);
  EXPECT_GT(test::max_abs_diff(a, c), 1e-6);
}

TEST(MmdStep, RepeatedStepsLowerTheLoss) {
  Problem p;
  Particles z = p.z.clone();
  StepOptions opt;
  opt.step_size = 1.0;
  const double before = half_mse(p.f, z, p.X, p.Y, 16).item<double>();
  for (int i = 0; i < 300; ++i) mmd_step(p.f, z, p.X, p.Y, opt);
  EXPECT_LT(half_mse(p.f, z, p.X, p.Y, 16).item<double>(), 0.1 * before);
}

}  // namespace
}  // namespace mmdflow
