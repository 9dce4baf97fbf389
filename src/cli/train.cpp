// `mmdflow train`: one run, in one process or sharded over the WORLD_SIZE processes of a
// launcher (torchrun, srun, mpirun), all running the same command line.
#include <fmt/format.h>

#include <cmath>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "src/base/device.h"
#include "src/base/random.h"
#include "src/cli/commands.h"
#include "src/cli/options.h"
#include "src/cli/progress.h"
#include "src/cli/signals.h"
#include "src/comm/launch.h"
#include "src/train/compare.h"
#include "src/train/memory.h"
#include "src/train/run_folder.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

std::string default_out(const cxxopts::ParseResult& r) {
  std::string stem =
      r.count("config") ? fs::path(r["config"].as<std::string>()).stem().string() : "quickstart";
  std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  return fmt::format("runs/{}-{}", stem, stamp);
}

// "after epoch E" or "after epoch E and B steps of epoch E + 1".
std::string position(const TrainerState& s) {
  if (s.batch == 0) return fmt::format("after epoch {}", s.epoch);
  return fmt::format("after epoch {} and {} step{} of epoch {}", s.epoch, s.batch,
                     s.batch == 1 ? "" : "s", s.epoch + 1);
}

const char* signal_name(int sig) {
  return sig == SIGINT ? "SIGINT" : sig == SIGPIPE ? "SIGPIPE (output closed)" : "SIGTERM";
}

// Runs `step` on every rank; when it fails on any, every rank throws: the failing ones their own
// error, the others Failed with the first failing rank's code. Nothing collective may run inside.
template <typename F>
void on_every_rank(Comm& comm, F&& step) {
  gather_after(
      comm, 0,
      [&]() -> std::vector<double> {
        step();
        return {};
      },
      [](int r, int code) {
        throw Failed(
            fmt::format("stopping: rank {} failed to start (exit {}), see its message", r, code),
            code);
      });
}

// Every rank runs rank 0's configuration in rank 0's folder (a default --out is rank 0's); the
// threads may differ between machines.
void agree_on_setup(Comm& comm, const Config& cfg, std::string& out, bool out_given) {
  Config mine = cfg;
  mine.threads = 0;
  const std::string text = to_yaml(mine), theirs = comm.from_rank0("config", text);
  const std::string out0 = comm.from_rank0("out", out);
  std::string why;
  if (theirs != text) {
    const auto d = differing_keys(parse_config(theirs, {}, "rank 0's config"), mine);
    why = d.empty() ? "its configuration differs from rank 0's"
                    : fmt::format(
                          "its configuration differs from rank 0's: {} is {} here, {} on "
                          "rank 0",
                          d[0].path, shorten(d[0].b), shorten(d[0].a));
  } else if (out_given && out0 != out) {
    why = fmt::format("its folder {} is not rank 0's {}", shorten(out), shorten(out0));
  }
  out = out0;
  const auto all = comm.gather({why.empty() ? 0.0 : 1.0});
  if (!why.empty()) throw ConfigError(why + ": every rank must run the same command");
  std::vector<int> others;
  for (int r = 0; r < comm.world(); ++r)
    if (all[r][0] != 0) others.push_back(r);
  if (!others.empty())
    throw ConfigError(fmt::format(
        "rank {} runs another configuration or folder than this one: every rank must run the "
        "same command",
        fmt::join(others, ", ")));
}

}  // namespace

