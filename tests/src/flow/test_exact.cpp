// The exact population flow: steps by hand, the DrMMD formula by autograd, and the sampled flow's
// step on B fresh inputs converging to it like 1/sqrt(B).
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>

#include "data/dataset.h"
#include "src/flow/exact.h"
#include "src/kernels/arccos.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

ParticleFamily exact_family(int64_t d, int64_t o) {
  return test::family(d, 1, o, Activation::ReLU, OutputKind::Identity, 1, false, false);
}

at::Tensor W(const Particles& z) { return z.A.squeeze(1); }
at::Tensor V(const Particles& z) { return z.B.squeeze(2); }

StepOptions options(Method m, double gamma, double beta, uint64_t seed, double lambda = 1.0) {
  StepOptions opt;
  opt.method = m;
  opt.step_size = gamma;
  opt.beta = beta;
  opt.noise_seed = seed;
  opt.drmmd_lambda = lambda;
  return opt;
}

// Student (e1, 1), (e2, 1), teacher (e1, 1), Gaussian inputs (test_arccos.cpp derives h):
// with a = 1/4 - 1/(4 pi), grad h(z1) = ((-a, 1/8), -a), grad h(z2) = ((-1/8, a), a).
TEST(ExactFlow, TwoParticlesByHand) {
  Particles z;
  z.A = at::tensor({1.0, 0.0, 0.0, 1.0}, at::kDouble).view({2, 1, 2});
  z.B = at::ones({2, 1, 1}, at::kDouble);
  Particles t{z.A.narrow(0, 0, 1).clone(), {}, z.B.narrow(0, 0, 1).clone(), {}};
  const double a = 0.25 - 0.25 / M_PI, gamma = 0.1;
  StepStats st = exact_step(z, t, InputDist::Gaussian, options(Method::MMD, gamma, 0.0, 0));
  const at::Tensor A =
      at::tensor({1 + gamma * a, -gamma / 8, gamma / 8, 1 - gamma * a}, at::kDouble);
  const at::Tensor B = at::tensor({1 + gamma * a, 1 - gamma * a}, at::kDouble);
  EXPECT_TRUE(at::allclose(z.A.flatten(), A, 0, 1e-15)) << z.A;
  EXPECT_TRUE(at::allclose(z.B.flatten(), B, 0, 1e-15)) << z.B;
  EXPECT_NEAR(st.loss.item<double>(), a / 2, 1e-15);
  EXPECT_NEAR(st.grad_sq.whole().item<double>(), 2 * a * a + 1.0 / 64, 1e-15);
  EXPECT_EQ(st.noisy_grad_sq.whole().item<double>(), st.grad_sq.whole().item<double>());
}

// RMS over R batches of ||(sampled step) - (exact step)||, relative to ||exact step||: flow_step on
// a block student with B fresh inputs, the same options and noise seed.
double sampled_error(const ParticleFamily& f, const Particles& z, const Particles& t,
                     InputDist dist, const StepOptions& opt, int64_t B, int R, double* loss_err) {
  Particles ze = z.clone();
  const double loss = exact_step(ze, t, dist, opt).loss.item<double>();
  const at::Tensor de = ze.flat() - z.flat();
  at::Generator g = test::gen(uint64_t(B));
  double sq = 0, lsq = 0;
  for (int r = 0; r < R; ++r) {
    const at::Tensor X = sample_inputs(dist, B, f.dim, g, at::TensorOptions().dtype(at::kDouble));
    const at::Tensor Phi = particle_features(f, t, X);  // [M, B, o]
    Particles zs = z.clone();
    auto s = test::block(f, zs);
    StepStats st =
        flow_step(*s, X, Phi.mean(0), opt, opt.method == Method::DrMMD ? Phi : at::Tensor());
    sq += (zs.flat() - z.flat() - de).square().sum().item<double>();
    lsq += std::pow(st.loss.item<double>() - loss, 2);
  }
  *loss_err = std::sqrt(lsq / R) / loss;
  return std::sqrt(sq / R) / de.norm().item<double>();
}

struct Case {
  Method method;
  double beta, lambda;
  InputDist dist;
};

