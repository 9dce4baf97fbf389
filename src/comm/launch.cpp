#include "src/comm/launch.h"

#include <fmt/format.h>

#include <charconv>
#include <cstdint>
#include <optional>

#include "src/base/errors.h"

extern char** environ;

namespace mmdflow {
namespace {

// env[name], refused when set but empty; nullptr when unset.
const std::string* value(const std::map<std::string, std::string>& env, const std::string& name) {
  auto it = env.find(name);
  if (it == env.end()) return nullptr;
  if (it->second.empty())
    throw ConfigError(fmt::format("{}: set but empty: unset it, or give it a value", name));
  return &it->second;
}

// The integer in env[name] within [lo, hi]; `fallback` when unset (none: required).
int integer(const std::map<std::string, std::string>& env, const std::string& name, int lo, int hi,
            std::optional<int> fallback = std::nullopt) {
  const std::string* s = value(env, name);
  if (!s) {
    if (fallback) return *fallback;
    throw ConfigError(fmt::format("{}: not set", name));
  }
  int v = 0;
  auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec != std::errc() || p != s->data() + s->size() || v < lo || v > hi)
    throw ConfigError(fmt::format("{}: must be an integer in [{}, {}], got '{}'", name, lo, hi,
                                  s->substr(0, 40)));
  return v;
}

// The step of an srun job step ("" in a batch script's shell, or outside Slurm): SLURM_STEP_ID
// (or its older name SLURM_STEPID) with an ordinary number; 4294967290 and above are Slurm's
// special steps (batch, extern, interactive, pending), which launch nothing.
std::string slurm_step(const std::map<std::string, std::string>& env) {
  for (const char* name : {"SLURM_STEP_ID", "SLURM_STEPID"}) {
    auto it = env.find(name);
    if (it == env.end() || it->second.empty()) continue;
    uint64_t v = 0;
    const std::string& s = it->second;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v >= 4294967290u) return "";
    return s;
  }
  return "";
}

std::string text_of(const std::map<std::string, std::string>& env, const char* name) {
  auto it = env.find(name);
  return it == env.end() ? "" : it->second;
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
  const std::string step = slurm_step(env);
  Launch l;
  for (const Names& n : kinds) {
    if (!env.count(n.rank)) continue;
    if (std::string(n.source) == "Slurm" && step.empty()) continue;  // the batch script's shell
    constexpr int kMaxWorld = 1 << 20;
    l.world = integer(env, n.world, 1, kMaxWorld, 1);
    l.rank = integer(env, n.rank, 0, l.world - 1);
    l.local_rank = integer(env, n.local, 0, kMaxWorld, 0);
    l.source = n.source;
    if (l.source == "torchrun") {
      l.job = text_of(env, "TORCHELASTIC_RUN_ID");
    } else if (l.source == "Slurm") {
      l.job = "Slurm job " + text_of(env, "SLURM_JOB_ID") + "." + step;
    } else {
      l.job = text_of(env, "PMIX_NAMESPACE");
      if (l.job.empty()) l.job = text_of(env, "OMPI_MCA_ess_base_jobid");
    }
    if (!l.job.empty() && l.source != "Slurm") l.job = l.source + " job " + l.job;
    break;
  }
  if (l.world == 1) return l;
  const std::string* addr = value(env, "MASTER_ADDR");
  if (!addr)
    throw ConfigError(fmt::format(
        "MASTER_ADDR: not set, but {} says WORLD_SIZE = {}: set MASTER_ADDR and MASTER_PORT to "
        "the address and a free port of the machine of rank 0",
        l.source, l.world));
  l.master_addr = *addr;
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
