// The samples family's flows (src/flow/samples.h): a step by hand, 1/2 MMD^2 against the dense
// V-statistic, DrMMD's gradient against finite differences of the DrMMD code's witness written
// densely, Sobolev descent's large-eps limit, the noise, and the rows split over shards.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "src/flow/samples.h"
#include "src/kernels/features.h"
#include "src/kernels/sliced.h"

namespace mmdflow {
namespace {

at::Tensor normal(std::vector<int64_t> sizes, uint64_t seed) {
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::normal(0, 1, sizes, g, at::TensorOptions().dtype(at::kDouble));
}

StepOptions options(Method m, double gamma, double beta, uint64_t seed) {
  StepOptions o;
  o.method = m;
  o.step_size = gamma;
  o.beta = beta;
  o.noise_seed = seed;
  o.drmmd_lambda = 0.1;
  return o;
}

// Z = {(0, 0), (1, 0)}, U = {(0, 1)}, gaussian of bandwidth 1, e = exp(-1/2):
// grad h(z_1) = (1/2) grad_1 k(z_1, z_2) - grad_1 k(z_1, u) = e (1/2, 0) - e (0, 1),
// grad h(z_2) = (1/2) e (-1, 0) + e^{-1} (1, -1).
TEST(SamplesFlow, TwoPointsByHand) {
  const at::Tensor Z = at::tensor({0.0, 0.0, 1.0, 0.0}, at::kDouble).view({2, 2});
  const at::Tensor U = at::tensor({0.0, 1.0}, at::kDouble).view({1, 2});
  const SampleTarget t = make_sample_target(U, {PairKernel::Gaussian, 1.0}, Method::MMD, 0);
  const double e = std::exp(-0.5), e1 = std::exp(-1.0);
  const at::Tensor want = at::tensor({0.5 * e, -e, -0.5 * e + e1, -e1}, at::kDouble).view({2, 2});
  EXPECT_TRUE(at::allclose(witness_grad(t, Z, Z, Method::MMD), want, 1e-15, 1e-15));
  // F = 1/2 [(2 + 2e)/4 - 2 (e + e1)/2 + 1]
  const double F = 0.5 * ((2 + 2 * e) / 4 - (e + e1) + 1);
  EXPECT_NEAR(half_mmd2_of(t, mmd_row_terms(t, Z, Z)), F, 1e-15);
  Points p(Z.clone());
  const StepStats st = samples_step(p, t, options(Method::MMD, 0.5, 0, 1));
  EXPECT_TRUE(at::allclose(p.rows(), Z - 0.5 * want, 1e-15, 1e-15));
  EXPECT_NEAR(st.noisy_grad_sq.whole().item<double>(), want.square().sum().item<double>() / 2, 1e-15);
}

// 1/2 MMD^2 from the row terms is the dense V-statistic, for every kernel.
TEST(SamplesFlow, HalfMmd2IsTheDenseVStatistic) {
  const at::Tensor Z = normal({40, 3}, 1), U = normal({30, 3}, 2) + 0.5;
  for (PairKernel k :
       {PairKernel::Gaussian, PairKernel::Laplace, PairKernel::Imq, PairKernel::Energy}) {
    const PairKernelSpec spec{k, 0.8, 1.0};
    const SampleTarget t = make_sample_target(U, spec, Method::MMD, 0);
    const double want =
        0.5 * (kernel_matrix(spec, Z, Z).mean() - 2 * kernel_matrix(spec, Z, U).mean() +
               kernel_matrix(spec, U, U).mean())
                  .item<double>();
    EXPECT_NEAR(half_mmd2_of(t, mmd_row_terms(t, Z, Z)), want, 1e-13) << name_of(k);
  }
}

// DrMMD (the DrMMD code's fixed-target witness, 2 (1 + lambda)/lambda [h(z) - k(z, U) alpha]):
// the analytic gradient against central differences of that witness evaluated densely.
TEST(SamplesFlow, DrmmdGradientMatchesFiniteDifferencesOfItsWitness) {
  const at::Tensor Z = normal({12, 2}, 3), U = normal({9, 2}, 4);
  const PairKernelSpec spec{PairKernel::Gaussian, 0.7, 1.0};
  const double lambda = 0.05;
  const SampleTarget t = make_sample_target(U, spec, Method::DrMMD, lambda);
  const int64_t M = 9;
  const at::Tensor K = kernel_matrix(spec, U, U);
  const at::Tensor v = kernel_matrix(spec, U, Z).mean(1) - K.mean(1);  // h(U)
  const at::Tensor alpha = at::linalg_solve(K + M * lambda * at::eye(M, K.options()), v);
  auto witness = [&](const at::Tensor& z) {  // [1, 2]
    const at::Tensor h = kernel_matrix(spec, z, Z).mean() - kernel_matrix(spec, z, U).mean();
    return ((h - at::mv(kernel_matrix(spec, z, U), alpha)) * (2 * (1 + lambda) / lambda))
        .item<double>();
  };
  const at::Tensor P = normal({5, 2}, 5);
  const at::Tensor g = witness_grad(t, P, Z, Method::DrMMD, drmmd_alpha(t, Z));
  const double eps = 1e-6;
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t j = 0; j < 2; ++j) {
      at::Tensor a = P[i].clone().view({1, 2}), b = a.clone();
      a[0][j] += eps;
      b[0][j] -= eps;
      EXPECT_NEAR(g[i][j].item<double>(), (witness(a) - witness(b)) / (2 * eps), 1e-7)
          << i << "," << j;
    }
}

// Sobolev descent with a large eps: alpha ~ r / eps, so the step is
// (gamma / (eps B)) sum_b h(x_b) grad_1 k(z_n, x_b) over the dictionary x = (Z; U).
TEST(SamplesFlow, SobolevWithLargeEpsIsTheWitnessWeightedDictionaryStep) {
  const at::Tensor Z = normal({10, 2}, 6), U = normal({7, 2}, 7);
  const PairKernelSpec spec{PairKernel::Imq, 1.3, 0.9};
  const SampleTarget t = make_sample_target(U, spec, Method::Sobolev, 0);
  const double eps = 1e4, gamma = 1.0;
  StepOptions o = options(Method::Sobolev, gamma, 0, 0);
  o.sobolev_eps = eps;
  Points p(Z.clone());
  samples_step(p, t, o);
  const at::Tensor X = at::cat({Z, U});
  const at::Tensor h = kernel_matrix(spec, X, Z).mean(1) - kernel_matrix(spec, X, U).mean(1);
  const at::Tensor J = kernel_grad_matrix(spec, Z, X);  // [N, B, d]
  const at::Tensor step = (J * h.view({1, -1, 1})).sum(1) * (gamma / (eps * double(X.size(0))));
  const double scale = step.abs().max().item<double>();
  EXPECT_GT(scale, 1e-7);
  EXPECT_LT(((Z - p.rows()) - step).abs().max().item<double>(), 1e-3 * scale);
}

// beta = 0 is the plain flow; noise injection is the plain gradient at z + beta w with w the
// rows' point_noise; diffusion adds beta w after the plain step.
TEST(SamplesFlow, NoiseInjectionAndDiffusionUseTheRowsNoise) {
  const at::Tensor Z = normal({150, 2}, 8), U = normal({60, 2}, 9);
  const SampleTarget t = make_sample_target(U, {PairKernel::Gaussian, 0.5}, Method::MMD, 0);
  const at::Tensor w = point_noise({0, 150, 150}, 2, 42, Z.options());
  const at::Tensor g_clean = witness_grad(t, Z, Z, Method::MMD);
  Points plain(Z.clone()), zero(Z.clone()), injected(Z.clone()), diffused(Z.clone());
  samples_step(plain, t, options(Method::MMD, 0.3, 0, 42));
  samples_step(zero, t, options(Method::MMD, 0.3, 0, 7));
  EXPECT_TRUE(at::equal(plain.rows(), zero.rows()));
  EXPECT_TRUE(at::allclose(plain.rows(), Z - 0.3 * g_clean, 0, 1e-15));
  samples_step(injected, t, options(Method::MMD, 0.3, 0.2, 42));
  EXPECT_TRUE(at::allclose(injected.rows(), Z - 0.3 * witness_grad(t, Z + 0.2 * w, Z, Method::MMD),
                           0, 1e-15));
  samples_step(diffused, t, options(Method::Diffusion, 0.3, 0.2, 42));
  EXPECT_TRUE(at::allclose(diffused.rows(), Z - 0.3 * g_clean + 0.2 * w, 0, 1e-15));
  EXPECT_NEAR(w.mean().item<double>(), 0, 0.2);
  EXPECT_NEAR(w.std().item<double>(), 1, 0.1);
}

// Rows split over shards (blocks of kNoiseBlock) move to the same bits as all rows at once, for
// every flow: the sums of a row read the whole measure only.
TEST(SamplesFlow, ShardsMoveTheirRowsToTheSameBits) {
  const int64_t N = 300;
  const at::Tensor Z = normal({N, 2}, 10), U = normal({80, 2}, 11);
  for (Method m : {Method::MMD, Method::Diffusion, Method::Sobolev, Method::DrMMD}) {
    const SampleTarget t = make_sample_target(U, {PairKernel::Gaussian, 0.6}, m, 0.1);
    const StepOptions o = options(m, 0.5, m == Method::Sobolev ? 0 : 0.3, 5);
    Points whole(Z.clone());
    samples_step(whole, t, o);
    at::Tensor joined = at::zeros_like(Z);
    for (const Shard s : {Shard{0, 128, N}, Shard{128, 256, N}, Shard{256, N, N}}) {
      Points part(Z.clone(), s);
      samples_step(part, t, o);
      joined += part.rows_only();
    }
    EXPECT_TRUE(at::equal(joined, whole.whole())) << name_of(m);
  }
}

// The sliced energy kernel: a step moves along the sliced gradient of its noise seed's directions
// (the plain flow, noise injection and diffusion), a new seed draws new directions, and rows split
// over shards move to the same bits.
TEST(SamplesFlow, SlicedEnergyStepsAlongTheStepsDirections) {
  const int64_t N = 300;
  const at::Tensor Z = normal({N, 2}, 12), U = normal({90, 2}, 13) + 1.0;
  SampleTarget t = make_sample_target(U, {PairKernel::Energy}, Method::MMD, 0);
  t.slices = 32;
  const at::Tensor xi = slice_directions(t, 2, 42, Z.options());
  EXPECT_EQ(xi.sizes(), (at::IntArrayRef{32, 2}));
  EXPECT_FALSE(at::equal(xi, slice_directions(t, 2, 43, Z.options())));
  const at::Tensor g = sliced_energy_grad(Z, Z, U, xi);
  EXPECT_TRUE(at::equal(witness_grad(t, Z, Z, Method::MMD, {}, 42), g));
  const at::Tensor w = point_noise({0, N, N}, 2, 42, Z.options());
  Points plain(Z.clone()), injected(Z.clone()), diffused(Z.clone());
  samples_step(plain, t, options(Method::MMD, 0.3, 0, 42));
  EXPECT_TRUE(at::allclose(plain.rows(), Z - 0.3 * g, 0, 1e-15));
  samples_step(injected, t, options(Method::MMD, 0.3, 0.2, 42));
  EXPECT_TRUE(
      at::allclose(injected.rows(), Z - 0.3 * sliced_energy_grad(Z + 0.2 * w, Z, U, xi), 0, 1e-15));
  samples_step(diffused, t, options(Method::Diffusion, 0.3, 0.2, 42));
  EXPECT_TRUE(at::allclose(diffused.rows(), Z - 0.3 * g + 0.2 * w, 0, 1e-15));
  for (Method m : {Method::MMD, Method::Diffusion}) {
    const StepOptions o = options(m, 0.5, 0.3, 5);
    Points whole(Z.clone());
    samples_step(whole, t, o);
    at::Tensor joined = at::zeros_like(Z);
    for (const Shard s : {Shard{0, 128, N}, Shard{128, 256, N}, Shard{256, N, N}}) {
      Points part(Z.clone(), s);
      samples_step(part, t, o);
      joined += part.rows_only();
    }
    EXPECT_TRUE(at::equal(joined, whole.whole())) << name_of(m);
  }
}

}  // namespace
}  // namespace mmdflow
