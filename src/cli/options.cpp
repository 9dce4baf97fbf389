#include "src/cli/options.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "src/base/errors.h"
#include "src/cli/signals.h"

namespace mmdflow {

void add_config_options(cxxopts::Options& o) {
  o.add_options()("c,config", "YAML config file (default: the built-in quick start)",
                  cxxopts::value<std::string>())(
      "s,set", "override a config key: key.path=value (repeatable)",
      cxxopts::value<std::vector<std::string>>())(
      "device", "cpu | cuda | cuda:K (as --set device=...)", cxxopts::value<std::string>())(
      "threads", "intra-op threads, 0 = one per core (as --set threads=...)",
      cxxopts::value<std::string>())("h,help", "show this help");
}

std::optional<cxxopts::ParseResult> parse(cxxopts::Options& o, int argc, char** argv) {
  cxxopts::ParseResult r;
  try {
    r = o.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    throw UsageError(shorten(e.what()) + " (see --help)");
  }
  if (r.count("help")) {
    fmt::print("{}", o.help());
    return std::nullopt;
  }
  if (!r.unmatched().empty())
    throw UsageError(
        fmt::format("unexpected argument '{}' (see --help)", shorten(r.unmatched()[0])));
  return r;
}

Config config_from(const cxxopts::ParseResult& r, const std::string& fallback) {
  std::vector<std::string> sets;
  if (r.count("set")) sets = r["set"].as<std::vector<std::string>>();
  if (r.count("device")) sets.push_back("device=" + r["device"].as<std::string>());
  if (r.count("threads")) sets.push_back("threads=" + r["threads"].as<std::string>());
  if (r.count("config") && r["config"].as<std::string>().empty())
    throw UsageError("--config: an empty file name");
  return load_config(r.count("config") ? r["config"].as<std::string>() : fallback, sets);
}

int64_t int_option(const cxxopts::ParseResult& r, const std::string& name, int64_t lo, int64_t hi) {
  const std::string s = r[name].as<std::string>();
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi)
    throw UsageError(
        fmt::format("--{}: must be an integer in [{}, {}], got '{}'", name, lo, hi, shorten(s)));
  return v;
}

namespace {
std::string& prefix() {  // "rank R: " in a sharded run's process R
  static std::string p;
  return p;
}
}  // namespace

void print_result(const std::string& text) {
  const bool whole = std::fwrite(text.data(), 1, text.size(), stdout) == text.size();
  if (std::fflush(stdout) != 0 || !whole || std::ferror(stdout))
    throw IoError(
        fmt::format("cannot write the result to standard output: {}", std::strerror(errno)));
}

void print_message(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stderr);  // nowhere else to say that it failed
  std::fflush(stderr);
}

void print_error(const std::string& what) {
  print_message(fmt::format("mmdflow: {}error: {}\n", prefix(), what));
}

Launch launch_of_process() {
  const Launch launch = launch_from_environment();
  if (launch.world > 1) prefix() = fmt::format("rank {}: ", launch.rank);
  return launch;
}

namespace {

// Gloo connects every pair of processes: each holds world - 1 sockets, which must fit under its
// limit of open files (with room for the run's own files).
void check_open_files(int world) {
  rlimit fds{};
  if (::getrlimit(RLIMIT_NOFILE, &fds) != 0 || fds.rlim_cur == RLIM_INFINITY) return;
  if (uint64_t(world) + 64 > uint64_t(fds.rlim_cur))
    throw ConfigError(fmt::format(
        "WORLD_SIZE: {} processes need {} connections in each, past its limit of {} open files "
        "(raise it with ulimit -n, or run fewer processes)",
        world, world - 1, uint64_t(fds.rlim_cur)));
}

}  // namespace

std::string job_of(const std::string& command, const std::string& dir) {
  if (dir.empty()) return command;
  std::error_code ec;
  const std::filesystem::path abs = std::filesystem::absolute(dir, ec);
  std::filesystem::path real = std::filesystem::weakly_canonical(abs, ec);
  if (ec) real = abs.lexically_normal();
  std::string path = real.string();
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return command + " " + path;
}

std::unique_ptr<Comm> comm_of(const Launch& launch, const Config& cfg, const std::string& job) {
  if (launch.world == 1) return single_process();
  if (!cfg.device.is_cuda()) check_open_files(launch.world);
  // The rendezvous waits up to dist.timeout: a stop signal recorded meanwhile (train) ends the
  // process at once, as nothing is written before the processes have met.
  std::unique_ptr<Comm> comm;
  try {
    comm = connect(launch, cfg.dist.timeout, cfg.dist.backend, cfg.device,
                   {job, [] { return int(StopSignals::received()); }});
  } catch (const Stopped& e) {
    print_message(fmt::format(
        "mmdflow: {}stopped by {} while meeting the other processes; nothing was written\n",
        prefix(), signal_name(e.signal)));
    std::fflush(nullptr);
    std::_Exit(128 + e.signal);  // a backend's thread may still be connecting
  } catch (const ConfigError& e) {
    print_error(e.what());
    std::fflush(nullptr);
    std::_Exit(kBadInput);  // the same: nothing is written yet
  }
  comm->on_peer_lost([](const std::string& verdict) {
    print_error(verdict);
    std::fflush(nullptr);
    std::_Exit(kLostPeer);
  });
  return comm;
}

}  // namespace mmdflow
