// Instruction-set paths of the fused CPU kernels (float products, noise, per-block loops), chosen
// at run time from the CPU's features, so one binary runs on any x86-64:
//   avx512   AVX-512F: 512-bit product tiles and loops
//   avx2     AVX2 + FMA: 256-bit tiles and loops
//   generic  the baseline instruction set; products on BLAS
// MMDFLOW_ISA=generic|avx2|avx512 forces a path. Torch-free.
#pragma once
#include <string>
#include <vector>

#include "src/base/names.h"

namespace mmdflow {

enum class Isa { Generic, Avx2, Avx512 };
template <>
struct Names<Isa> {
  static constexpr const char* what = "instruction-set path";
  static constexpr std::array<std::pair<Isa, const char*>, 3> table{
      {{Isa::Generic, "generic"}, {Isa::Avx2, "avx2"}, {Isa::Avx512, "avx512"}}};
};

bool isa_supported(Isa isa);        // this CPU and its OS run it
std::vector<Isa> supported_isas();  // narrowest first
std::string supported_isa_list();   // their names, e.g. "generic, avx2, avx512"
Isa widest_isa();                   // the default path

// The path the kernels take: MMDFLOW_ISA when set, else widest_isa(). The first call reads the
// variable; an unknown or unsupported value throws UsageError (exit 2) naming it.
Isa active_isa();
bool isa_forced();  // MMDFLOW_ISA chose the path
// Sets the path for the whole process (tests, benchmarks); throws UsageError if unsupported.
void set_isa(Isa isa);

// Runs the kernels on `isa` for its lifetime, then restores the previous path.
class ScopedIsa {
 public:
  explicit ScopedIsa(Isa isa) : prev_(active_isa()) { set_isa(isa); }
  ~ScopedIsa() { set_isa(prev_); }
  ScopedIsa(const ScopedIsa&) = delete;
  ScopedIsa& operator=(const ScopedIsa&) = delete;

 private:
  Isa prev_;
};

}  // namespace mmdflow
