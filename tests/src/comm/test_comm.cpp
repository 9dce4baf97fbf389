// Ranks of a sharded run as threads of this process, each with its own c10d Comm over loopback:
// the sums, the gathers and whole training runs of every flow agree with one process.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <thread>

#include "src/base/device.h"
#include "src/comm/comm.h"
#include "src/train/checkpoint.h"
#include "src/train/run.h"
#include "src/train/trainer.h"
#include "tests/cli.h"

namespace mmdflow {
namespace {

// Runs body(comm) on `world` ranks, each a thread with its own connection; rethrows the first
// rank's exception.
void on_ranks(int world, const std::function<void(Comm&)>& body) {
  const int port = test::free_port();
  std::vector<std::exception_ptr> errors(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        const Launch l{r, world, r, "127.0.0.1", port, "test", ""};
        auto comm = connect(l, 30, Backend::Gloo, c10::Device(c10::kCPU));
        body(*comm);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

TEST(Comm, SumsGathersAndSharesText) {
  std::vector<std::vector<double>> got(3);
  std::vector<std::string> text(3);
  on_ranks(3, [&](Comm& comm) {
    at::Tensor t = at::full({2, 3}, double(comm.rank() + 1), at::kDouble);
    comm.sum(t);
    EXPECT_TRUE(at::equal(t, at::full({2, 3}, 6.0, at::kDouble)));
    at::Tensor f = at::full({4}, float(comm.rank()), at::kFloat);
    comm.sum(f);
    EXPECT_EQ(f[3].item<float>(), 3.0f);
    const auto all = comm.gather({double(comm.rank()), -1.0 * comm.rank()});
    got[comm.rank()] = {all[0][0], all[1][0], all[2][1]};
    text[comm.rank()] = comm.from_rank0("greeting", comm.rank() == 0 ? "hello" : "ignored");
    EXPECT_GE(comm.seconds(), 0.0);
  });
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(got[r], (std::vector<double>{0, 1, -2})) << r;
    EXPECT_EQ(text[r], "hello");
  }
}

// A step that fails on one rank stops every rank at once: that rank with its own error, the others
// with what failed() throws, naming it with its exit code (never waiting out a timeout).
TEST(Comm, GatherAfterTellsEveryRankOfAFailure) {
  std::vector<std::vector<std::vector<double>>> got(3);
  on_ranks(3, [&](Comm& comm) {
    got[comm.rank()] = gather_after(
        comm, 2,
        [&]() -> std::vector<double> {
          return {double(comm.rank()), 7};
        },
        [](int, int) { FAIL() << "no rank failed"; });
  });
  for (int r = 0; r < 3; ++r)
    EXPECT_EQ(got[r], (std::vector<std::vector<double>>{{0, 7}, {1, 7}, {2, 7}})) << r;

  for (const auto& [failing, code] : {std::pair{std::string("runtime_error"), int(kError)},
                                      {std::string("CheckpointError"), int(kBadInput)}}) {
    std::vector<std::string> seen(3);
    on_ranks(3, [&](Comm& comm) {
      try {
        gather_after(
            comm, 1,
            [&]() -> std::vector<double> {
              if (comm.rank() != 1) return {1};
              if (failing == "runtime_error") throw std::runtime_error("boom");
              throw CheckpointError("bad file");
            },
            [](int r, int c) { throw IoError(fmt::format("rank {} exit {}", r, c)); });
        seen[comm.rank()] = "returned";
      } catch (const IoError& e) {
        seen[comm.rank()] = e.what();
      } catch (const std::exception& e) {
        seen[comm.rank()] = std::string("own: ") + e.what();
      }
    });
    const std::string other = fmt::format("rank 1 exit {}", code);
    EXPECT_EQ(seen, (std::vector<std::string>{
                        other, failing == "runtime_error" ? "own: boom" : "own: bad file", other}))
        << failing;
  }
}

Config small() {
  Config c;
  c.threads = 1;
  c.dtype = at::kDouble;
  c.data.dim = 5;
  c.data.train_size = 40;
  c.data.valid_size = 40;
  c.train.batch = 20;
  c.train.epochs = 4;
  c.student.particles = 300;  // blocks of 128, 128, 44: no world size here divides them evenly
  return c;
}

// Every flow, fixed and fresh data: the losses and the weights of 2 and 3 ranks are one
// process's, bit for bit, in float64 and float32. Sums over the particles follow one tree over
// their blocks whatever the sharding (src/flow/tree_sum.h). Sobolev descent at step 1 and
// diffusion at beta = 1 for 30 epochs amplify any difference in the last bit by about 10 an
// epoch: they differed by 10 % before the tree.
TEST(Comm, TrainingOnRanksEqualsOneProcessBitForBitForEveryFlow) {
  set_threads(1);
  struct Case {
    std::string name;
    std::function<void(Config&)> set;
  };
  const std::vector<Case> cases = {
      {"mmd", [](Config& c) { c.noise.beta0 = 0; }},
      {"noise injection", [](Config& c) { c.noise.beta0 = 0.5; }},
      {"diffusion", [](Config& c) { c.flow.method = Method::Diffusion, c.noise.beta0 = 0.1; }},
      {"chaotic diffusion",
       [](Config& c) {
         c.flow.method = Method::Diffusion, c.noise.beta0 = 1, c.train.epochs = 30;
       }},
      {"sobolev",
       [](Config& c) {
         c.flow.method = Method::Sobolev, c.noise.beta0 = 0, c.flow.step_size = 0.1;
       }},
      {"chaotic sobolev",
       [](Config& c) {
         c.flow.method = Method::Sobolev, c.noise.beta0 = 0, c.flow.step_size = 1;
         c.train.epochs = 30;
       }},
      {"drmmd", [](Config& c) { c.flow.method = Method::DrMMD, c.noise.beta0 = 0.3; }},
      {"fresh noise injection", [](Config& c) { c.data.fresh = true, c.noise.beta0 = 0.5; }},
      {"fresh sobolev",
       [](Config& c) {
         c.data.fresh = true, c.flow.method = Method::Sobolev, c.noise.beta0 = 0;
         c.flow.step_size = 0.1;
       }},
  };
  for (auto dtype : {at::kDouble, at::kFloat})
    for (const Case& k : cases) {
      Config cfg = small();
      cfg.dtype = dtype;
      k.set(cfg);
      std::vector<EpochLog> one;
      Trainer whole(cfg);
      ASSERT_EQ(whole.run([&](const EpochLog& l) { one.push_back(l); }), Trainer::End::Done);
      const NamedTensors w1 = whole.state().student;
      for (int world : {2, 3}) {
        std::vector<std::vector<EpochLog>> logs(world);
        std::vector<NamedTensors> parts(world);
        on_ranks(world, [&](Comm& comm) {
          Trainer t(cfg, &comm);
          EXPECT_EQ(t.run([&](const EpochLog& l) { logs[comm.rank()].push_back(l); }),
                    Trainer::End::Done);
          parts[comm.rank()] = t.state().student;
        });
        const std::string at_ = k.name + (dtype == at::kDouble ? " float64" : " float32") + " on " +
                                std::to_string(world) + " ranks";
        for (int r = 0; r < world; ++r) {
          ASSERT_EQ(logs[r].size(), one.size()) << at_;
          for (size_t e = 0; e < one.size(); ++e)
            for (const auto& [a, b] : {std::pair{logs[r][e].train_loss, one[e].train_loss},
                                       {logs[r][e].valid_loss, one[e].valid_loss},
                                       {logs[r][e].grad_sq, one[e].grad_sq},
                                       {logs[r][e].noisy_grad_sq, one[e].noisy_grad_sq}})
              EXPECT_EQ(a, b) << at_ << " rank " << r << " epoch " << e + 1;
        }
        for (size_t i = 0; i < w1.size(); ++i) {
          std::vector<at::Tensor> rows;
          for (int r = 0; r < world; ++r) rows.push_back(parts[r][i].second);
          EXPECT_TRUE(at::equal(at::cat(rows), w1[i].second)) << at_ << " " << w1[i].first;
        }
      }
    }
}

// A shard that cannot be built on one rank (here a weight of the wrong size)
// ends the save on every rank at once: the others learn it from the first phase's gather instead
// of waiting for that rank until dist.timeout.
TEST(Comm, CheckpointThatFailsOnOneRankEndsOnEveryRankAtOnce) {
  set_threads(1);
  const Config cfg = small();
  const std::string dir = test::scratch("ckpt_fail");
  std::vector<std::string> seen(2);
  const auto start = std::chrono::steady_clock::now();
  on_ranks(2, [&](Comm& comm) {
    Trainer t(cfg, &comm);
    TrainerState s = t.state();
    if (comm.rank() == 1) s.student[0].second = s.student[0].second.narrow(0, 0, 1);
    try {
      save_checkpoint(dir, cfg, s, t.measure().shard(), 1, comm);
      seen[comm.rank()] = "saved";
    } catch (const IoError& e) {
      seen[comm.rank()] = e.what();
    } catch (const std::exception&) {
      seen[comm.rank()] = "own error";
    }
  });
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
  EXPECT_EQ(seen[0], "rank 1 could not write its checkpoint shard; checkpoint.bin kept");
  EXPECT_EQ(seen[1], "own error");
  EXPECT_FALSE(std::filesystem::exists(dir + "/checkpoint.bin"));
}

// Rank r of `world` at `port` meeting as job `job`: its Comm, or the one line it failed with.
struct Met {
  std::unique_ptr<Comm> comm;
  std::string error;
  double seconds = 0;
};
Met meet(int r, int world, int port, const std::string& job, double timeout_s,
         std::function<int()> stop = {}) {
  Met m;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    m.comm = connect({r, world, r, "127.0.0.1", port, "test", ""}, timeout_s, Backend::Gloo,
                     c10::Device(c10::kCPU), {job, std::move(stop)});
  } catch (const ConfigError& e) {
    m.error = e.what();
  } catch (const Stopped& e) {
    m.error = fmt::format("stopped by {}", signal_name(e.signal));
  }
  m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return m;
}

// Issue 19: a process of another job at the port leaves at once, naming both jobs, and the job
// whose rendezvous it is meets undisturbed, even when the stranger came before its own rank 1.
TEST(Rendezvous, AnotherJobIsTurnedAwayAndTheFirstJobMeets) {
  const int port = test::free_port();
  Met zero, one, stranger;
  std::thread t0([&] { zero = meet(0, 2, port, "train --out /runs/a", 20); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stranger = meet(1, 2, port, "train --out /runs/b", 20);
  std::thread t1([&] { one = meet(1, 2, port, "train --out /runs/a", 20); });
  t0.join();
  t1.join();
  EXPECT_NE(stranger.error.find("the rendezvous at 127.0.0.1:" + std::to_string(port) +
                                " belongs to another job (train --out /runs/a, 2 processes), "
                                "not this one (train --out /runs/b, 2 processes)"),
            std::string::npos)
      << stranger.error;
  EXPECT_LT(stranger.seconds, 10);
  ASSERT_TRUE(zero.comm && one.comm) << zero.error << one.error;
  std::vector<at::Tensor> t(2);
  std::thread s0([&] { t[0] = at::ones({3}, at::kDouble), zero.comm->sum(t[0]); });
  t[1] = at::ones({3}, at::kDouble), one.comm->sum(t[1]);
  s0.join();
  EXPECT_TRUE(at::equal(t[0], at::full({3}, 2.0, at::kDouble)));
}

// Issue 19: a rank that never comes is named, by every rank, within the timeout; a rank started
// twice is named at once.
TEST(Rendezvous, MissingAndDuplicateRanksAreNamed) {
  int port = test::free_port();
  std::vector<Met> got(3);
  std::vector<std::thread> ranks;
  for (int r : {0, 2}) ranks.emplace_back([&, r] { got[r] = meet(r, 3, port, "", 3); });
  for (auto& t : ranks) t.join();
  for (int r : {0, 2}) {
    EXPECT_NE(got[r].error.find("rank 1 of 3 did not come to the rendezvous at 127.0.0.1:" +
                                std::to_string(port) + " within dist.timeout = 3 s"),
              std::string::npos)
        << got[r].error;
    EXPECT_LT(got[r].seconds, 3 + 5) << r;
  }
  port = test::free_port();
  ranks.clear();
  for (int i = 0; i < 3; ++i)
    ranks.emplace_back([&, i] { got[i] = meet(std::min(i, 1), 3, port, "", 30); });
  for (auto& t : ranks) t.join();
  for (int i = 0; i < 3; ++i) {
    EXPECT_NE(got[i].error.find("rank 1 was started twice"), std::string::npos) << got[i].error;
    EXPECT_LT(got[i].seconds, 10) << i;  // not dist.timeout
  }
}

// Issue 19: the stop function is obeyed while waiting for the others.
TEST(Rendezvous, StopEndsTheWait) {
  const auto t0 = std::chrono::steady_clock::now();
  const Met alone = meet(0, 2, test::free_port(), "", 60, [t0] {
    return std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(500) ? SIGTERM : 0;
  });
  EXPECT_EQ(alone.error, "stopped by SIGTERM");
  EXPECT_LT(alone.seconds, 5);
}

// Issue 19: ranks agree on the run folder itself, found through the token rank 0 writes in it:
// spellings of one folder are one run; two folders are refused on every rank, with nothing left.
TEST(Rendezvous, RanksAgreeOnTheFolderNotOnItsSpelling) {
  set_threads(1);
  Config cfg = small();
  cfg.train.epochs = 1;
  cfg.log.print_every = 1;
  const std::string base = test::scratch("spelling");
  std::filesystem::create_directories(base + "/sub");
  const std::vector<std::string> spellings = {base + "/X", base + "/./X", base + "/sub/../X/"};
  std::vector<std::string> errors(3);
  on_ranks(3, [&](Comm& comm) {
    const Outcome o = run_training({cfg, spellings[comm.rank()], false, true}, comm, {});
    EXPECT_EQ(o.end, Trainer::End::Done);
  });
  for (int r = 0; r < 3; ++r)
    EXPECT_TRUE(std::filesystem::exists(fmt::format("{}/X/student-{:05}-of-00003.pt", base, r)));
  on_ranks(2, [&](Comm& comm) {
    try {
      run_training({cfg, base + (comm.rank() == 0 ? "/A" : "/B"), false, true}, comm, {});
    } catch (const ConfigError& e) {
      errors[comm.rank()] = e.what();
    }
  });
  EXPECT_NE(errors[1].find("its folder " + base + "/B is not rank 0's " + base + "/A"),
            std::string::npos)
      << errors[1];
  EXPECT_NE(errors[0].find("rank 1 does not see this run folder " + base + "/A"), std::string::npos)
      << errors[0];
  EXPECT_FALSE(std::filesystem::exists(base + "/A"));
  EXPECT_FALSE(std::filesystem::exists(base + "/B"));
}

}  // namespace
}  // namespace mmdflow
