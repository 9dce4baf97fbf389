#include <gtest/gtest.h>

#include "models/particle_net.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

// Two particles, d = 2, H = 1, o = 1, ReLU, identity output: f(x) = (1/2) sum_n B_n relu(A_n x).
ParticleNet two_particles() {
  ParticleFamily f = test::family(2, 1, 1, Activation::ReLU, OutputKind::Identity, 1, false, false);
  auto opts = at::TensorOptions().dtype(at::kDouble);
  Particles z;
  z.A = at::tensor({1.0, 2.0, -1.0, 1.0}, opts).view({2, 1, 2});
  z.B = at::tensor({3.0, 0.5}, opts).view({2, 1, 1});
  return ParticleNet(f, z);
}

TEST(ParticleNet, HandCheckedForward) {
  ParticleNet net = two_particles();
  auto X = at::tensor({1.0, 1.0, 2.0, -1.0, 0.0, 1.0}, at::kDouble).view({3, 2});
  // x1: relu(3)*3 = 9, relu(0)*0.5 = 0 -> 4.5; x2: relu(0), relu(-3) -> 0;
  // x3: relu(2)*3 = 6, relu(1)*0.5 = 0.5 -> 3.25.
  auto y = net.forward(X);
  ASSERT_EQ(y.sizes(), at::IntArrayRef({3, 1}));
  EXPECT_DOUBLE_EQ(y[0][0].item<double>(), 4.5);
  EXPECT_DOUBLE_EQ(y[1][0].item<double>(), 0.0);
  EXPECT_DOUBLE_EQ(y[2][0].item<double>(), 3.25);
}

TEST(ParticleNet, OutputNonlinearities) {
  ParticleFamily f =
      test::family(2, 1, 1, Activation::ReLU, OutputKind::Gaussian, 2.0, false, false);
  ParticleNet net(f, two_particles().particles());
  auto X = at::tensor({1.0, 1.0}, at::kDouble).view({1, 2});
  // U = 9 and 0: G = exp(-81/4), exp(0).
  EXPECT_NEAR(net.forward(X).item<double>(), 0.5 * (std::exp(-81.0 / 4) + 1.0), 1e-15);
  f.out = {OutputKind::IMQ, 1.0};
  EXPECT_NEAR(ParticleNet(f, net.particles()).forward(X).item<double>(), 0.5 * (1.0 / 82 + 1.0),
              1e-15);
  f.out = {OutputKind::Laplace, 0.5};
  EXPECT_NEAR(ParticleNet(f, net.particles()).forward(X).item<double>(),
              0.5 * (std::exp(-4.5) + 1.0), 1e-15);
  f.out = {OutputKind::Cosine, 0};
  EXPECT_NEAR(ParticleNet(f, net.particles()).forward(X).item<double>(),
              0.5 * (std::cos(9.0) + 1.0), 1e-15);
  f.out = {OutputKind::Power, 0};
  EXPECT_NEAR(ParticleNet(f, net.particles()).forward(X).item<double>(), 0.5 * 81, 1e-12);
}

TEST(ParticleNet, ShapesAndSeededInit) {
  ParticleFamily f = test::family(5, 3, 2, Activation::Tanh, OutputKind::Gaussian, 2, true, true);
  ParticleNet a = test::random_net(f, 7, 42), b = test::random_net(f, 7, 42);
  EXPECT_EQ(a.particles().A.sizes(), at::IntArrayRef({7, 3, 5}));
  EXPECT_EQ(a.particles().a.sizes(), at::IntArrayRef({7, 3}));
  EXPECT_EQ(a.particles().B.sizes(), at::IntArrayRef({7, 2, 3}));
  EXPECT_EQ(a.particles().b.sizes(), at::IntArrayRef({7, 2}));
  EXPECT_EQ(a.particles().flat().sizes(), at::IntArrayRef({7, f.particle_size()}));
  EXPECT_TRUE(test::bit_equal(a.particles(), b.particles()));
  // float32 particles are the float64 ones rounded: the seed fixes the draw, not the dtype.
  ParticleNet c = test::random_net(f, 7, 42, at::kFloat);
  EXPECT_TRUE(at::equal(c.particles().A, a.particles().A.to(at::kFloat)));
  ParticleNet d = test::random_net(f, 7, 43);
  EXPECT_FALSE(at::equal(d.particles().A, a.particles().A));
}

TEST(ParticleNet, InitMeanAndStd) {
  ParticleFamily f =
      test::family(50, 3, 1, Activation::ReLU, OutputKind::Gaussian, 2, false, false);
  at::Generator g = test::gen(1);
  ParticleNet net(ParticleNetOptions(2000, f).init_mean(0.5).init_std(2.0), g);
  auto flat = net.particles().flat();
  EXPECT_NEAR(flat.mean().item<double>(), 0.5, 0.02);
  EXPECT_NEAR(flat.std().item<double>(), 2.0, 0.02);
}

TEST(ParticleNet, RejectsWrongShapes) {
  ParticleFamily f = test::family(2, 1, 1, Activation::ReLU, OutputKind::Identity, 1, false, false);
  Particles z = two_particles().particles();
  z.B = at::zeros({2, 1, 2}, at::kDouble);
  EXPECT_THROW(ParticleNet(f, z), c10::Error);
  z = two_particles().particles();
  z.a = at::zeros({2, 1}, at::kDouble);  // family has no hidden bias
  EXPECT_THROW(ParticleNet(f, z), c10::Error);
}

}  // namespace
}  // namespace mmdflow
