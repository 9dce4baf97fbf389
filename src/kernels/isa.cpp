#include "src/kernels/isa.h"

#include <atomic>
#include <cstdlib>
#include <optional>
#include <string>

#include "src/base/errors.h"

namespace mmdflow {

bool isa_supported(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  // __builtin_cpu_supports also checks that the OS saves the wider registers (XCR0).
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  static const bool avx512 = avx2 && __builtin_cpu_supports("avx512f");
  switch (isa) {
    case Isa::Generic: return true;
    case Isa::Avx2: return avx2;
    case Isa::Avx512: return avx512;
  }
  return false;
#else
  return isa == Isa::Generic;
#endif
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::Generic, Isa::Avx2, Isa::Avx512})
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

Isa widest_isa() { return supported_isas().back(); }

std::string supported_isa_list() {
  std::string s;
  for (Isa isa : supported_isas()) s += (s.empty() ? "" : ", ") + std::string(name_of(isa));
  return s;
}

namespace {

struct Choice {
  Isa isa;
  bool forced;
};

Choice from_environment() {
  const char* env = std::getenv("MMDFLOW_ISA");
  if (!env || !*env) return {widest_isa(), false};
  const std::optional<Isa> parsed = from_name<Isa>(env);
  if (!parsed)
    throw UsageError(std::string("MMDFLOW_ISA=") + env +
                     ": unknown path (valid: " + name_list<Isa>() + ")");
  const Isa isa = *parsed;
  if (!isa_supported(isa))
    throw UsageError(std::string("MMDFLOW_ISA=") + env + ": this CPU cannot run it (it runs " +
                     supported_isa_list() + ")");
  return {isa, true};
}

constexpr int kUnset = -1;
std::atomic<int> g_active{kUnset};
std::atomic<bool> g_forced{false};

}  // namespace

Isa active_isa() {
  int v = g_active.load(std::memory_order_acquire);
  if (v == kUnset) {
    const Choice c = from_environment();  // throws before anything is stored
    g_forced.store(c.forced);
    int expected = kUnset;
    g_active.compare_exchange_strong(expected, int(c.isa));
    v = g_active.load(std::memory_order_acquire);
  }
  return Isa(v);
}

bool isa_forced() {
  active_isa();
  return g_forced.load();
}

void set_isa(Isa isa) {
  if (!isa_supported(isa))
    throw UsageError("instruction-set path " + std::string(name_of(isa)) +
                     ": this CPU cannot run it (it runs " + supported_isa_list() + ")");
  g_active.store(int(isa), std::memory_order_release);
}

}  // namespace mmdflow
