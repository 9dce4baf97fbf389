#include "src/cli/sweep.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>

#include "src/base/device.h"
#include "src/base/io.h"
#include "src/base/stats.h"
#include "src/cli/options.h"
#include "src/train/divergence.h"
#include "src/train/run_folder.h"
#include "src/train/summary.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

constexpr double kMaxRuns = 1e6;  // runs of one sweep: its tables and folders stay of a usable size

struct Setting {
  std::string name;                                       // folder and label
  std::string variant;                                    // sweep.variants name, or "base"
  std::vector<std::pair<std::string, std::string>> grid;  // (key, value)
  std::vector<std::string> sets;                          // every override of this setting
};

struct Run {
  const Setting* setting;
  int64_t seed;
  std::string dir, log;
  int exit = -1;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);) out.push_back(item);
  if (!s.empty() && s.back() == sep) out.push_back("");
  return out;
}

void refuse_seed(const std::string& key, const std::string& where) {
  if (key == "seed")
    throw ConfigError(
        fmt::format("{}: seed cannot vary here: --seeds (sweep.seeds) runs seeds "
                    "0..K-1 of every setting",
                    where));
}

// A setting's folder, inside --out: a name of letters, digits and _ - . = + , alone (no '/', no
// spaces or comments that YAML would cut from the value, not "." or "..").
void check_folder_name(const std::string& name) {
  const bool plain = name != "." && name != ".." &&
                     name.find_first_not_of(
                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.=+,") ==
                         std::string::npos;
  if (!plain)
    throw ConfigError(fmt::format(
        "setting '{}': not a folder name (a variant name or --grid value may hold letters, "
        "digits and _ - . = + , alone)",
        shorten(name)));
}

std::vector<Setting> settings_of(const Config& cfg, const std::vector<std::string>& grid) {
  std::vector<std::pair<std::string, std::vector<std::string>>> axes;
  for (const auto& g : grid) {
    const auto eq = g.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == g.size())
      throw ConfigError(fmt::format("--grid {}: expected key.path=v1,v2,...", shorten(g)));
    const std::string key = g.substr(0, eq);
    refuse_seed(key, "--grid " + key);
    for (const auto& axis : axes)
      if (axis.first == key) throw ConfigError(fmt::format("--grid {}: given twice", shorten(key)));
    auto values = split(g.substr(eq + 1), ',');
    for (const auto& v : values)
      if (v.find_first_not_of(" \t") == std::string::npos)
        throw ConfigError(fmt::format("--grid {}: an empty value", shorten(key)));
    axes.emplace_back(key, std::move(values));
  }
  std::vector<Variant> variants = cfg.sweep.variants;
  for (const auto& [name, sets] : variants)
    for (const auto& s : sets) refuse_seed(s.substr(0, s.find('=')), "sweep.variants." + name);
  if (variants.empty()) variants.emplace_back("base", std::vector<std::string>{});
  std::vector<Setting> out;
  double count = double(variants.size());
  for (const auto& axis : axes) count *= double(axis.second.size());
  if (count > kMaxRuns)
    throw UsageError(
        fmt::format("the variants and --grid axes make {:g} settings, more than a "
                    "sweep runs ({:g})",
                    count, kMaxRuns));
  for (const auto& [vname, vsets] : variants) {
    std::vector<size_t> idx(axes.size(), 0);
    while (true) {
      Setting s{vname, vname, {}, vsets};
      for (size_t a = 0; a < axes.size(); ++a) {
        const std::string& value = axes[a].second[idx[a]];
        s.grid.emplace_back(axes[a].first, value);
        s.sets.push_back(axes[a].first + "=" + value);
        s.name += "__" + axes[a].first + "=" + value;
      }
      check_folder_name(s.name);
      out.push_back(std::move(s));
      size_t a = 0;
      for (; a < axes.size(); ++a) {
        if (++idx[a] < axes[a].second.size()) break;
        idx[a] = 0;
      }
      if (a == axes.size()) break;
    }
  }
  return out;
}

// The run in dir finished (done, or stopped as non-finite) all `epochs` of its config.
bool complete(const std::string& dir, int64_t epochs) {
  try {
    const Summary s = read_summary(dir + "/summary.json");
    return s.status == "non_finite" || (s.status == "done" && s.epochs == epochs);
  } catch (const std::exception&) {
    return false;
  }
}

