#include "src/cli/sweep.h"

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "src/base/io.h"

namespace fs = std::filesystem;

namespace mmdflow {
namespace {

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
  return out;
}

std::vector<Setting> settings_of(const Config& cfg, const std::vector<std::string>& grid) {
  std::vector<std::pair<std::string, std::vector<std::string>>> axes;
  for (const auto& g : grid) {
    const auto eq = g.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == g.size())
      throw ConfigError(fmt::format("--grid {}: expected key.path=v1,v2,...", g));
    axes.emplace_back(g.substr(0, eq), split(g.substr(eq + 1), ','));
  }
  std::vector<Variant> variants = cfg.sweep.variants;
  if (variants.empty()) variants.emplace_back("base", std::vector<std::string>{});
  std::vector<Setting> out;
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

bool complete(const std::string& dir) {
  if (!fs::exists(dir + "/summary.json")) return false;
  try {
    const std::string status = nlohmann::json::parse(read_file(dir + "/summary.json"))["status"];
    return status == "done" || status == "non_finite";
  } catch (const std::exception&) {
    return false;
  }
}

pid_t launch(const std::string& exe, const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    FILE* f = std::fopen(log.c_str(), "w");
    if (f) {
      dup2(fileno(f), 1);
      dup2(fileno(f), 2);
    }
    std::vector<char*> argv{const_cast<char*>(exe.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(exe.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

struct Curve {  // losses by epoch over the seeds of one setting
  std::map<int64_t, std::vector<double>> train, valid;
};

std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) rows.push_back(split(line, ','));
  return rows;
}

void stats(const std::vector<double>& v, double* mean, double* sd, double* lo, double* hi) {
  double s = 0, ss = 0;
  *lo = INFINITY;
  *hi = -INFINITY;
  for (double x : v) {
    s += x;
    *lo = std::min(*lo, x);
    *hi = std::max(*hi, x);
  }
  *mean = s / double(v.size());
  for (double x : v) ss += (x - *mean) * (x - *mean);
  *sd = v.size() > 1 ? std::sqrt(ss / double(v.size() - 1)) : 0.0;  // sample std
}

void write_tables(const std::string& out, const std::vector<Setting>& settings,
                  const std::vector<Run>& runs) {
  std::vector<std::string> keys;
  if (!settings.empty())
    for (const auto& kv : settings[0].grid) keys.push_back(kv.first);
  std::string sweep = "setting,variant";
  for (const auto& k : keys) sweep += "," + k;
  sweep +=
      ",seed,status,final_train_loss,final_valid_loss,best_valid_loss,best_epoch,half_mmd2,"
      "seconds,run\n";
  std::map<std::string, Curve> curves;
  for (const Run& r : runs) {
    std::string status = "failed", cells = ",,,,,";
    if (fs::exists(r.dir + "/summary.json")) {
      auto s = nlohmann::json::parse(read_file(r.dir + "/summary.json"));
      status = s.value("status", "failed");
      const double mmd = s.contains("compare") ? double(s["compare"]["half_mmd2"]) : NAN;
      cells = fmt::format("{:.9g},{:.9g},{:.9g},{},{:.9g},{:.3f}", double(s["final_train_loss"]),
                          double(s["final_valid_loss"]), double(s["best_valid_loss"]),
                          int64_t(s["best_epoch"]), mmd, double(s["seconds"]));
    }
    sweep += r.setting->name + "," + r.setting->variant;
    for (const auto& kv : r.setting->grid) sweep += "," + kv.second;
    sweep += fmt::format(",{},{},{},{}\n", r.seed, status, cells, r.dir);
    if (status != "done") continue;
    Curve& c = curves[r.setting->name];
    auto rows = read_csv(r.dir + "/losses.csv");
    for (size_t i = 1; i < rows.size(); ++i) {
      const int64_t epoch = std::stoll(rows[i][0]);
      c.train[epoch].push_back(std::stod(rows[i][1]));
      c.valid[epoch].push_back(std::stod(rows[i][2]));
    }
  }
  write_file_atomic(out + "/sweep.csv", sweep);
  std::string table =
      "setting,epoch,runs,train_mean,train_std,train_min,train_max,valid_mean,valid_std,"
      "valid_min,valid_max\n";
  for (const Setting& s : settings) {
    auto it = curves.find(s.name);
    if (it == curves.end()) continue;
    for (const auto& [epoch, train] : it->second.train) {
      const auto& valid = it->second.valid[epoch];
      double m, sd, lo, hi, vm, vsd, vlo, vhi;
      stats(train, &m, &sd, &lo, &hi);
      stats(valid, &vm, &vsd, &vlo, &vhi);
      table += fmt::format("{},{},{},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g},{:.9g}\n",
                           s.name, epoch, train.size(), m, sd, lo, hi, vm, vsd, vlo, vhi);
    }
  }
  write_file_atomic(out + "/curves.csv", table);
}

}  // namespace

int run_sweep(const SweepOptions& opt, const std::string& self_exe) {
  Config cfg = load_config(opt.config_path, opt.sets);
  const int64_t seeds = opt.seeds > 0 ? opt.seeds : cfg.sweep.seeds;
  const int64_t cores = std::max(1u, std::thread::hardware_concurrency());
  const int64_t jobs = opt.jobs > 0 ? opt.jobs : cores;
  const int64_t threads = std::max<int64_t>(1, cores / jobs);
  const std::vector<Setting> settings = settings_of(cfg, opt.grid);
  Config base = cfg;
  base.sweep = Config::Sweep{};
  base.threads = threads;
  for (const Setting& s : settings) {  // every run's configuration is checked before any starts
    std::vector<std::string> sets = s.sets;
    sets.push_back("seed=0");
    try {
      parse_config(to_yaml(base), sets, opt.config_path);
    } catch (const ConfigError& e) {
      throw ConfigError(fmt::format("setting {}: {}", s.name, e.what()));
    }
  }
  fs::create_directories(opt.out);
  write_file_atomic(opt.out + "/base.yaml", to_yaml(base));

  std::vector<Run> runs;
  for (const Setting& s : settings)
    for (int64_t seed = 0; seed < seeds; ++seed)
      runs.push_back({&s, seed, fmt::format("{}/{}/seed{}", opt.out, s.name, seed),
                      fmt::format("{}/{}/seed{}.log", opt.out, s.name, seed)});
  std::vector<Run*> todo;
  for (Run& r : runs)
    if (!complete(r.dir)) todo.push_back(&r);
  fmt::print(
      "mmdflow sweep: {} settings x {} seeds = {} runs, {} complete, {} to run; {} jobs of "
      "{} threads -> {}\n",
      settings.size(), seeds, runs.size(), runs.size() - todo.size(), todo.size(), jobs, threads,
      opt.out);
  std::fflush(stdout);

  std::map<pid_t, Run*> running;
  size_t next = 0, finished = 0;
  int failures = 0;
  while (next < todo.size() || !running.empty()) {
    while (next < todo.size() && int64_t(running.size()) < jobs) {
      Run* r = todo[next++];
      std::vector<std::string> args;
      if (fs::exists(r->dir + "/config.yaml")) {  // a partial run continues from its checkpoint
        args = {"train", "--resume", r->dir, "--threads", std::to_string(threads)};
      } else {
        fs::remove_all(r->dir);
        fs::create_directories(fs::path(r->dir).parent_path());
        args = {"train", "--config", opt.out + "/base.yaml", "--out", r->dir};
        for (const auto& s : r->setting->sets) args.insert(args.end(), {"--set", s});
        args.insert(args.end(), {"--set", fmt::format("seed={}", r->seed)});
      }
      running[launch(self_exe, args, r->log)] = r;
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) break;
    auto it = running.find(pid);
    if (it == running.end()) continue;
    Run* r = it->second;
    running.erase(it);
    r->exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r->exit != 0 && r->exit != 3) ++failures;
    fmt::print("[{}/{}] {} seed {}: {}\n", ++finished, todo.size(), r->setting->name, r->seed,
               r->exit == 0   ? "done"
               : r->exit == 3 ? "non-finite"
                              : fmt::format("failed (exit {}, see {})", r->exit, r->log));
    std::fflush(stdout);
  }
  write_tables(opt.out, settings, runs);
  fmt::print("wrote {}/sweep.csv and {}/curves.csv\n", opt.out, opt.out);
  return failures == 0 ? 0 : 1;
}

}  // namespace mmdflow
