// The comparison of a student with its teacher: the loss on fresh inputs and each teacher
// particle's nearest student particles, whole or gathered from shards.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <thread>

#include "src/train/compare.h"
#include "src/train/trainer.h"
#include "tests/cli.h"
#include "tests/helpers.h"

namespace mmdflow {
namespace {

// A student holding copies of the teacher's particles at known places, shifted by known amounts.
struct Placed {
  ParticleFamily f = test::family(3, 2, 1, Activation::ReLU, OutputKind::Gaussian, 2, false, false);
  Particles teacher = test::random_net(f, 2, 7).particles();
  Particles student = test::random_net(f, 300, 8, at::kDouble, 3.0).particles();
  Placed() {
    // Teacher 0 sits at student 131 exactly, and 0.1 (in A[0][0]) from student 7; teacher 1 sits
    // 0.2 from student 250.
    student.A[131].copy_(teacher.A[0]);
    student.B[131].copy_(teacher.B[0]);
    student.A[7].copy_(teacher.A[0]);
    student.B[7].copy_(teacher.B[0]);
    student.A[7][0][0] += 0.1;
    student.A[250].copy_(teacher.A[1]);
    student.B[250].copy_(teacher.B[1]);
    student.B[250][0][1] -= 0.2;
  }
};

TEST(Compare, NearestParticlesAndLossOnFreshInputs) {
  Placed p;
  auto student = test::block(p.f, p.student);
  const ParticleNet teacher(p.f, p.teacher);
  auto comm = single_process();
  at::Generator g1 = test::gen(3), g2 = test::gen(3);
  const Comparison c = compare(*student, teacher, InputDist::Sphere, 500, 2, g1, *comm);
  ASSERT_EQ(c.matches.size(), 2u);
  EXPECT_EQ(c.matches[0].student, (std::vector<int64_t>{131, 7}));
  EXPECT_NEAR(c.matches[0].distance[0], 0.0, 1e-12);
  EXPECT_NEAR(c.matches[0].distance[1], 0.1, 1e-12);
  EXPECT_EQ(c.matches[1].student[0], 250);
  EXPECT_NEAR(c.matches[1].distance[0], 0.2, 1e-12);
  const at::Tensor X = sample_inputs(InputDist::Sphere, 500, 3, g2, at::kDouble);
  EXPECT_DOUBLE_EQ(c.half_mmd2, half_mse(*student, X, teacher.forward(X), 1000).item<double>());
  EXPECT_NE(format_table(c).find("       1      1       250"), std::string::npos)
      << format_table(c);
  // Particles of another size (a misspecified teacher) are not compared.
  ParticleFamily wide = p.f;
  wide.hidden = 3;
  const ParticleNet other(wide, test::random_net(wide, 2, 9).particles());
  at::Generator g3 = test::gen(3);
  EXPECT_TRUE(compare(*student, other, InputDist::Sphere, 50, 2, g3, *comm).matches.empty());
}

// Shards (ranks as threads) gather the same comparison as the whole student.
TEST(Compare, ShardsGatherTheWholeComparison) {
  Placed p;
  auto whole = test::block(p.f, p.student);
  const ParticleNet teacher(p.f, p.teacher);
  auto one = single_process();
  at::Generator g = test::gen(4);
  const Comparison c1 = compare(*whole, teacher, InputDist::Gaussian, 200, 3, g, *one);
  const int world = 3, port = test::free_port();
  std::vector<Comparison> got(world);
  std::vector<std::thread> ranks;
  for (int r = 0; r < world; ++r)
    ranks.emplace_back([&, r] {
      auto comm = connect({r, world, r, "127.0.0.1", port, "test", ""}, 30, Backend::Gloo,
                          c10::Device(c10::kCPU));
      Config cfg;
      cfg.student.particles = 300;
      const Shard s = shard_of(cfg, r, world);
      auto part =
          make_block_student(ParticleNet(p.f, p.student.slice(s.begin, s.end)), 0, Impl::Auto, s);
      at::Generator gr = test::gen(4);
      got[r] = compare(*part, teacher, InputDist::Gaussian, 200, 3, gr, *comm);
    });
  for (auto& t : ranks) t.join();
  for (const Comparison& c : got) {
    EXPECT_NEAR(c.half_mmd2, c1.half_mmd2, 1e-12 * c1.half_mmd2);
    ASSERT_EQ(c.matches.size(), c1.matches.size());
    for (size_t m = 0; m < c1.matches.size(); ++m) {
      EXPECT_EQ(c.matches[m].student, c1.matches[m].student);
      EXPECT_EQ(c.matches[m].distance, c1.matches[m].distance);
    }
  }
}

}  // namespace
}  // namespace mmdflow
