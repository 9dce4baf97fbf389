#include "src/cli/commands.h"

#define CXXOPTS_VECTOR_DELIMITER '\x1f'  // --set values may hold commas
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <ctime>
#include <cxxopts.hpp>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "src/base/device.h"
#include "src/base/errors.h"
#include "src/base/io.h"
#include "src/base/random.h"
#include "src/cli/bench.h"
#include "src/cli/sweep.h"
#include "src/train/checkpoint.h"
#include "src/train/compare.h"
#include "src/train/config.h"
#include "src/train/trainer.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

constexpr const char* kTopHelp =
    R"(mmdflow: the Wasserstein gradient flow of the MMD for mean-field two-layer networks

usage: mmdflow <command> [options]

commands:
  train     train a student network toward a teacher (no --config: the quick start)
  compare   compare a finished run's student with its teacher
  sweep     run every setting and seed of a study in parallel, then tabulate the curves
  bench     time the flow step against this machine's matrix-product throughput

'mmdflow <command> --help' lists a command's options.
)";

void add_config_options(cxxopts::Options& o) {
  o.add_options()("c,config", "YAML config file (default: the built-in quick start)",
                  cxxopts::value<std::string>())(
      "s,set", "override a config key: key.path=value (repeatable)",
      cxxopts::value<std::vector<std::string>>())(
      "device", "cpu | cuda | cuda:K (as --set device=...)", cxxopts::value<std::string>())(
      "threads", "intra-op threads, 0 = one per core (as --set threads=...)",
      cxxopts::value<std::string>())("h,help", "show this help");
}

// Returns nullopt when --help was asked (and printed).
std::optional<cxxopts::ParseResult> parse(cxxopts::Options& o, int argc, char** argv) {
  cxxopts::ParseResult r;
  try {
    r = o.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    throw UsageError(std::string(e.what()) + " (see --help)");
  }
  if (r.count("help")) {
    fmt::print("{}", o.help());
    return std::nullopt;
  }
  if (!r.unmatched().empty())
    throw UsageError(fmt::format("unexpected argument '{}' (see --help)", r.unmatched()[0]));
  return r;
}

// --config (else `fallback`; empty: the defaults) with --set, --device and --threads applied.
Config config_from(const cxxopts::ParseResult& r, const std::string& fallback = "") {
  std::vector<std::string> sets;
  if (r.count("set")) sets = r["set"].as<std::vector<std::string>>();
  if (r.count("device")) sets.push_back("device=" + r["device"].as<std::string>());
  if (r.count("threads")) sets.push_back("threads=" + r["threads"].as<std::string>());
  return load_config(r.count("config") ? r["config"].as<std::string>() : fallback, sets);
}