// The exact step is the B -> infinity limit of the sampled one, with the same normalisation and
// the same w: the error shrinks by sqrt(8) for every 8 times more inputs.
TEST(ExactFlow, SampledStepConvergesToTheExactStep) {
  const ParticleFamily f = exact_family(3, 2);
  const Particles z = test::random_net(f, 6, 1).particles();
  const Particles t = test::random_net(f, 2, 2).particles();
  const Case cases[] = {{Method::MMD, 0.0, 1.0, InputDist::Gaussian},
                        {Method::MMD, 0.5, 1.0, InputDist::Sphere},
                        {Method::Diffusion, 0.5, 1.0, InputDist::Gaussian},
                        {Method::DrMMD, 0.0, 0.5, InputDist::Sphere},
                        {Method::DrMMD, 0.3, 0.5, InputDist::Gaussian}};
  for (const Case& c : cases) {
    const StepOptions opt = options(c.method, 0.5, c.beta, 7, c.lambda);
    std::vector<double> err;
    double loss_err = 0;
    for (int64_t B : {1 << 8, 1 << 11, 1 << 14})
      err.push_back(sampled_error(f, z, t, c.dist, opt, B, 16, &loss_err));
    const std::string what = std::string(name_of(c.method)) + " beta " + std::to_string(c.beta);
    for (size_t i = 1; i < err.size(); ++i) {
      EXPECT_GT(err[i] / err[i - 1], 0.18) << what << " " << err[i] << " vs " << err[i - 1];
      EXPECT_LT(err[i] / err[i - 1], 0.65) << what << " " << err[i] << " vs " << err[i - 1];
    }
    EXPECT_GT(err[2] / err[0], 0.07) << what;  // 1/8 expected
    EXPECT_LT(err[2] / err[0], 0.22) << what;
    EXPECT_LT(err.back(), 0.04) << what;
    EXPECT_LT(loss_err, 0.02) << what;
  }
}

// h(X) = (1/N) sum_n k(u_m, z_n) - (1/M) sum_m' k(u_m, u_m'), by the dense reference.
at::Tensor dense_witness(const at::Tensor& wq, const at::Tensor& vq, const Particles& s,
                         const Particles& t, InputDist dist) {
  return arccos_kernel(wq, vq, W(s), V(s), dist).mean(1) -
         arccos_kernel(wq, vq, W(t), V(t), dist).mean(1);
}

// DrMMD: grad of h_lambda(z) = ((1 + l) / l) [h(z) - k(z, X) (K_XX + M l I)^{-1} h(X)] at the
// noisy particles, by autograd through the dense kernel.
TEST(ExactFlow, DrMMDMatchesTheWitnessFormula) {
  const ParticleFamily f = exact_family(4, 2);
  const Particles z = test::random_net(f, 9, 3).particles();
  const Particles t = test::random_net(f, 3, 4).particles();
  const double lambda = 0.4, beta = 0.3, gamma = 0.2, c = (1 + lambda) / lambda;
  for (InputDist dist : {InputDist::Gaussian, InputDist::Sphere}) {
    const at::Tensor hX = dense_witness(W(t), V(t), z, t, dist);
    const at::Tensor K = arccos_kernel(W(t), V(t), W(t), V(t), dist);
    const at::Tensor coef = at::linalg_solve(K + 3 * lambda * at::eye(3, at::kDouble), hX);
    const Particles noisy = perturb(z, Noise{beta, 21});
    at::Tensor wq = W(noisy).clone().requires_grad_(true);
    at::Tensor vq = V(noisy).clone().requires_grad_(true);
    const at::Tensor hl = c * (dense_witness(wq, vq, z, t, dist) -
                               at::mv(arccos_kernel(wq, vq, W(t), V(t), dist), coef));
    auto g = torch::autograd::grad({hl.sum()}, {wq, vq});
    Particles zz = z.clone();
    exact_step(zz, t, dist, options(Method::DrMMD, gamma, beta, 21, lambda));
    EXPECT_TRUE(at::allclose(W(zz), W(z) - gamma * g[0], 1e-12, 1e-14)) << name_of(dist);
    EXPECT_TRUE(at::allclose(V(zz), V(z) - gamma * g[1], 1e-12, 1e-14)) << name_of(dist);
  }
}

