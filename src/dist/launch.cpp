#include "src/dist/launch.h"

#include <fmt/format.h>

#include <charconv>
#include <optional>

#include "src/base/errors.h"

extern char** environ;

namespace mmdflow {
namespace {

// The integer in env[name] within [lo, hi]; `fallback` when unset (none: required).
int integer(const std::map<std::string, std::string>& env, const std::string& name, int lo, int hi,
            std::optional<int> fallback = std::nullopt) {
  auto it = env.find(name);
  if (it == env.end() || it->second.empty()) {
    if (fallback) return *fallback;
    throw ConfigError(fmt::format("{}: not set", name));
  }
  const std::string& s = it->second;
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi)
    throw ConfigError(
        fmt::format("{}: must be an integer in [{}, {}], got '{}'", name, lo, hi, s.substr(0, 40)));
  return v;
}

}  // namespace

Launch launch_from(const std::map<std::string, std::string>& env) {
  struct Names {
    const char *rank, *world, *local, *source;
  };
  const Names kinds[] = {
      {"RANK", "WORLD_SIZE", "LOCAL_RANK", "torchrun"},
      {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "Slurm"},
      {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "Open MPI"}};
  Launch l;
  for (const Names& n : kinds) {
    if (!env.count(n.rank)) continue;
    constexpr int kMaxWorld = 1 << 20;
    l.world = integer(env, n.world, 1, kMaxWorld, 1);
    l.rank = integer(env, n.rank, 0, l.world - 1);
    l.local_rank = integer(env, n.local, 0, kMaxWorld, 0);
    l.source = n.source;
    break;
  }
  if (l.world == 1) return l;
  auto addr = env.find("MASTER_ADDR");
  if (addr == env.end() || addr->second.empty())
    throw ConfigError(fmt::format(
        "MASTER_ADDR: not set, but {} says WORLD_SIZE = {}: set MASTER_ADDR and MASTER_PORT to "
        "the address and a free port of the machine of rank 0",
        l.source, l.world));
  l.master_addr = addr->second;
  l.master_port = integer(env, "MASTER_PORT", 1, 65535);
  return l;
}

Launch launch_from_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    const auto eq = kv.find('=');
    if (eq != std::string::npos) env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return launch_from(env);
}

}  // namespace mmdflow