std::string default_out(const cxxopts::ParseResult& r) {
  std::string stem =
      r.count("config") ? fs::path(r["config"].as<std::string>()).stem().string() : "quickstart";
  std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
  return fmt::format("runs/{}-{}", stem, stamp);
}

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = int64_t(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

constexpr const char* kCsvHeader =
    "epoch,train_loss,valid_loss,beta,step_size,grad_sq,noisy_grad_sq,seconds\n";
constexpr const char* kCheckpointFile = "checkpoint.bin";

std::string csv_line(const EpochLog& l) {
  return fmt::format("{},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.3f}\n", l.epoch, l.train_loss,
                     l.valid_loss, l.beta, l.step_size, l.grad_sq, l.noisy_grad_sq, l.seconds);
}

// The part of a run folder's losses.csv that a run resumed at `epoch` keeps: the header and the
// lines of epochs 1..epoch (later ones were written after the checkpoint).
std::string csv_upto(const std::string& path, int64_t epoch) {
  if (!fs::exists(path)) {
    if (epoch == 0) return kCsvHeader;
    throw UsageError(fmt::format("{}: missing, the checkpoint is at epoch {}", path, epoch));
  }
  const std::string text = read_file(path);
  if (text.rfind(kCsvHeader, 0) != 0)
    throw UsageError(fmt::format("{}: not an mmdflow losses.csv (unexpected header)", path));
  size_t pos = std::strlen(kCsvHeader);
  for (int64_t e = 1; e <= epoch; ++e) {
    const std::string head = fmt::format("{},", e);
    const size_t end = text.find('\n', pos);
    if (end == std::string::npos || text.compare(pos, head.size(), head) != 0)
      throw UsageError(
          fmt::format("{}: holds {} epochs, the checkpoint is at epoch {}", path, e - 1, epoch));
    pos = end + 1;
  }
  return text.substr(0, pos);
}

// "after epoch E" or "after epoch E and B steps of epoch E + 1".
std::string position(const TrainerState& s) {
  if (s.batch == 0) return fmt::format("after epoch {}", s.epoch);
  return fmt::format("after epoch {} and {} step{} of epoch {}", s.epoch, s.batch,
                     s.batch == 1 ? "" : "s", s.epoch + 1);
}

// While alive, SIGINT and SIGTERM only record themselves; the run asks received() before each
// step. A signal ignored when the process started (e.g. SIGINT of a background job) stays so.
class StopSignals {
 public:
  StopSignals() {
    signal_ = 0;
    struct sigaction sa = {};
    sa.sa_handler = [](int sig) { signal_ = sig; };
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (int i = 0; i < 2; ++i) {
      sigaction(kSignals[i], nullptr, &old_[i]);
      if (old_[i].sa_handler != SIG_IGN) sigaction(kSignals[i], &sa, nullptr);
    }
  }
  ~StopSignals() {
    for (int i = 0; i < 2; ++i) sigaction(kSignals[i], &old_[i], nullptr);
  }
  static int received() { return signal_; }

 private:
  static constexpr int kSignals[2] = {SIGINT, SIGTERM};
  static inline volatile std::sig_atomic_t signal_ = 0;
  struct sigaction old_[2];
};

// A self-rewriting line with ETA on a terminal; plain lines every `every` epochs otherwise.
class Progress {
 public:
  Progress(int64_t epochs, int64_t every) : epochs_(epochs), every_(every), tty_(isatty(1)) {}
  void update(const EpochLog& l) {
    const double eta = l.seconds / double(l.epoch) * double(epochs_ - l.epoch);
    const std::string line = fmt::format(
        "epoch {:>{}}/{}  train {:.4e}  valid {:.4e}  beta {:.3g}  |grad|^2 {:.3e}  "
        "{} elapsed, ETA {}",
        l.epoch, std::to_string(epochs_).size(), epochs_, l.train_loss, l.valid_loss, l.beta,
        l.noisy_grad_sq, fmt_duration(l.seconds), fmt_duration(eta));
    if (tty_) {
      const auto now = std::chrono::steady_clock::now();
      if (l.epoch == epochs_ || now - last_ > std::chrono::milliseconds(100)) {
        fmt::print("\r{}\x1b[K", line);
        std::fflush(stdout);
        last_ = now;
        drawn_ = true;
      }
    } else if (l.epoch % every_ == 0 || l.epoch == epochs_ || l.epoch == 1) {
      fmt::print("{}\n", line);
      std::fflush(stdout);
    }
  }
  void finish() {
    if (tty_ && drawn_) fmt::print("\n");
  }

 private:
  int64_t epochs_, every_;
  bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

void print_resolved(const Config& c, const std::string& out) {
  fmt::print(
      "mmdflow train: teacher M={} student N={} | d={} H={} o={} {}/{} | {} flow, step {} | "
      "beta {} {} | {} epochs, batch {} of {} | {} {}, {} threads\n  -> {}\n",
      c.teacher.particles, c.student.particles, c.data.dim, c.model.hidden, c.model.outputs,
      name_of(c.model.activation), name_of(c.model.output), name_of(c.flow.method),
      c.flow.step_size, name_of(c.noise.schedule), c.noise.beta0, c.train.epochs, c.train.batch,
      c.data.train_size, c.device.str(), name_of(c.dtype), c.threads, out);
  if (c.misspecified())
    fmt::print("  misspecified: the teacher's particles have H={} {}, the student's H={} {}\n",
               c.teacher_hidden(), name_of(c.teacher_activation()), c.model.hidden,
               name_of(c.model.activation));
  std::fflush(stdout);
}

int cmd_train(int argc, char** argv) {
  cxxopts::Options o("mmdflow train",
                     "Train a student network toward a teacher with the MMD flow (noise injection "
                     "through the beta schedule).");
  add_config_options(o);
  o.add_options()("o,out", "output folder (default: runs/<config>-<date>-<time>)",
                  cxxopts::value<std::string>())(
      "resume",
      "continue the run in this folder from its checkpoint, with its config.yaml (or --config) "
      "and --set; only train.epochs, train.checkpoint_every, threads, device, log.*, compare.* "
      "may change",
      cxxopts::value<std::string>());
  auto r = parse(o, argc, argv);
  if (!r) return kOk;
  // From here until training ends, a signal stops the run at its first step boundary.
  std::optional<StopSignals> signals(std::in_place);
  const bool resume = r->count("resume") > 0;
  std::string out;
  Config cfg;
  if (resume) {
    if (r->count("out")) throw UsageError("--out and --resume exclude each other");
    out = (*r)["resume"].as<std::string>();
    if (!fs::exists(out + "/config.yaml"))
      throw UsageError(fmt::format("--resume {}: no config.yaml there, not a run folder", out));
    cfg = config_from(*r, out + "/config.yaml");
  } else {
    cfg = config_from(*r);
    out = r->count("out") ? (*r)["out"].as<std::string>() : default_out(*r);
    if (fs::exists(out) && (!fs::is_directory(out) || !fs::is_empty(out)))
      throw UsageError(fmt::format("--out {}: already exists and is not an empty folder", out));
  }
  cfg.threads = set_threads(cfg.threads);
  if (cfg.log.print_every == 0) cfg.log.print_every = std::max<int64_t>(1, cfg.train.epochs / 20);
  const std::string ckpt = out + "/" + kCheckpointFile;

  // Everything is validated and built before the first write: bad input leaves the folder as is.
  Trainer trainer(cfg);
  std::string csv_text = kCsvHeader;
  if (resume) {
    if (fs::exists(ckpt)) trainer.restore(load_checkpoint(ckpt, cfg));
    csv_text = csv_upto(out + "/losses.csv", trainer.state().epoch);
    for (const char* stale : {"summary.json", "student.pt", "teacher.pt"})
      fs::remove(out + "/" + stale);
  } else {
    try {
      fs::create_directories(out);
    } catch (const fs::filesystem_error& e) {
      throw IoError(fmt::format("cannot create {}: {}", out, e.code().message()));
    }
  }
  write_file_atomic(out + "/config.yaml", to_yaml(cfg));
  print_resolved(cfg, out);
  // Where the checkpoint on disk stands, for messages.
  std::string saved = fs::exists(ckpt) ? position(trainer.state()) : "";
  if (resume) fmt::print("  resuming {}\n", saved.empty() ? "at the start (no checkpoint)" : saved);

  LineFile csv(out + "/losses.csv", csv_text);
  Trainer::End end;
  {
    Progress progress(cfg.train.epochs, cfg.log.print_every);
    const int64_t every = cfg.train.checkpoint_every;
    end = trainer.run(
        [&](const EpochLog& l) {
          csv.append(csv_line(l));
          progress.update(l);
          if (l.finite && ((every > 0 && l.epoch % every == 0) || l.epoch == cfg.train.epochs)) {
            const TrainerState s = trainer.state();
            save_checkpoint(ckpt, cfg, s);
            saved = position(s);
          }
        },
        [] { return StopSignals::received() != 0; });
    progress.finish();
  }
  const int sig = StopSignals::received();
  signals.reset();
  const TrainerState st = trainer.state();
  const std::string last_good =
      saved.empty() ? "no checkpoint written" : fmt::format("{} kept ({})", ckpt, saved);
  if (end == Trainer::End::Stopped) {
    const char* name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    if (!trainer.finite()) {
      fmt::print(stderr,
                 "mmdflow: error: training went non-finite during epoch {}, stopped by {}; {}\n",
                 st.epoch + 1, name, last_good);
      return kNonFinite;
    }
    save_checkpoint(ckpt, cfg, st);
    fmt::print(stderr,
               "mmdflow: stopped by {} {}; checkpoint written, continue with: mmdflow train "
               "--resume {}\n",
               name, position(st), out);
    return sig == SIGINT ? kInterrupted : kTerminated;
  }

  const EpochLog& last = st.last;
  nlohmann::json summary;
  summary["initial_valid_loss"] = trainer.initial_valid_loss();
  summary["epochs"] = last.epoch;
  summary["final_train_loss"] = last.train_loss;
  summary["final_valid_loss"] = last.valid_loss;
  summary["best_valid_loss"] = st.best_valid;
  summary["best_epoch"] = st.best_epoch;
  summary["seconds"] = st.seconds;
  summary["steps"] = st.steps;
  summary["ms_per_step"] = 1e3 * st.step_seconds / double(std::max<int64_t>(1, st.steps));
  summary["device"] = cfg.device.str();
  summary["threads"] = cfg.threads;
  summary["version"] = MMDFLOW_VERSION;
  if (end == Trainer::End::NonFinite) {
    summary["status"] = "non_finite";
    write_file_atomic(out + "/summary.json", summary.dump(2) + "\n");
    fmt::print(stderr,
               "mmdflow: error: training went non-finite at epoch {} (train loss {}, valid loss "
               "{}); stopped, logs in {}; {}\n",
               last.epoch, last.train_loss, last.valid_loss, out, last_good);
    return kNonFinite;
  }
  save_tensors(out + "/student.pt", trainer.student().named_tensors());
  save_tensors(out + "/teacher.pt", trainer.teacher().named_tensors());
  at::Generator gen = stream_generator(cfg.seed, kCompareStream);
  Comparison cmp = compare(trainer.student(), trainer.teacher(), cfg.data.input,
                           cfg.compare.samples, cfg.compare.nearest, gen);
  fmt::print("{}", format_table(cmp));
  summary["status"] = "done";
  summary["compare"] = to_json(cmp);
  write_file_atomic(out + "/summary.json", summary.dump(2) + "\n");
  fmt::print("wrote {}/{{losses.csv, config.yaml, summary.json, student.pt, teacher.pt, {}}}\n",
             out, kCheckpointFile);
  return kOk;
}

std::map<std::string, at::Tensor> tensors_from(const std::string& path,
                                               const at::TensorOptions& opts) {
  if (!fs::exists(path)) throw UsageError(fmt::format("{}: no such file", path));
  std::map<std::string, at::Tensor> out;
  for (auto& [name, t] : load_tensors(path)) out[name] = t.to(opts);
  return out;
}

at::Tensor take(std::map<std::string, at::Tensor>& ts, const std::string& name,
                const std::string& path, bool required) {
  auto it = ts.find(name);
  if (it == ts.end()) {
    if (required) throw UsageError(fmt::format("{}: tensor '{}' is missing", path, name));
    return at::Tensor();
  }
  at::Tensor t = it->second;
  ts.erase(it);
  return t;
}

void no_more(const std::map<std::string, at::Tensor>& ts, const std::string& path) {
  if (!ts.empty())
    throw UsageError(fmt::format("{}: unexpected tensor '{}'", path, ts.begin()->first));
}

// A saved measure read back, its shapes checked against the family.
ParticleNet particles_from(const std::string& path, const ParticleFamily& fam,
                           const at::TensorOptions& opts) {
  auto ts = tensors_from(path, opts);
  Particles z;
  z.A = take(ts, "A", path, true);
  z.a = take(ts, "a", path, fam.hidden_bias);
  z.B = take(ts, "B", path, true);
  z.b = take(ts, "b", path, fam.output_bias);
  no_more(ts, path);
  return ParticleNet(fam, z);
}

std::unique_ptr<Student> student_from(const std::string& path, const Config& cfg,
                                      const at::TensorOptions& opts) {
  if (cfg.student.layout == Layout::Block)
    return make_block_student(particles_from(path, family_of(cfg), opts), cfg.flow.chunk);
  auto ts = tensors_from(path, opts);
  DenseWeights w;
  w.W1 = take(ts, "W1", path, true);
  w.b1 = take(ts, "b1", path, cfg.model.hidden_bias);
  w.W2 = take(ts, "W2", path, true);
  w.b2 = take(ts, "b2", path, cfg.model.output_bias);
  no_more(ts, path);
  return make_dense_student(family_of(cfg), w);
}

int cmd_compare(int argc, char** argv) {
  cxxopts::Options o("mmdflow compare",
                     "Compare a finished run's student with its teacher: 1/2 MMD^2 on fresh "
                     "inputs, nearest student particles of each teacher particle.");
  o.add_options()("r,run", "the run's output folder", cxxopts::value<std::string>())(
      "samples", "fresh inputs (default: the run's compare.samples)", cxxopts::value<int64_t>())(
      "nearest", "student particles listed per teacher particle", cxxopts::value<int64_t>())(
      "h,help", "show this help");
  auto r = parse(o, argc, argv);
  if (!r) return kOk;
  if (!r->count("run")) throw UsageError("--run DIR is required");
  const std::string dir = (*r)["run"].as<std::string>();
  if (!fs::exists(dir + "/config.yaml"))
    throw UsageError(fmt::format("--run {}: no config.yaml there", dir));
  Config cfg = load_config(dir + "/config.yaml");
  set_threads(cfg.threads);
  const int64_t samples = r->count("samples") ? (*r)["samples"].as<int64_t>() : cfg.compare.samples;
  const int64_t nearest = r->count("nearest") ? (*r)["nearest"].as<int64_t>() : cfg.compare.nearest;
  if (samples <= 0) throw UsageError(fmt::format("--samples: must be positive, got {}", samples));
  if (nearest <= 0) throw UsageError(fmt::format("--nearest: must be positive, got {}", nearest));
  const auto opts = at::TensorOptions().dtype(cfg.dtype);
  auto student = student_from(dir + "/student.pt", cfg, opts);
  ParticleNet teacher = particles_from(dir + "/teacher.pt", teacher_family_of(cfg), opts);
  at::Generator gen = stream_generator(cfg.seed, kCompareStream);
  fmt::print("{}", format_table(compare(*student, teacher, cfg.data.input, samples, nearest, gen)));
  return kOk;
}

std::vector<int64_t> parse_sizes(const std::string& s) {
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    const std::string item = s.substr(pos, end - pos);
    char* stop = nullptr;
    const long long v = std::strtoll(item.c_str(), &stop, 10);
    if (item.empty() || *stop != '\0' || v <= 0)
      throw UsageError(fmt::format("--particles: '{}' is not a positive integer", item));
    out.push_back(v);
    pos = end + 1;
  }
  return out;
}

int cmd_bench(int argc, char** argv) {
  cxxopts::Options o("mmdflow bench",
                     "Time the flow step (median over repeats after warm-up) and compare its "
                     "GFLOP/s on the first-layer products with this machine's float32 "
                     "matrix-product throughput, measured in the same run.");
  add_config_options(o);
  o.add_options()("particles", "student sizes, e.g. 1000,10000 (default: the config's)",
                  cxxopts::value<std::string>())(
      "batch", "inputs per step (default: the config's train.batch)", cxxopts::value<int64_t>())(
      "repeats", "timed steps per size", cxxopts::value<int64_t>()->default_value("20"));
  auto r = parse(o, argc, argv);
  if (!r) return kOk;
  Config cfg = config_from(*r);
  cfg.threads = set_threads(cfg.threads);
  BenchOptions bo;
  if (r->count("particles")) bo.particles = parse_sizes((*r)["particles"].as<std::string>());
  if (r->count("batch")) bo.batch = (*r)["batch"].as<int64_t>();
  bo.repeats = (*r)["repeats"].as<int64_t>();
  if (bo.batch < 0 || bo.repeats <= 0) throw UsageError("--batch and --repeats must be positive");
  run_bench(cfg, bo);
  return kOk;
}

int cmd_sweep(int argc, char** argv) {
  cxxopts::Options o("mmdflow sweep",
                     "Run every setting (sweep.variants of the config x --grid values) and seed "
                     "as `mmdflow train` processes, J at a time, one folder per run; runs already "
                     "complete are kept. Writes sweep.csv (a row per run) and curves.csv (mean, "
                     "sample std, min, max of the losses over seeds, per setting and epoch).");
  o.add_options()("c,config", "the study's YAML config (a train config with a sweep section)",
                  cxxopts::value<std::string>())(
      "s,set", "override a key of every run: key.path=value (repeatable)",
      cxxopts::value<std::vector<std::string>>())(
      "g,grid", "an axis: key.path=v1,v2,... (repeatable; the product is run)",
      cxxopts::value<std::vector<std::string>>())(
      "seeds", "seeds per setting (default: the config's sweep.seeds)", cxxopts::value<int64_t>())(
      "j,jobs", "runs at once (default: one per core)", cxxopts::value<int64_t>())(
      "o,out", "the sweep folder (default: runs/<config>)", cxxopts::value<std::string>())(
      "h,help", "show this help");
  auto r = parse(o, argc, argv);
  if (!r) return kOk;
  if (!r->count("config")) throw UsageError("--config FILE is required");
  SweepOptions so;
  so.config_path = (*r)["config"].as<std::string>();
  if (r->count("set")) so.sets = (*r)["set"].as<std::vector<std::string>>();
  if (r->count("grid")) so.grid = (*r)["grid"].as<std::vector<std::string>>();
  if (r->count("seeds")) so.seeds = (*r)["seeds"].as<int64_t>();
  if (r->count("jobs")) so.jobs = (*r)["jobs"].as<int64_t>();
  if (r->count("seeds") && so.seeds <= 0)
    throw UsageError(fmt::format("--seeds: must be positive, got {}", so.seeds));
  if (r->count("jobs") && so.jobs <= 0)
    throw UsageError(fmt::format("--jobs: must be positive, got {}", so.jobs));
  so.out = r->count("out") ? (*r)["out"].as<std::string>()
                           : "runs/" + fs::path(so.config_path).stem().string();
  return run_sweep(so, fs::read_symlink("/proc/self/exe").string());
}

}  // namespace

