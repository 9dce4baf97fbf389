#include <gtest/gtest.h>

#include "src/flow/flow.h"
#include "src/kernels/gram.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

TEST(Kernel, GramIdentityEqualsMeanSquaredResidual) {
  ParticleFamily f = test::family(5, 3, 2, Activation::ReLU, OutputKind::Gaussian, 2, true, false);
  Particles student = test::random_net(f, 13, 1).particles();
  Particles teacher = test::random_net(f, 3, 2).particles();
  at::Tensor X = test::inputs(40, f.dim, 3);
  at::Tensor Y = particle_features(f, teacher, X).mean(0);
  GramBlocks K = gram_blocks(f, student, f, teacher, X);
  EXPECT_EQ(K.nn.sizes(), at::IntArrayRef({13, 13}));
  EXPECT_EQ(K.nm.sizes(), at::IntArrayRef({13, 3}));
  EXPECT_EQ(K.mm.sizes(), at::IntArrayRef({3, 3}));
  const double lhs = mmd2(K).item<double>();
  auto s = test::block(f, student);
  const double rhs = residual(*s, X, Y).square().sum(1).mean().item<double>();
  EXPECT_NEAR(lhs, rhs, 1e-12 * std::max(1.0, rhs));
  EXPECT_NEAR(lhs / 2, half_mse(*s, X, Y, 7).item<double>(), 1e-12);
}

TEST(Kernel, ZeroBetweenAMeasureAndItself) {
  ParticleFamily f = test::family(4, 2, 1, Activation::Tanh, OutputKind::IMQ, 1, false, true);
  Particles z = test::random_net(f, 6, 5).particles();
  at::Tensor X = test::inputs(20, f.dim, 6);
  EXPECT_NEAR(mmd2(gram_blocks(f, z, f, z, X)).item<double>(), 0.0, 1e-14);
}

// The random-feature MMD^2 converges to the exact arc-cosine kernel's (MATH.md, "Exact kernel").
TEST(Kernel, RandomFeaturesConvergeToTheExactKernel) {
  ParticleFamily f = test::family(3, 1, 1, Activation::ReLU, OutputKind::Identity, 1, false, false);
  Particles student = test::random_net(f, 4, 7).particles();
  Particles teacher = test::random_net(f, 2, 8).particles();
  for (InputDist dist : {InputDist::Gaussian, InputDist::Sphere}) {
    at::Generator g = test::gen(9);
    at::Tensor X = sample_inputs(dist, 400000, f.dim, g, at::TensorOptions().dtype(at::kDouble));
    const double estimate = mmd2(gram_blocks(f, student, f, teacher, X)).item<double>();
    const double exact = exact_mmd2(student, teacher, dist).item<double>();
    EXPECT_GT(exact, 0.0);
    EXPECT_NEAR(estimate, exact, 0.02 * exact) << name_of(dist);
  }
}

TEST(Kernel, ArccosKernelHandValues) {
  auto o = at::TensorOptions().dtype(at::kDouble);
  at::Tensor w = at::tensor({1.0, 0.0}, o).view({1, 2}), v = at::ones({1, 1}, o);
  // theta = 0: J = pi, k = 1 * 1 * pi / (2 pi) = 1/2 (Gaussian inputs; E relu(x)^2 = 1/2).
  EXPECT_NEAR(arccos_kernel(w, v, w, v, InputDist::Gaussian).item<double>(), 0.5, 1e-15);
  EXPECT_NEAR(arccos_kernel(w, v, w, v, InputDist::Sphere).item<double>(), 0.25, 1e-15);
  // Orthogonal: J = 1, k = 1 / (2 pi).
  at::Tensor w2 = at::tensor({0.0, 2.0}, o).view({1, 2});
  EXPECT_NEAR(arccos_kernel(w, v, w2, v, InputDist::Gaussian).item<double>(), 2 / (2 * M_PI),
              1e-15);
}

}  // namespace
}  // namespace mmdflow