int cmd_train(int argc, char** argv) {
  cxxopts::Options o("mmdflow train",
                     "Train a student network toward a teacher with the MMD flow (noise injection "
                     "through the beta schedule). Under a launcher that sets WORLD_SIZE > 1 "
                     "(torchrun, srun, mpirun), the particles are sharded over its processes.");
  add_config_options(o);
  o.add_options()("o,out", "output folder (default: runs/<config>-<date>-<time>)",
                  cxxopts::value<std::string>())(
      "resume",
      "continue the run in this folder from its checkpoint, with its config.yaml (or --config) "
      "and --set; only the keys listed in the README may change",
      cxxopts::value<std::string>());
  auto r = parse(o, argc, argv);
  if (!r) return kOk;
  // From here until training ends, a signal stops the run at its first step boundary.
  std::optional<StopSignals> signals(std::in_place);
  const Launch launch = launch_of_process();
  const bool resume = r->count("resume") > 0;
  if (resume && r->count("out")) throw UsageError("--out and --resume exclude each other");
  std::string out;
  Config cfg;
  if (resume) {
    out = (*r)["resume"].as<std::string>();
    if (out.empty()) throw UsageError("--resume: an empty folder name");
    RunFolder::check_resumable(out);
    cfg = config_from(*r, out + "/config.yaml");
  } else {
    cfg = config_from(*r);
    out = r->count("out") ? (*r)["out"].as<std::string>() : default_out(*r);
  }
  cfg.threads = set_threads(cfg.threads);
  if (cfg.log.print_every == 0) cfg.log.print_every = std::max<int64_t>(1, cfg.train.epochs / 20);
  std::unique_ptr<Comm> comm = comm_of(launch, cfg);
  if (launch.world > 1) agree_on_setup(*comm, cfg, out, resume || r->count("out"));
  const bool lead = comm->rank() == 0;

  // Everything is checked and built before the first write: bad input leaves the folder as is.
  const auto mode = resume ? RunFolder::Mode::Resume : RunFolder::Mode::Fresh;
  on_every_rank(*comm, [&] {
    device_of(cfg, *comm);
    check_shardable(cfg, comm->world());
    RunFolder::check(out, mode);
    check_memory(cfg, Work::Train, comm->world());
  });
  Trainer trainer(cfg, comm.get());
  std::optional<RunFolder> folder;
  std::optional<Checkpoint> ckpt;
  std::string kept_losses, kept_theory;
  on_every_rank(*comm, [&] {
    folder.emplace(out, mode, lead);
    if (resume) ckpt = folder->load_checkpoint(cfg, trainer.student().shard());
    if (lead) kept_losses = folder->losses_upto(ckpt ? ckpt->state.epoch : 0);
    if (lead && cfg.theory()) kept_theory = folder->theory_upto(ckpt ? ckpt->state.epoch : 0);
  });
  // Where the checkpoint on disk stands, for messages.
  std::string saved = ckpt ? position(ckpt->state) : "";
  if (ckpt) trainer.restore(std::move(ckpt->state));
  if (lead) {
    folder->write_config(cfg);
    folder->open_losses(kept_losses);
    if (cfg.theory()) folder->open_theory(kept_theory);
    say(setup_line(cfg, out, comm->world()));
    const int64_t blocks = (cfg.student.particles + kNoiseBlock - 1) / kNoiseBlock;
    if (blocks < comm->world())
      say(fmt::format("  {} processes share {} block(s) of {} particles: {} of them hold none\n",
                      comm->world(), blocks, kNoiseBlock, comm->world() - blocks));
    if (resume)
      say(fmt::format("  resuming {}\n", saved.empty() ? "at the start (no checkpoint)" : saved));
  }

  Trainer::End end;
  {
    std::optional<Progress> progress;
    if (lead) progress.emplace(cfg.train.epochs, cfg.log.print_every);
    const int64_t every = cfg.train.checkpoint_every;
    end = trainer.run(
        [&](const EpochLog& l) {
          if (lead) {
            folder->append_losses(l);
            if (cfg.theory()) folder->append_theory(l);
            progress->update(l);
          }
          if (l.finite && ((every > 0 && l.epoch % every == 0) || l.epoch == cfg.train.epochs)) {
            const TrainerState s = trainer.state();
            folder->save_checkpoint(cfg, s, trainer.student().shard(), *comm);
            saved = position(s);
          }
        },
        [] { return StopSignals::received(); });
    if (lead) progress->finish();
  }
  signals.reset();
  const TrainerState st = trainer.state();
  const std::string ckpt_file = folder->path(kCheckpointFile);
  const std::string last_good =
      saved.empty() ? "no checkpoint written" : fmt::format("{} kept ({})", ckpt_file, saved);
  if (end == Trainer::End::Stopped) {
    const int sig = trainer.stopped_by();
    if (!trainer.finite()) {
      if (lead)
        fmt::print(stderr,
                   "mmdflow: error: training went non-finite during epoch {}, stopped by {}; {}\n",
                   st.epoch + 1, signal_name(sig), last_good);
      return kNonFinite;
    }
    folder->save_checkpoint(cfg, st, trainer.student().shard(), *comm);
    if (lead)
      fmt::print(stderr,
                 "mmdflow: stopped by {} {}; checkpoint written, continue with: mmdflow train "
                 "--resume {}\n",
                 signal_name(sig), position(st), out);
    return 128 + sig;
  }

  const EpochLog& last = st.last;
  nlohmann::json summary;
  summary["initial_train_loss"] = trainer.initial_train_loss();
  summary["initial_valid_loss"] = trainer.initial_valid_loss();
  summary["epochs"] = last.epoch;
  summary["final_train_loss"] = last.epoch > 0 ? nlohmann::json(last.train_loss) : nullptr;
  summary["final_valid_loss"] = last.epoch > 0 ? last.valid_loss : trainer.initial_valid_loss();
  summary["best_valid_loss"] = st.best_valid;
  summary["best_epoch"] = st.best_epoch;
  summary["seconds"] = st.seconds;
  summary["steps"] = st.steps;
  summary["ms_per_step"] = 1e3 * st.step_seconds / double(std::max<int64_t>(1, st.steps));
  summary["device"] = trainer.device().str();
  summary["threads"] = cfg.threads;
  summary["processes"] = comm->world();
  summary["version"] = MMDFLOW_VERSION;
  if (end == Trainer::End::NonFinite) {
    if (lead) {
      summary["status"] = "non_finite";
      folder->write_summary(summary.dump(2) + "\n");
      fmt::print(stderr,
                 "mmdflow: error: training went non-finite at epoch {} (train loss {}, valid loss "
                 "{}); stopped, logs in {}; {}\n",
                 last.epoch, last.train_loss, last.valid_loss, out, last_good);
    }
    return kNonFinite;
  }
  folder->save_student(trainer.student().named_tensors(), trainer.student().shard(), *comm);
  if (lead) folder->save_teacher(trainer.teacher().named_tensors());
  at::Generator gen = stream_generator(cfg.seed, kCompareStream);
  const Comparison cmp =
      compare(trainer.student(), trainer.teacher(), cfg.data.input, cfg.compare.samples,
              cfg.compare.nearest, gen, *comm, cfg.flow.kernel == KernelKind::Exact);
  if (lead) {
    say(format_table(cmp));
    summary["status"] = "done";
    summary["compare"] = to_json(cmp);
    folder->write_summary(summary.dump(2) + "\n");
    say(fmt::format("wrote {}/{{losses.csv, {}config.yaml, summary.json, {}, teacher.pt{}}}\n", out,
                    cfg.theory() ? "theory.csv, " : "",
                    comm->world() == 1 ? "student.pt" : "student-*.pt, student.index.json",
                    saved.empty() ? "" : std::string(", ") + kCheckpointFile));
  }
  return kOk;
}

}  // namespace mmdflow