// SIGINT and SIGTERM are recorded, not obeyed, so the sweep can pass them to its runs.
volatile std::sig_atomic_t g_signal = 0;

// Starts exe with args, its output to `log`, opened here without following a link planted there:
// -1 when the log cannot be opened.
pid_t launch(const std::string& exe, const std::vector<std::string>& args, const std::string& log) {
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {  // only async-signal-safe calls until exec
    // The run ends (with a checkpoint) when the sweep does, even by SIGKILL.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(143);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv{const_cast<char*>(exe.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  ::close(fd);
  return pid;
}

// A word as the shell reads it back.
std::string quoted(const std::string& w) {
  if (!w.empty() && w.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789_-.,/=:+@%") == std::string::npos)
    return w;
  std::string out = "'";
  for (char c : w) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct Curve {  // losses by epoch over the seeds of one setting
  std::map<int64_t, std::vector<double>> train, valid;
};

void stats(const std::vector<double>& v, double* mean, double* sd, double* lo, double* hi) {
  *lo = INFINITY;
  *hi = -INFINITY;
  for (double x : v) *lo = std::min(*lo, x), *hi = std::max(*hi, x);
  const Moments m = moments(v);
  *mean = m.mean;
  *sd = v.size() > 1 ? std::sqrt(m.ss / double(v.size() - 1)) : 0.0;  // sample std
}

// The geometric mean and geometric standard deviation exp(std(log v)): on a log scale the band
// mean ×/÷ gstd stays positive where mean ± std would dip below zero.
void log_stats(const std::vector<double>& v, double* gmean, double* gsd) {
  std::vector<double> logs;
  for (double x : v) logs.push_back(std::log(x));
  double m, sd, lo, hi;
  stats(logs, &m, &sd, &lo, &hi);
  *gmean = std::exp(m);
  *gsd = std::exp(sd);
}

// A CSV cell: quoted, its quotes doubled, when it holds a comma, a quote or a line break.
std::string csv_cell(const std::string& v) {
  if (v.find_first_of(",\"\r\n") == std::string::npos) return v;
  std::string out = "\"";
  for (char c : v) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// One setting's runs over its seeds, as their summaries say.
struct Finals {
  int64_t runs = 0, done = 0, non_finite = 0, diverged = 0;
  std::vector<double> valid;   // the done runs' final validation losses
  std::vector<int64_t> seeds;  // and their seeds
};

// The table a sweep ends with: a line per setting, its done runs' final validation losses.
std::string finals_table(const std::vector<Setting>& settings,
                         const std::map<std::string, Finals>& finals) {
  size_t width = std::string("setting").size();
  for (const Setting& s : settings) width = std::max(width, s.name.size());
  std::string table = fmt::format(
      "final validation loss over each setting's done runs: mean ± sample std, geometric mean, "
      "the best (its seed); runs done of all, non-finite, diverged (validation loss past {:g}x "
      "its start)\n{:<{}}  {:<23}  {:<10}  {:<19}  {:>9}  {:>10}  {:>8}\n",
      kDivergeRatio, "setting", width, "mean ± std", "gmean", "best (seed)", "done/runs",
      "non-finite", "diverged");
  for (const Setting& s : settings) {
    const auto it = finals.find(s.name);
    const Finals f = it == finals.end() ? Finals{} : it->second;
    std::string mean = "-", gmean = "-", best = "-";
    if (!f.valid.empty()) {
      double m, sd, lo, hi, gm, gsd;
      stats(f.valid, &m, &sd, &lo, &hi);
      log_stats(f.valid, &gm, &gsd);
      const size_t b = size_t(std::min_element(f.valid.begin(), f.valid.end()) - f.valid.begin());
      mean =
          f.valid.size() > 1 ? fmt::format("{:.4e} ± {:.2e}", m, sd) : fmt::format("{:.4e} ± -", m);
      gmean = fmt::format("{:.4e}", gm);
      best = fmt::format("{:.4e} ({})", lo, f.seeds[b]);
    }
    table +=
        fmt::format("{:<{}}  {:<23}  {:<10}  {:<19}  {:>9}  {:>10}  {:>8}\n", s.name, width, mean,
                    gmean, best, fmt::format("{}/{}", f.done, f.runs), f.non_finite, f.diverged);
  }
  return table;
}

// Writes sweep.csv and curves.csv; returns finals_table().
std::string write_tables(const std::string& out, const std::vector<Setting>& settings,
                         const std::vector<Run>& runs) {
  std::vector<std::string> keys;
  if (!settings.empty())
    for (const auto& kv : settings[0].grid) keys.push_back(kv.first);
  std::string sweep = "setting,variant";
  for (const auto& k : keys) sweep += "," + k;
  sweep +=
      ",seed,status,final_train_loss,final_valid_loss,best_valid_loss,best_epoch,max_loss_ratio,"
      "diverged_epoch,half_mmd2,seconds,run\n";
  std::map<std::string, Curve> curves;
  std::map<std::string, Finals> finals;
  for (const Run& r : runs) {
    std::string status = "missing", cells = ",,,,,,,";
    Finals& f = finals[r.setting->name];
    ++f.runs;
    try {
      if (fs::exists(r.dir + "/summary.json")) {
        const Summary s = read_summary(r.dir + "/summary.json");
        status = s.status;
        cells = fmt::format("{:.9g},{:.9g},{:.9g},{},{},{},{:.9g},{:.3f}",
                            s.final_train_loss.value_or(NAN), s.final_valid_loss, s.best_valid_loss,
                            s.best_epoch,
                            s.max_loss_ratio ? fmt::format("{:.9g}", *s.max_loss_ratio) : "",
                            s.diverged_epoch ? std::to_string(*s.diverged_epoch) : "",
                            s.compare ? s.compare->half_mmd2 : NAN, s.seconds);
        f.non_finite += s.status == "non_finite";
        f.diverged += s.diverged_epoch.has_value();
        if (s.status == "done") {
          ++f.done;
          f.valid.push_back(s.final_valid_loss);
          f.seeds.push_back(r.seed);
        }
      } else if (fs::exists(r.dir + "/config.yaml")) {
        status = "partial";
      }
    } catch (const std::exception&) {
      status = "unreadable";
    }
    sweep += csv_cell(r.setting->name) + "," + csv_cell(r.setting->variant);
    for (const auto& kv : r.setting->grid) sweep += "," + csv_cell(kv.second);
    sweep += fmt::format(",{},{},{},{}\n", r.seed, csv_cell(status), cells, csv_cell(r.dir));
    if (status != "done") continue;
    Curve& c = curves[r.setting->name];
    const std::string losses = r.dir + "/losses.csv";
    if (!fs::is_regular_file(fs::symlink_status(losses)))
      throw CheckpointError(
          fmt::format("{}: missing or not a regular file, but {}/summary.json "
                      "says the run is done",
                      losses, r.dir));
    const Losses l = read_losses(losses);
    const std::vector<double> epoch = l.values("epoch"), train = l.values("train_loss"),
                              valid = l.values("valid_loss");
    for (size_t i = 0; i < epoch.size(); ++i) {
      c.train[int64_t(epoch[i])].push_back(train[i]);
      c.valid[int64_t(epoch[i])].push_back(valid[i]);
    }
  }
  write_file_atomic(out + "/sweep.csv", sweep);
  std::string table =
      "setting,epoch,runs,train_mean,train_std,train_min,train_max,valid_mean,valid_std,"
      "valid_min,valid_max,train_gmean,train_gstd,valid_gmean,valid_gstd\n";
  for (const Setting& s : settings) {
    auto it = curves.find(s.name);
    if (it == curves.end()) continue;
    for (const auto& [epoch, train] : it->second.train) {
      const auto& valid = it->second.valid[epoch];
      double m, sd, lo, hi, vm, vsd, vlo, vhi, gm, gsd, vgm, vgsd;
      stats(train, &m, &sd, &lo, &hi);
      stats(valid, &vm, &vsd, &vlo, &vhi);
      log_stats(train, &gm, &gsd);
      log_stats(valid, &vgm, &vgsd);
      table += fmt::format(
          "{},{},{},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},"
          "{:.9g}\n",
          s.name, epoch, train.size(), m, sd, lo, hi, vm, vsd, vlo, vhi, gm, gsd, vgm, vgsd);
    }
  }
  write_file_atomic(out + "/curves.csv", table);
  return finals_table(settings, finals);
}

// Every run's configuration is checked before any starts.
void check_settings(const Config& base, const std::vector<Setting>& settings,
                    const std::string& source) {
  for (const Setting& s : settings) {
    std::vector<std::string> sets = s.sets;
    sets.push_back("seed=0");
    try {
      parse_config(to_yaml(base), sets, source);
    } catch (const ConfigError& e) {
      throw ConfigError(fmt::format("setting {}: {}", s.name, e.what()));
    }
  }
}

// A rerun into the same folder runs the same base configuration; --extend lets it change the
// keys a resumed run may change (e.g. more epochs), which its runs then resume with: those
// changes as key=value.
std::vector<std::string> changes_of(const SweepOptions& opt, const Config& base,
                                    const std::string& base_path) {
  std::vector<std::string> changes;
  if (!fs::exists(base_path)) return changes;
  Config before;
  try {
    before = load_config(base_path);
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: not this sweep's base ({})", base_path, e.what()));
  }
  for (const KeyDiff& d : differing_keys(before, base)) {
    if (d.path == "threads") continue;
    if (!d.resumable || !opt.extend)
      throw ConfigError(fmt::format("{}: the sweep there ran with {} = {}, this one asks {}: {}",
                                    opt.out, d.path, shorten(d.a), shorten(d.b),
                                    d.resumable ? "rerun with --extend to continue its runs with it"
                                                : "use another --out (its runs cannot change it)"));
    changes.push_back(d.path + "=" + d.b);
  }
  return changes;
}

// A run's command line: a fresh one from base.yaml, or the resumption of a partial one.
std::vector<std::string> args_of(const Run& r, const std::string& base_path, int64_t threads,
                                 const std::vector<std::string>& changes) {
  std::vector<std::string> args;
  if (fs::exists(r.dir + "/config.yaml")) {
    args = {"train", "--resume", r.dir, "--threads", std::to_string(threads)};
    for (const auto& c : changes) args.insert(args.end(), {"--set", c});
  } else {
    args = {"train", "--config", base_path, "--out", r.dir};
    for (const auto& s : r.setting->sets) args.insert(args.end(), {"--set", s});
    args.insert(args.end(), {"--set", fmt::format("seed={}", r.seed)});
  }
  return args;
}

// Runs `todo`, `jobs` at a time, each its own `train` process; SIGINT and SIGTERM are passed on
// to the runs, which checkpoint and stop. Returns the failures (exits other than done,
// non-finite or stopped).
int run_all(const std::vector<Run*>& todo, int64_t jobs, const std::string& self_exe,
            const std::function<std::vector<std::string>(const Run&)>& args) {
  g_signal = 0;
  struct sigaction sa = {}, old_int, old_term;
  sa.sa_handler = [](int sig) {
    if (g_signal == 0) g_signal = sig;
  };
  sigemptyset(&sa.sa_mask);  // no SA_RESTART: waitpid returns to pass the signal on
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  std::map<pid_t, Run*> running;
  size_t next = 0, finished = 0;
  int failures = 0, passed = 0;
  while ((next < todo.size() && g_signal == 0) || !running.empty()) {
    while (g_signal == 0 && next < todo.size() && int64_t(running.size()) < jobs) {
      Run* r = todo[next++];
      fs::create_directories(fs::path(r->dir).parent_path());
      if (const pid_t pid = launch(self_exe, args(*r), r->log); pid > 0) {
        running[pid] = r;
        continue;
      }
      ++failures;
      fmt::print("[{}/{}] {} seed {}: failed (cannot write its log {}: {})\n", ++finished,
                 todo.size(), r->setting->name, r->seed, r->log, std::strerror(errno));
    }
    if (g_signal != 0 && passed != g_signal) {  // each run checkpoints and stops
      for (const auto& [pid, run] : running) kill(pid, g_signal);
      passed = g_signal;
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    auto it = running.find(pid);
    if (it == running.end()) continue;
    Run* r = it->second;
    running.erase(it);
    r->exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    const bool stopped = r->exit == kInterrupted || r->exit == kTerminated;
    if (r->exit != kOk && r->exit != kNonFinite && !stopped) ++failures;
    fmt::print("[{}/{}] {} seed {}: {}\n", ++finished, todo.size(), r->setting->name, r->seed,
               r->exit == kOk          ? "done"
               : r->exit == kNonFinite ? "non-finite"
               : stopped               ? fmt::format("stopped with a checkpoint (exit {})", r->exit)
                                       : fmt::format("failed (exit {}, see {})", r->exit, r->log));
    std::fflush(stdout);
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return failures;
}

}  // namespace

int run_sweep(const SweepOptions& opt, const std::string& self_exe) {
  Config cfg = load_config(opt.config_path, opt.sets);
  const int64_t seeds = opt.seeds > 0 ? opt.seeds : cfg.sweep.seeds;
  const int64_t cores = cores_available();
  const int64_t jobs = opt.jobs > 0 ? opt.jobs : cores;
  // The cores are split among the jobs, unless --set threads=N asks N for every run.
  const bool threads_set = std::any_of(opt.sets.begin(), opt.sets.end(), [](const std::string& s) {
    return s.compare(0, s.find('='), "threads") == 0;
  });
  const int64_t threads = threads_set ? cfg.threads : std::max<int64_t>(1, cores / jobs);
  if (!threads_set && cfg.threads != 0 && cfg.threads != threads)
    print_message(fmt::format(
        "mmdflow sweep: {}'s threads = {} is replaced by {} ({} cores / {} jobs); --set "
        "threads={} keeps it\n",
        opt.config_path, cfg.threads, threads, cores, jobs, cfg.threads));
  const std::vector<Setting> settings = settings_of(cfg, opt.grid);
  Config base = cfg;
  base.sweep = Config::Sweep{};
  base.threads = threads;
  check_settings(base, settings, opt.config_path);
  const std::string base_path = opt.out + "/base.yaml";
  const std::vector<std::string> changes = changes_of(opt, base, base_path);
  if (double(settings.size()) * double(seeds) > kMaxRuns)
    throw UsageError(
        fmt::format("{} settings x {} seeds = {:g} runs, more than a sweep runs ({:g})",
                    settings.size(), seeds, double(settings.size()) * double(seeds), kMaxRuns));
  std::vector<Run> runs;
  for (const Setting& s : settings)
    for (int64_t seed = 0; seed < seeds; ++seed)
      runs.push_back({&s, seed, fmt::format("{}/{}/seed{}", opt.out, s.name, seed),
                      fmt::format("{}/{}/seed{}.log", opt.out, s.name, seed)});
  if (opt.mode == SweepMode::Collect) {
    if (!fs::is_directory(opt.out))
      throw UsageError(fmt::format("--collect: {} is not a sweep folder", opt.out));
    const std::string finals = write_tables(opt.out, settings, runs);
    fmt::print("wrote {}/sweep.csv and {}/curves.csv from {} run folders\n{}", opt.out, opt.out,
               runs.size(), finals);
    return 0;
  }
  fs::create_directories(opt.out);
  write_file_atomic(base_path, to_yaml(base));
  auto args = [&](const Run& r) { return args_of(r, base_path, threads, changes); };
  std::vector<Run*> todo;
  for (Run& r : runs)
    if (!complete(r.dir, base.train.epochs)) todo.push_back(&r);
  if (opt.mode == SweepMode::Plan) {
    std::string plan;
    for (const Run* r : todo) {
      plan += quoted(self_exe);
      for (const auto& a : args(*r)) plan += " " + quoted(a);
      plan += "\n";
    }
    print_result(plan);
    return 0;
  }
  fmt::print(
      "mmdflow sweep: {} settings x {} seeds = {} runs, {} complete, {} to run; {} jobs of "
      "{} threads -> {}\n",
      settings.size(), seeds, runs.size(), runs.size() - todo.size(), todo.size(), jobs,
      threads > 0 ? std::to_string(threads) : "one-per-core", opt.out);
  std::fflush(stdout);
  const int failures = run_all(todo, jobs, self_exe, args);
  const std::string finals = write_tables(opt.out, settings, runs);
  fmt::print("wrote {}/sweep.csv and {}/curves.csv\n{}", opt.out, opt.out, finals);
  if (g_signal != 0) {
    print_message(fmt::format("mmdflow: sweep stopped by {}; rerun the same command to continue\n",
                              signal_name(g_signal)));
    return 128 + g_signal;
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace mmdflow
