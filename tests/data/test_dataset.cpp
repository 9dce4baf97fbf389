#include <gtest/gtest.h>

#include "data/dataset.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

TEST(Dataset, SphereInputsHaveUnitNorm) {
  at::Generator g = test::gen(3);
  auto X = sample_inputs(InputDist::Sphere, 500, 50, g, at::TensorOptions().dtype(at::kDouble));
  EXPECT_NEAR((X.norm(2, {1}) - 1).abs().max().item<double>(), 0.0, 1e-12);
  // Uniform on the sphere: E[x x^T] = I / d.
  auto cov = at::mm(X.t(), X) / 500.0;
  EXPECT_NEAR(cov.diagonal().mean().item<double>(), 1.0 / 50, 1e-3);
}

TEST(Dataset, GaussianInputs) {
  at::Generator g = test::gen(3);
  auto X = sample_inputs(InputDist::Gaussian, 20000, 4, g, at::TensorOptions().dtype(at::kDouble));
  EXPECT_NEAR(X.mean().item<double>(), 0.0, 0.02);
  EXPECT_NEAR(X.var().item<double>(), 1.0, 0.02);
}

TEST(Dataset, SeededAndLabelledByTheTeacher) {
  ParticleFamily f = test::family(6, 3, 2, Activation::ReLU, OutputKind::Gaussian, 2, false, false);
  ParticleNet teacher = test::random_net(f, 2, 1);
  at::Generator g1 = test::gen(9), g2 = test::gen(9);
  Dataset a = make_dataset(InputDist::Sphere, 30, teacher, g1);
  Dataset b = make_dataset(InputDist::Sphere, 30, teacher, g2);
  EXPECT_TRUE(at::equal(a.X, b.X));
  EXPECT_EQ(a.Y.sizes(), at::IntArrayRef({30, 2}));
  EXPECT_TRUE(at::allclose(a.Y, teacher.forward(a.X)));
  Dataset c = make_dataset(InputDist::Sphere, 30, teacher, g1);  // the stream moves on
  EXPECT_FALSE(at::equal(a.X, c.X));
}

}  // namespace
}  // namespace mmdflow
