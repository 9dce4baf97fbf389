#include "src/cli/options.h"

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "src/base/errors.h"

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

std::unique_ptr<Comm> comm_of(const Launch& launch, const Config& cfg) {
  if (launch.world == 1) return single_process();
  auto comm = connect(launch, cfg.dist.timeout, cfg.dist.backend, cfg.device);
  comm->on_peer_lost([](const std::string& verdict) {
    print_error(verdict);
    std::fflush(nullptr);
    std::_Exit(kLostPeer);
  });
  return comm;
}

}  // namespace mmdflow
