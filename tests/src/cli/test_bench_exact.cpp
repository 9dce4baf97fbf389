// The exact kernel's bench: its measures, and a timing that runs the steps it reports on.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>

#include "src/base/random.h"
#include "src/cli/bench_exact.h"

namespace mmdflow {
namespace {

TEST(ExactBench, DrawsTheTeacherThenTheStudentOfTheExactFamily) {
  const ExactBenchNets a = exact_bench_nets(30, 2, 5, at::kFloat, 3);
  const ExactBenchNets b = exact_bench_nets(30, 2, 5, at::kFloat, 3);
  for (const ParticleNet* net : {&a.teacher, &a.student}) {
    const ParticleFamily& f = net->family();
    EXPECT_EQ(f.dim, 5);
    EXPECT_EQ(f.hidden, 1);
    EXPECT_EQ(f.outputs, 1);
    EXPECT_EQ(f.activation, Activation::ReLU);
    EXPECT_EQ(f.out.kind, OutputKind::Identity);
    EXPECT_FALSE(net->particles().a.defined() || net->particles().b.defined());
    EXPECT_EQ(net->particles().A.scalar_type(), at::kFloat);
  }
  EXPECT_EQ(a.teacher.size(), 2);
  EXPECT_EQ(a.student.size(), 30);
  EXPECT_TRUE(a.student.particles().A.equal(b.student.particles().A));  // from the seed alone
  // One generator: the student's draws follow the teacher's.
  at::Generator gen = make_generator(c10::Device(c10::kCPU), 3);
  const ParticleNet teacher(ParticleNetOptions(2, a.teacher.family()), gen);
  const ParticleNet student(ParticleNetOptions(30, a.student.family()), gen);
  EXPECT_TRUE(a.teacher.particles().A.equal(teacher.particles().A));
  EXPECT_TRUE(a.student.particles().A.equal(student.particles().A));
  EXPECT_TRUE(a.student.particles().B.equal(student.particles().B));
}

// The particles end where the warm-up and `repeats` steps by hand take them, and at least
// repeats - repeats / 2 timed steps took the median or longer: the median fits in the call's time.
TEST(ExactBench, TimesTheRequestedStepsEachWithItsNoise) {
  const int64_t repeats = 4;
  const uint64_t seed = 11;
  ExactBenchNets nets = exact_bench_nets(300, 2, 5, at::kFloat, seed);
  const Particles& teacher = nets.teacher.particles();
  Particles by_hand = nets.student.particles().clone();
  StepOptions opt;
  opt.method = Method::MMD;
  opt.step_size = 0.1;
  opt.beta = 0.5;
  const auto t = std::chrono::steady_clock::now();
  const double ms =
      exact_step_ms(nets.student.particles(), teacher, InputDist::Sphere, opt, repeats, seed);
  const std::chrono::duration<double, std::milli> call = std::chrono::steady_clock::now() - t;
  for (int64_t r = 0; r <= repeats; ++r) {
    opt.noise_seed = sub_seed(seed, uint64_t(r));
    exact_step(by_hand, teacher, InputDist::Sphere, opt);
  }
  EXPECT_TRUE(nets.student.particles().A.equal(by_hand.A));
  EXPECT_TRUE(nets.student.particles().B.equal(by_hand.B));
  EXPECT_GT(ms, 0.0);
  EXPECT_LE(ms * double(repeats - repeats / 2), call.count());
}

}  // namespace
}  // namespace mmdflow
