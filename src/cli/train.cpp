// `mmdflow train`: one run, in one process or sharded over the WORLD_SIZE processes of a
// launcher (torchrun, srun, mpirun), all running the same command line. The run itself is
// src/train/run.h's; this file reads the command line, shows progress and maps the outcome to an
// exit code.
#include <fmt/format.h>

#include <ctime>
#include <filesystem>

#include "src/base/device.h"
#include "src/cli/options.h"
#include "src/cli/progress.h"
#include "src/cli/signals.h"
#include "src/train/build.h"
#include "src/train/run.h"
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

// The run the command line asks for: its folder and resolved configuration.
RunRequest request_of(const cxxopts::ParseResult& r) {
  RunRequest req;
  req.resume = r.count("resume") > 0;
  if (req.resume && r.count("out")) throw UsageError("--out and --resume exclude each other");
  if (req.resume) {
    req.out = r["resume"].as<std::string>();
    if (req.out.empty()) throw UsageError("--resume: an empty folder name");
    RunFolder::check_resumable(req.out);
    req.cfg = config_from(r, req.out + "/config.yaml");
  } else {
    req.cfg = config_from(r);
    req.out = r.count("out") ? r["out"].as<std::string>() : default_out(r);
  }
  req.out_given = req.resume || r.count("out");
  Config& cfg = req.cfg;
  resolve_data_files(cfg);
  cfg.threads = set_threads(cfg.threads);
  if (cfg.log.print_every == 0) cfg.log.print_every = std::max<int64_t>(1, cfg.train.epochs / 20);
  return req;
}

int exit_code_of(const Outcome& o) {
  switch (o.end) {
    case Trainer::End::Done: return kOk;
    case Trainer::End::NonFinite: return kNonFinite;
    case Trainer::End::Stopped: break;
  }
  return 128 + o.signal;
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
  // From here on, a signal stops the run at its first step boundary, or, once training ended,
  // waits for the final files and the process's end (src/cli/signals.h).
  const StopSignals signals;
  const Launch launch = launch_of_process();
  RunRequest req = request_of(*r);
  std::unique_ptr<Comm> comm =
      comm_of(launch, req.cfg,
              job_of(req.resume ? "train --resume" : "train --out", req.out_given ? req.out : ""));
  std::optional<Progress> progress;
  if (comm->rank() == 0) progress.emplace(req.cfg.train.epochs, req.cfg.log.print_every);
  RunHooks hooks;
  hooks.stop = [] { return StopSignals::received(); };
  hooks.on_epoch = [&](const EpochLog& l, const Divergence& d) { progress->update(l, d); };
  hooks.on_trained = [&] {
    if (progress) progress->finish();
  };
  hooks.say = [](const std::string& text) { say(text); };
  const Outcome out = run_training(std::move(req), *comm, hooks);
  print_message(out.message);
  return exit_code_of(out);
}

}  // namespace mmdflow