int run_cli(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  auto fail = [](const char* what, int code) {  // the one line bad input or failure gets
    fmt::print(stderr, "mmdflow: error: {}\n", what);
    return code;
  };
  try {
    if (cmd == "train") return cmd_train(argc - 1, argv + 1);
    if (cmd == "compare") return cmd_compare(argc - 1, argv + 1);
    if (cmd == "bench") return cmd_bench(argc - 1, argv + 1);
    if (cmd == "sweep") return cmd_sweep(argc - 1, argv + 1);
    if (cmd == "--version") {
      fmt::print("mmdflow {}\n", MMDFLOW_VERSION);
      return kOk;
    }
    if (cmd == "-h" || cmd == "--help" || cmd.empty()) {
      fmt::print(cmd.empty() ? stderr : stdout, "{}", kTopHelp);
      return cmd.empty() ? kBadInput : kOk;
    }
    throw UsageError(
        fmt::format("unknown command '{}' (valid: train, compare, sweep, bench)", cmd));
  } catch (const ConfigError& e) {
    return fail(e.what(), kBadInput);
  } catch (const UsageError& e) {
    return fail(e.what(), kBadInput);
  } catch (const CheckpointError& e) {
    return fail(e.what(), kBadInput);
  } catch (const IoError& e) {
    return fail(e.what(), kIo);
  } catch (const fs::filesystem_error& e) {
    return fail(e.what(), kIo);
  } catch (const c10::Error& e) {
    return fail(e.what_without_backtrace(), kError);
  } catch (const std::exception& e) {
    return fail(e.what(), kError);
  }
}

}  // namespace mmdflow