// Noise injection steps along grad h at perturb(z) (the sampled flow's w), from z; diffusion is
// the plain step, then perturb.
TEST(ExactFlow, NoiseIsTheSampledFlows) {
  const ParticleFamily f = exact_family(5, 1);
  const Particles z = test::random_net(f, 200, 5).particles();
  const Particles t = test::random_net(f, 2, 6).particles();
  const ExactKernel kernel{InputDist::Sphere, 0};
  Particles a = z.clone();
  exact_step(a, t, kernel.dist, options(Method::MMD, 0.3, 0.6, 9));
  const ExactWitness h = exact_witness(perturb(z, Noise{0.6, 9}), z, t, kernel);
  EXPECT_TRUE(test::bit_equal(
      a, Particles{at::add(z.A, h.grad.A, -0.3), {}, at::add(z.B, h.grad.B, -0.3), {}}));
  Particles plain = z.clone(), diffused = z.clone();
  exact_step(plain, t, kernel.dist, options(Method::MMD, 0.3, 0.0, 9));
  exact_step(diffused, t, kernel.dist, options(Method::Diffusion, 0.3, 0.6, 9));
  EXPECT_TRUE(test::bit_equal(diffused, perturb(plain, Noise{0.6, 9})));
}

TEST(ExactFlow, Statistics) {
  const ParticleFamily f = exact_family(5, 2);
  const Particles z = test::random_net(f, 150, 7).particles();
  const Particles t = test::random_net(f, 3, 8).particles();
  const ExactKernel kernel{InputDist::Gaussian, 0};
  StepOptions opt = options(Method::MMD, 0.3, 0.6, 9);
  Particles a = z.clone();
  StepStats st = exact_step(a, t, kernel.dist, opt);
  EXPECT_FALSE(st.grad_sq.nodes.defined());  // beta > 0: a second pass, on request only
  EXPECT_NEAR(st.loss.item<double>(), 0.5 * exact_mmd2(z, t, kernel.dist).item<double>(), 1e-15);
  EXPECT_EQ(st.noisy_grad_sq.whole().item<double>(),
            exact_grad_sq(z, t, kernel, Noise{0.6, 9}).item<double>());
  opt.clean_grad_sq = true;
  a = z.clone();
  st = exact_step(a, t, kernel.dist, opt);
  EXPECT_EQ(st.grad_sq.whole().item<double>(), exact_grad_sq(z, t, kernel).item<double>());
  EXPECT_GT(st.grad_sq.whole().item<double>(), 0.0);
  EXPECT_NE(st.grad_sq.whole().item<double>(), st.noisy_grad_sq.whole().item<double>());
}

// The theory's statistics without a step: the loss and both gradient norms of the flow's witness
// (h_lambda for DrMMD), the noisy one at z + beta w for diffusion too; z unchanged.
TEST(ExactFlow, StatisticsWithoutAStep) {
  const ParticleFamily f = exact_family(4, 2);
  const Particles z = test::random_net(f, 140, 17).particles();
  const Particles t = test::random_net(f, 3, 18).particles();
  const ExactKernel kernel{InputDist::Sphere, 0};
  const Particles before = z.clone();
  for (Method m : {Method::MMD, Method::Diffusion, Method::DrMMD}) {
    StepOptions opt = options(m, 0.3, 0.5, 19, 0.4);
    const StepStats st = exact_stats(z, t, kernel.dist, opt);
    EXPECT_TRUE(test::bit_equal(z, before)) << name_of(m);
    Particles a = z.clone();
    opt.clean_grad_sq = true;
    const StepStats step = exact_step(a, t, kernel.dist, opt);
    EXPECT_EQ(st.loss.item<double>(), step.loss.item<double>()) << name_of(m);
    EXPECT_EQ(st.grad_sq.whole().item<double>(), step.grad_sq.whole().item<double>()) << name_of(m);
    if (m == Method::Diffusion) {
      EXPECT_EQ(st.noisy_grad_sq.whole().item<double>(),
                exact_grad_sq(z, t, kernel, Noise{0.5, 19}).item<double>());
    } else {
      EXPECT_EQ(st.noisy_grad_sq.whole().item<double>(), step.noisy_grad_sq.whole().item<double>()) << name_of(m);
      // The applied gradient's mean square norm is the step's, over gamma^2 (h_lambda's scale).
      const double moved = (a.flat() - z.flat()).square().sum(1).mean().item<double>() / 0.09;
      EXPECT_NEAR(st.noisy_grad_sq.whole().item<double>(), moved, 1e-12 * moved) << name_of(m);
    }
    EXPECT_NE(st.noisy_grad_sq.whole().item<double>(), st.grad_sq.whole().item<double>()) << name_of(m);
    opt.beta = 0;
    const StepStats plain = exact_stats(z, t, kernel.dist, opt);
    EXPECT_EQ(plain.noisy_grad_sq.whole().item<double>(), plain.grad_sq.whole().item<double>()) << name_of(m);
  }
}

// Euler steps of a gradient flow with a small step: the exact loss decreases at every step.
TEST(ExactFlow, PlainFlowDecreasesTheLoss) {
  const ParticleFamily f = exact_family(5, 1);
  Particles z = test::random_net(f, 100, 10).particles();
  const Particles t = test::random_net(f, 1, 11).particles();
  double last = INFINITY;
  for (int s = 0; s < 30; ++s) {
    const double loss =
        exact_step(z, t, InputDist::Sphere, options(Method::MMD, 5.0, 0.0, 0)).loss.item<double>();
    EXPECT_LT(loss, last) << "step " << s;
    last = loss;
  }
  EXPECT_LT(last, 0.5 * exact_mmd2(test::random_net(f, 100, 10).particles(), t, InputDist::Sphere)
                            .item<double>());
}

TEST(ExactFlow, IndependentOfThreadsAndChunk) {
  const ParticleFamily f = exact_family(6, 1);
  const Particles z = test::random_net(f, 400, 12).particles();
  const Particles t = test::random_net(f, 4, 13).particles();
  for (Method m : {Method::MMD, Method::DrMMD}) {
    const StepOptions opt = options(m, 0.5, 0.4, 14, 0.3);
    const int threads = at::get_num_threads();
    at::set_num_threads(1);
    Particles one = z.clone();
    const double l1 = exact_step(one, t, InputDist::Sphere, opt).loss.item<double>();
    at::set_num_threads(std::max(2, threads));
    Particles many = z.clone();
    const double l2 = exact_step(many, t, InputDist::Sphere, opt).loss.item<double>();
    at::set_num_threads(threads);
    EXPECT_TRUE(test::bit_equal(one, many)) << name_of(m);
    EXPECT_EQ(l1, l2);
    for (int64_t chunk : {1, 100, 1000}) {
      Particles c = z.clone();
      exact_step(c, t, InputDist::Sphere, opt, chunk);
      EXPECT_LT(test::max_abs_diff(c, one), 1e-14) << name_of(m) << " chunk " << chunk;
    }
  }
}

TEST(ExactFlow, Float32FollowsFloat64) {
  const ParticleFamily f = exact_family(10, 1);
  Particles z64 = test::random_net(f, 300, 15).particles();
  Particles z32 = z64.to(at::TensorOptions().dtype(at::kFloat));
  const Particles t64 = test::random_net(f, 2, 16).particles();
  const Particles t32 = t64.to(at::TensorOptions().dtype(at::kFloat));
  for (int s = 0; s < 20; ++s) {
    const StepOptions opt = options(s % 2 ? Method::DrMMD : Method::MMD, 1.0, 0.3, uint64_t(s));
    const double l64 = exact_step(z64, t64, InputDist::Sphere, opt).loss.item<double>();
    const double l32 = exact_step(z32, t32, InputDist::Sphere, opt).loss.item<double>();
    EXPECT_NEAR(l32, l64, 1e-5 * l64) << "step " << s;
  }
  EXPECT_LT(test::max_abs_diff(z32, z64), 1e-4);
  EXPECT_LT(
      exact_mmd2(z64, t64, InputDist::Sphere).item<double>(),
      exact_mmd2(test::random_net(f, 300, 15).particles(), t64, InputDist::Sphere).item<double>());
}

TEST(ExactFlow, RefusesSobolevDescent) {
  const ParticleFamily f = exact_family(3, 1);
  Particles z = test::random_net(f, 5, 1).particles();
  const Particles t = test::random_net(f, 1, 2).particles();
  try {
    exact_step(z, t, InputDist::Sphere, options(Method::Sobolev, 0.1, 0.0, 0));
    FAIL() << "sobolev accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no population form"), std::string::npos) << e.what();
  }
  EXPECT_THROW(exact_step(z, t, InputDist::Sphere, options(Method::DrMMD, 0.1, 0.0, 0, 0.0)),
               c10::Error);
}

}  // namespace
}  // namespace mmdflow
